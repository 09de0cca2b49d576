package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
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
		// A damaged file is refused, never repaired: generating a new
		// secret in its place would silently invalidate every token, and
		// a zero-filled file (what some file systems leave after a crash)
		// would otherwise be a secret anyone can guess.
		if len(s) < 32 {
			return nil, fmt.Errorf("%s holds a secret shorter than 32 characters: delete it to generate a new one (all tokens become invalid)", path)
		}
		if strings.ContainsFunc(s, func(r rune) bool { return r < 0x21 || r == 0x7f }) {
			return nil, fmt.Errorf("%s is damaged (it holds control characters or spaces): delete it to generate a new one (all tokens become invalid)", path)
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
		if err := writeNew(path, []byte(s+"\n"), createTemp); errors.Is(err, fs.ErrExist) {
			return jwtSecret(cfg)
		} else if err != nil {
			return nil, err
		}
		return []byte(s), nil
	default:
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
}

// tempFile is what writeNew needs of the temporary file; tests inject one
// whose write or sync fails.
type tempFile interface {
	io.Writer
	Sync() error
	Close() error
	Name() string
}

func createTemp(dir, pattern string) (tempFile, error) { return os.CreateTemp(dir, pattern) }

// writeNew creates path with data and mode 0600, atomically; fs.ErrExist
// when path exists. Nothing is linked into place unless every byte was
// written and synced: a short file would stop the next start.
func writeNew(path string, data []byte, create func(dir, pattern string) (tempFile, error)) error {
	dir := filepath.Dir(path)
	tmp, err := create(dir, ".jwt-secret-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
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
	// The new name must survive a crash too, or the next start generates
	// another secret and every minted token stops verifying.
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
