// Package storetest opens a fresh store for a test: the embedded server in
// the test's temporary directory, or, when MONGODB_URI is set, a uniquely
// named database on that MongoDB (dropped at the end of the test).
package storetest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ticketd/ticketd/store"
)

// Open returns a store for t, closed when t ends.
func Open(t testing.TB) *store.Store {
	t.Helper()
	s, _ := OpenWith(t, store.OpenOptions{})
	return s
}

// OpenWith is Open with options; it returns the options it used, so a test
// can reopen the same data (DataDir, Database).
func OpenWith(t testing.TB, o store.OpenOptions) (*store.Store, store.OpenOptions) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if o.URI == "" {
		o.URI = os.Getenv("MONGODB_URI")
	}
	if o.Database == "" {
		o.Database = fmt.Sprintf("ticketd_test_%d", time.Now().UnixNano())
	}
	if o.DataDir == "" {
		o.DataDir = filepath.Join(t.TempDir(), "data")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	s, err := store.Open(ctx, o)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if o.URI != "" {
			_ = s.Database().Drop(ctx)
		}
		if err := s.Close(ctx); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return s, o
}
