package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// jwtSecret returns the configured secret, or the one generated on first run
// and kept in dataDir/jwt-secret. `ticketd token` and `ticketd serve` call
// it alike, so minted tokens verify.
func jwtSecret(cfg Config) ([]byte, error) {
	if cfg.Auth.JWTSecret != "" {
		return []byte(cfg.Auth.JWTSecret), nil
	}
	path := filepath.Join(cfg.DataDir, "jwt-secret")
	raw, err := os.ReadFile(path)
	switch {
	case err == nil:
		info, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("check %s: %w", path, err)
		}
		if info.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("%s is readable by others (mode %v): run chmod 600 %s", path, info.Mode().Perm(), path)
		}
		s := strings.TrimSpace(string(raw))
		if len(s) < 32 {
			return nil, fmt.Errorf("%s holds a secret shorter than 32 characters: delete it to generate a new one (all tokens become invalid)", path)
		}
		return []byte(s), nil
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("create data directory: %w", err)
		}
		buf := make([]byte, 32)
		if _, err := rand.Read(buf); err != nil {
			return nil, fmt.Errorf("generate JWT secret: %w", err)
		}
		s := hex.EncodeToString(buf)
		// Written whole to a temporary file, synced, then linked into
		// place: the secret never exists half-written, and of two first
		// runs at once only one link succeeds.
		if err := writeNew(path, []byte(s+"\n")); errors.Is(err, fs.ErrExist) {
			return jwtSecret(cfg)
		} else if err != nil {
			return nil, err
		}
		return []byte(s), nil
	default:
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
}

// writeNew creates path with data and mode 0600, atomically; fs.ErrExist
// when path exists.
func writeNew(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".jwt-secret-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return err
		}
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
