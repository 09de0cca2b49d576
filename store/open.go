package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	_ "modernc.org/sqlite" // the embedded server's SQLite driver, opened again for the index fix
)

// OpenOptions says which database to use.
type OpenOptions struct {
	// URI of a MongoDB deployment. Empty means the embedded server.
	URI string
	// Database name.
	Database string
	// DataDir holds the embedded server's SQLite files.
	DataDir string
	// Logger for the store and the embedded server; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Limits caps subjects and descriptions; the zero value means the
	// defaults.
	Limits Limits

	// sqlitePragmas are added to the embedded server's SQLite connections;
	// tests set max_page_count to make the database full.
	sqlitePragmas []string
}

// Open connects to the configured MongoDB, or starts the embedded
// MongoDB-compatible server under DataDir and connects to it, then prepares
// the schema. The caller must Close the store.
func Open(ctx context.Context, o OpenOptions) (*Store, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Database == "" {
		return nil, fmt.Errorf("open store: %w: empty database name", ErrInvalid)
	}
	uri := o.URI
	var stopEmbedded func(context.Context) error
	var sqliteFile string
	if uri == "" {
		sqliteFile = filepath.Join(o.DataDir, o.Database+".sqlite")
		var err error
		uri, stopEmbedded, err = startEmbedded(ctx, o.DataDir, o.Logger, o.sqlitePragmas...)
		if err != nil {
			return nil, err
		}
	}
	writes := newWriteHealth(o.Now)
	client, err := mongo.Connect(options.Client().ApplyURI(uri).
		SetServerSelectionTimeout(5 * time.Second).
		SetTimeout(30 * time.Second).
		SetMonitor(writes.monitor()))
	if err != nil {
		if stopEmbedded != nil {
			_ = stopEmbedded(ctx)
		}
		return nil, fmt.Errorf("connect to %s: %w", redactURI(uri), err)
	}
	// Connect does not prove the server is there; Ping does.
	if err := client.Ping(ctx, nil); err != nil {
		_ = client.Disconnect(ctx)
		if stopEmbedded != nil {
			_ = stopEmbedded(ctx)
		}
		return nil, fmt.Errorf("reach database at %s: %w", redactURI(uri), errors.Join(ErrUnavailable, err))
	}
	s, err := New(ctx, client, client.Database(o.Database), Options{
		Logger:     o.Logger,
		Now:        o.Now,
		Serialized: stopEmbedded != nil,
		writes:     writes,
		Limits:     o.Limits,
		sqliteFile: sqliteFile,
	})
	if err != nil {
		_ = client.Disconnect(ctx)
		if stopEmbedded != nil {
			_ = stopEmbedded(ctx)
		}
		return nil, err
	}
	if stopEmbedded != nil {
		// Closed after the listing index (closers run last first).
		s.closers = append([]func(context.Context) error{stopEmbedded}, s.closers...)
	}
	return s, nil
}

// startEmbedded runs FerretDB with its SQLite backend on a loopback port
// chosen by the kernel, and returns its URI and a function that stops it.
func startEmbedded(ctx context.Context, dataDir string, log *slog.Logger, pragmas ...string) (string, func(context.Context) error, error) {
	if dataDir == "" {
		return "", nil, fmt.Errorf("start embedded store: %w: empty data directory", ErrInvalid)
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return "", nil, fmt.Errorf("start embedded store: %w", err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return "", nil, fmt.Errorf("start embedded store: create data directory: %w", err)
	}
	sqliteURL := "file:" + abs + "/"
	if len(pragmas) > 0 {
		sqliteURL += "?" + url.Values{"_pragma": pragmas}.Encode()
	}
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: "127.0.0.1:0"},
		Handler:   "sqlite",
		SQLiteURL: sqliteURL,
		// FerretDB logs every connection at info and dumps each command it does not
		// implement (the driver's endSessions on every disconnect) at warn.
		Logger: slog.New(levelFloor{h: log.Handler(), min: slog.LevelError}).With("component", "embedded-db"),
	})
	if err != nil {
		return "", nil, fmt.Errorf("start embedded store in %s: %w", abs, err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f.Run(runCtx)
	}()
	stop := func(ctx context.Context) error {
		cancel()
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("stop embedded store: %w", ctx.Err())
		}
	}
	return f.MongoDBURI(), stop, nil
}

// fixEmbeddedIDIndexes works around a defect of the embedded server: its
// SQLite backend looks documents up by _ferretdb_sjson->'$._id' while its own
// _id index is on _ferretdb_sjson->"_id", so SQLite cannot use the index and
// every update scans the table. An index on the exact expression the backend
// queries makes updates constant-time. Idempotent; runs at every start.
func fixEmbeddedIDIndexes(ctx context.Context, file string) error {
	db, err := sql.Open("sqlite", "file:"+file+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return fmt.Errorf("open %s for index fix: %w", file, err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT table_name FROM _ferretdb_collections`)
	if err != nil {
		return fmt.Errorf("list embedded tables in %s: %w", file, err)
	}
	var tables []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			rows.Close()
			return fmt.Errorf("list embedded tables in %s: %w", file, err)
		}
		tables = append(tables, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list embedded tables in %s: %w", file, err)
	}
	for _, t := range tables {
		q := fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %q ON %q (_ferretdb_sjson->'$._id')`, t+"_ticketd_id_lookup", t)
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("create lookup index on %s: %w", t, err)
		}
	}
	return nil
}

// levelFloor drops records below min, whatever the wrapped handler allows.
// FerretDB derives a logger with attributes for every connection and
// request; applying them to the wrapped handler formats them each time
// (5% of the CPU of a busy daemon), so they are kept aside and applied only
// to a record that passes, which is rare.
type levelFloor struct {
	h      slog.Handler
	min    slog.Level
	derive []func(slog.Handler) slog.Handler // WithAttrs/WithGroup, in order
}

func (l levelFloor) Enabled(ctx context.Context, lv slog.Level) bool {
	return lv >= l.min && l.h.Enabled(ctx, lv)
}

func (l levelFloor) Handle(ctx context.Context, r slog.Record) error {
	h := l.h
	for _, d := range l.derive {
		h = d(h)
	}
	return h.Handle(ctx, r)
}

func (l levelFloor) with(d func(slog.Handler) slog.Handler) levelFloor {
	l.derive = append(slices.Clip(l.derive), d)
	return l
}

func (l levelFloor) WithAttrs(a []slog.Attr) slog.Handler {
	return l.with(func(h slog.Handler) slog.Handler { return h.WithAttrs(a) })
}

func (l levelFloor) WithGroup(n string) slog.Handler {
	return l.with(func(h slog.Handler) slog.Handler { return h.WithGroup(n) })
}

// redactURI hides the password of a MongoDB URI for log lines and errors.
func redactURI(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return "(unparsable URI)"
	}
	return u.Redacted()
}
