package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
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

// failingFile writes half of what it is given, then reports the disk full.
type failingFile struct {
	*os.File
	failSync bool
}

func (f failingFile) Write(p []byte) (int, error) {
	if f.failSync {
		return f.File.Write(p)
	}
	n, _ := f.File.Write(p[:len(p)/2])
	return n, syscall.ENOSPC
}

func (f failingFile) Sync() error {
	if f.failSync {
		return syscall.EIO
	}
	return f.File.Sync()
}

// A write or sync that fails leaves no secret file behind (a short one
// would stop the next start) and says why.
func TestSecretWriteFailureLeavesNoFile(t *testing.T) {
	for _, failSync := range []bool{false, true} {
		dir := t.TempDir()
		path := filepath.Join(dir, "jwt-secret")
		create := func(dir, pattern string) (tempFile, error) {
			f, err := os.CreateTemp(dir, pattern)
			return failingFile{f, failSync}, err
		}
		err := writeNew(path, []byte(strings.Repeat("a", 64)+"\n"), create)
		want := syscall.ENOSPC
		if failSync {
			want = syscall.EIO
		}
		if !errors.Is(err, want) {
			t.Errorf("failSync=%v: writeNew = %v, want %v", failSync, err, want)
		}
		if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("failSync=%v: a secret file was left after the failed write (%v)", failSync, err)
		}
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Errorf("failSync=%v: temporary files left: %v", failSync, left)
		}
	}
}

// A short or damaged secret file is refused with what to do, never
// replaced: replacing it would invalidate every token without a word.
func TestDamagedSecretFileIsRefused(t *testing.T) {
	for name, content := range map[string]string{
		"short":       "0123456789abcdef\n",
		"empty":       "",
		"zero-filled": strings.Repeat("\x00", 65),
	} {
		cfg := defaultConfig()
		cfg.DataDir = t.TempDir()
		path := filepath.Join(cfg.DataDir, "jwt-secret")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := jwtSecret(cfg)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "delete it") {
			t.Errorf("%s file: jwtSecret = %q, %v; want an error naming the file and the fix", name, s, err)
		}
		if raw, _ := os.ReadFile(path); string(raw) != content {
			t.Errorf("%s file was changed to %q", name, raw)
		}
	}
}
