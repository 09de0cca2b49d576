package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// EmbeddedFile is the embedded store's database file under dataDir: the
// one file a backup of the embedded store needs. (The server keeps one
// SQLite file per database, with -wal and -shm beside it while open.)
func EmbeddedFile(dataDir, database string) string {
	return filepath.Join(dataDir, database+".sqlite")
}

// Backup writes a consistent copy of the embedded store's database to out,
// also while a daemon is writing to it: SQLite's VACUUM INTO reads the
// database in one read transaction, which the write-ahead log (the
// embedded server runs in WAL mode) lets run beside the writer. The copy
// is checked (PRAGMA quick_check), made private (0600) and only then
// renamed to out, so out is either the previous file or a whole new copy.
// Restoring is copying it back to EmbeddedFile while no daemon runs.
func Backup(ctx context.Context, dataDir, database, out string) (int64, error) {
	src := EmbeddedFile(dataDir, database)
	srcInfo, err := os.Stat(src)
	if err != nil {
		return 0, fmt.Errorf("back up the embedded store: %w", err)
	}
	outAbs, err := filepath.Abs(out)
	if err != nil {
		return 0, fmt.Errorf("back up to %s: %w", out, err)
	}
	for _, live := range []string{"", "-wal", "-shm", "-journal"} {
		if fi, err := os.Stat(src + live); err == nil {
			if oi, err := os.Stat(outAbs); err == nil && os.SameFile(fi, oi) {
				return 0, fmt.Errorf("back up to %s: %w: that is the live database", out, ErrInvalid)
			}
		}
	}
	// Written under a temporary name in out's directory: the rename at the
	// end is atomic, and a failed backup leaves no half file behind.
	tmpDir, err := os.MkdirTemp(filepath.Dir(outAbs), ".ticketd-backup-")
	if err != nil {
		return 0, fmt.Errorf("back up to %s: %w", out, err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, filepath.Base(outAbs))

	db, err := sql.Open("sqlite", "file:"+src+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", src, err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, tmp); err != nil {
		return 0, fmt.Errorf("copy %s (%d bytes) to %s: %w", src, srcInfo.Size(), out, err)
	}
	if err := checkCopy(ctx, tmp); err != nil {
		return 0, fmt.Errorf("back up to %s: %w", out, err)
	}
	if err := syncFile(tmp); err != nil {
		return 0, fmt.Errorf("back up to %s: %w", out, err)
	}
	if err := os.Rename(tmp, outAbs); err != nil {
		return 0, fmt.Errorf("back up to %s: %w", out, err)
	}
	fi, err := os.Stat(outAbs)
	if err != nil {
		return 0, fmt.Errorf("back up to %s: %w", out, err)
	}
	// The rename is durable once the directory is.
	if d, err := os.Open(filepath.Dir(outAbs)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return fi.Size(), nil
}

// checkCopy asks SQLite whether the copy is intact and still has the
// embedded server's catalogue of collections.
func checkCopy(ctx context.Context, file string) error {
	db, err := sql.Open("sqlite", "file:"+file)
	if err != nil {
		return fmt.Errorf("open the copy: %w", err)
	}
	defer db.Close()
	var verdict string
	if err := db.QueryRowContext(ctx, `PRAGMA quick_check`).Scan(&verdict); err != nil {
		return fmt.Errorf("check the copy: %w", err)
	}
	if verdict != "ok" {
		return fmt.Errorf("check the copy: %s", verdict)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM _ferretdb_collections`).Scan(&n); err != nil {
		return fmt.Errorf("check the copy: not an embedded store: %w", err)
	}
	return nil
}

func syncFile(name string) error {
	if err := os.Chmod(name, 0o600); err != nil {
		return err
	}
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	return errors.Join(f.Sync(), f.Close())
}
