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

	"go.mongodb.org/mongo-driver/v2/bson"

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

// SharedURI returns a MongoDB URI and a fresh database name for several
// daemons (or Stores) sharing one store, as several daemons share a
// MongoDB: MONGODB_URI when set, else the embedded server started on its
// own for t (stopped when t ends). Stores opened on it run the shared
// compare-and-set mode.
func SharedURI(t testing.TB) (uri, database string) {
	t.Helper()
	database = fmt.Sprintf("ticketd_shared_%d", time.Now().UnixNano())
	if uri = os.Getenv("MONGODB_URI"); uri != "" {
		return uri, database
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	uri, stop, err := store.StartEmbedded(ctx, filepath.Join(t.TempDir(), "shared"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("start the shared embedded server: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := stop(ctx); err != nil {
			t.Errorf("stop the shared embedded server: %v", err)
		}
	})
	return uri, database
}

// Shared opens n Stores on one database, as n daemons on one store (see
// SharedURI).
func Shared(t testing.TB, n int) []*store.Store {
	t.Helper()
	uri, db := SharedURI(t)
	out := make([]*store.Store, n)
	for i := range out {
		out[i], _ = OpenWith(t, store.OpenOptions{URI: uri, Database: db})
	}
	return out
}

// PendingEvent returns the ticket's latest pending event of a kind, for
// tests that run no relay (so every event stays on the ticket).
func PendingEvent(t testing.TB, st *store.Store, id bson.ObjectID, kind store.EventKind) store.Event {
	t.Helper()
	tk, err := st.Ticket(context.Background(), id, store.AllTickets)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(tk.Outbox) - 1; i >= 0; i-- {
		if tk.Outbox[i].Kind == kind {
			return tk.Outbox[i]
		}
	}
	t.Fatalf("ticket %s has no pending %s event", id.Hex(), kind)
	return store.Event{}
}
