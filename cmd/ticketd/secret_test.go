package main

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// Several first runs at once: one secret is generated, complete, 0600, and
// every caller gets it.
func TestGeneratedSecretIsSharedAndPrivate(t *testing.T) {
	cfg := defaultConfig()
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	var wg sync.WaitGroup
	got := make([]string, 8)
	for i := range got {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s, err := jwtSecret(cfg)
			if err != nil {
				t.Error(err)
			}
			got[i] = string(s)
		}(i)
	}
	wg.Wait()
	for _, s := range got {
		if len(s) != 64 || s != got[0] {
			t.Fatalf("callers got different or short secrets: %q", got)
		}
	}
	info, err := os.Stat(filepath.Join(cfg.DataDir, "jwt-secret"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("secret file: %v %v", info.Mode(), err)
	}
	if err := os.Chmod(filepath.Join(cfg.DataDir, "jwt-secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := jwtSecret(cfg); err == nil {
		t.Error("a secret readable by others must be refused")
	}
}
