package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ticketd/ticketd/store"
)

// Moving data: a consistent copy of the embedded store while it runs
// (backup), and the store's documents out to and in from JSON lines
// (export, import), to move from the embedded store to MongoDB.

func cmdBackup(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("backup", "backup -out FILE [-config FILE]", stderr)
	out := fs.String("out", "", "where to write the copy of the embedded store's database (required; replaced atomically)")
	cfgPath := fs.String("config", "", "the daemon's configuration file (for dataDir and store.database)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" {
		fs.Usage()
		return errUsage
	}
	cfg, err := loadConfig(*cfgPath, getenv)
	if err != nil {
		return err
	}
	if cfg.Store.URI != "" {
		return errors.New("store.uri is set: back up MongoDB with its own tools (mongodump, or a snapshot); ticketd backup copies the embedded store")
	}
	size, err := store.Backup(ctx, cfg.DataDir, cfg.Store.Database, *out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "backed up %s to %s (%d bytes)\n", store.EmbeddedFile(cfg.DataDir, cfg.Store.Database), *out, size)
	return nil
}

func cmdExport(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("export", "export [-config FILE] [-out FILE]", stderr)
	out := fs.String("out", "-", "file to write the JSON lines to; - is standard output")
	cfgPath := fs.String("config", "", "the configuration file of the store to export")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	return withStore(ctx, *cfgPath, getenv, stderr, func(st *store.Store) error {
		if *out == "-" {
			t, err := st.Export(ctx, stdout)
			if err != nil {
				return err
			}
			fmt.Fprintln(stderr, "exported", describe(t))
			return nil
		}
		// Written beside the target and renamed when whole: a failed
		// export leaves no file that looks like one.
		f, err := os.CreateTemp(filepath.Dir(*out), ".ticketd-export-*")
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		defer os.Remove(f.Name())
		t, err := st.Export(ctx, f)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(f.Name(), *out)
		}
		if err != nil {
			return fmt.Errorf("export to %s: %w", *out, err)
		}
		fmt.Fprintf(stderr, "exported %s to %s\n", describe(t), *out)
		return nil
	})
}

func cmdImport(ctx context.Context, args []string, stdin io.Reader, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("import", "import [-config FILE] [-force] [-check] FILE|-", stderr)
	cfgPath := fs.String("config", "", "the configuration file of the store to import into")
	force := fs.Bool("force", false, "import into a store that has documents: those with the same _id are replaced, others kept (importing the same file again changes nothing)")
	check := fs.Bool("check", false, "only read the file and report what would be imported; open no store")
	if err := parseFlagsAndOneArg(fs, args); err != nil {
		return err
	}
	in, cleanup, err := openImport(fs.Arg(0), stdin)
	if err != nil {
		return err
	}
	defer cleanup()
	if *check {
		t, err := store.CheckExport(in)
		if err != nil {
			return fmt.Errorf("%s: %w", fs.Arg(0), err)
		}
		fmt.Fprintln(stderr, fs.Arg(0)+": ok,", describe(t))
		return nil
	}
	return withStore(ctx, *cfgPath, getenv, stderr, func(st *store.Store) error {
		t, err := st.Import(ctx, in, store.ImportOptions{Replace: *force})
		if errors.Is(err, store.ErrNotEmpty) {
			return fmt.Errorf("%w (-force)", err)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", fs.Arg(0), err)
		}
		fmt.Fprintln(stderr, "imported", describe(t))
		return nil
	})
}

// openImport opens the file to import; standard input ("-") is copied to
// a temporary file first, since Import reads its input twice (check, then
// write).
func openImport(name string, stdin io.Reader) (io.ReadSeeker, func(), error) {
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, nil, fmt.Errorf("import: %w", err)
		}
		return f, func() { f.Close() }, nil
	}
	f, err := os.CreateTemp("", "ticketd-import-*")
	if err != nil {
		return nil, nil, fmt.Errorf("import: spool standard input: %w", err)
	}
	cleanup := func() { f.Close(); os.Remove(f.Name()) }
	if _, err := io.Copy(f, stdin); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("import: spool standard input to %s: %w", f.Name(), err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("import: %w", err)
	}
	return f, cleanup, nil
}

// withStore runs fn on the store the configuration file names, and
// closes it.
func withStore(ctx context.Context, cfgPath string, getenv func(string) string, stderr io.Writer, fn func(*store.Store) error) error {
	cfg, err := loadConfig(cfgPath, getenv)
	if err != nil {
		return err
	}
	// The store's progress lines (info) would mix with the command's report.
	if strings.EqualFold(cfg.Log.Level, "info") {
		cfg.Log.Level = "warn"
	}
	st, err := store.Open(ctx, store.OpenOptions{
		URI: cfg.Store.URI, Database: cfg.Store.Database, DataDir: cfg.DataDir, Logger: cfg.logger(stderr),
		Limits: store.Limits{MaxSubject: cfg.Tickets.MaxSubject, MaxDescription: cfg.Tickets.MaxDescription},
	})
	if err != nil {
		return err
	}
	defer st.Close(context.WithoutCancel(ctx))
	return fn(st)
}

// describe says how many documents of each collection moved.
func describe(t store.Transfer) string {
	var parts []string
	for _, c := range store.Collections() {
		if n := t.PerCollection[c]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", c, n))
		}
	}
	slices.Sort(parts)
	return fmt.Sprintf("%d documents (%s)", t.Documents, strings.Join(parts, ", "))
}
