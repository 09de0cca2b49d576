package store

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver"
)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// A full database (SQLite's max_page_count gives the embedded server the
// same SQLITE_FULL a full disk does): writes fail as ErrUnavailable, the
// store reports not ready while they do, and ready again once a write goes
// through.
func TestFullDatabaseIsUnavailableAndNotReady(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s, err := Open(ctx, OpenOptions{DataDir: t.TempDir(), Database: "full", Now: clock.now,
		sqlitePragmas: []string{"max_page_count(200)"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if err := s.Ready(ctx); err != nil {
		t.Fatalf("fresh store not ready: %v", err)
	}
	fill := func() error {
		for range 1000 { // 200 pages of 4 KiB hold far fewer 4 KB tickets
			_, _, err := s.CreateTicket(ctx, NewTicket{Creator: Actor{Type: CreatorCustomer}, TeamID: "t", Subject: "s", Description: strings.Repeat("x", 4000)})
			if err != nil {
				return err
			}
		}
		t.Fatal("1000 tickets went into a database of 200 pages")
		return nil
	}
	err = fill()
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "database or disk is full") {
		t.Fatalf("write to a full database = %v, want ErrUnavailable from SQLITE_FULL", err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping: %v (a full database still answers)", err)
	}
	if err := s.Ready(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Ready after a refused write = %v, want ErrUnavailable", err)
	}

	// Nothing writes for refusalHold: ready again, and the next refused
	// write makes it not ready at once.
	clock.add(refusalHold)
	if err := s.Ready(ctx); err != nil {
		t.Fatalf("Ready %s after the last refusal = %v", refusalHold, err)
	}
	if err := fill(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("second fill: %v", err)
	}
	if err := s.Ready(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Ready after another refused write = %v, want ErrUnavailable", err)
	}

	// A write that fits (a small row in a table with room) goes through:
	// ready again.
	if err := s.SaveMailboxState(ctx, MailboxState{ID: "a/INBOX", LastUID: 1}); err != nil {
		t.Fatalf("small write: %v", err)
	}
	if err := s.Ready(ctx); err != nil {
		t.Errorf("Ready after a write went through = %v", err)
	}
}

// What MongoDB, Atlas and FerretDB answer when they cannot write is an
// outage; an error that merely quotes such words is not.
func TestClassifyWriteRefusals(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"MongoDB OutOfDiskSpace", mongo.CommandError{Code: 14031, Message: "Both the data and journal are out of disk space"}, true},
		{"write error OutOfDiskSpace", mongo.WriteException{WriteErrors: []mongo.WriteError{{Code: 14031, Message: "out of disk space"}}}, true},
		{"Atlas quota", mongo.CommandError{Code: 8000, Name: "AtlasError", Message: "you are over your space quota, using 513 MB of 512 MB"}, true},
		{"FerretDB SQLITE_FULL", mongo.CommandError{Code: 1, Name: "InternalError", Message: "[msg_insert.go:168] database or disk is full (13)"}, true},
		{"FerretDB SQLITE_READONLY", mongo.CommandError{Code: 1, Name: "InternalError", Message: "attempt to write a readonly database (8)"}, true},
		{"not primary", mongo.CommandError{Code: 10107, Name: "NotWritablePrimary", Labels: []string{driver.RetryableWriteError}}, true},
		{"driver error (monitor)", driver.Error{Code: 1, Message: "database or disk is full (13)"}, true},
		{"duplicate key quoting the words", mongo.WriteException{WriteErrors: []mongo.WriteError{{Code: 11000, Message: `E11000 dup key: { sourceKey: "database or disk is full" }`}}}, false},
		{"other internal error", mongo.CommandError{Code: 1, Name: "InternalError", Message: "something else"}, false},
		{"validation", mongo.CommandError{Code: 121, Message: "Document failed validation"}, false},
	} {
		if got := errors.Is(classify(tt.err), ErrUnavailable); got != tt.want {
			t.Errorf("%s: unavailable = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// MongoDB reports a write refused for lack of space in an "ok" reply's
// writeErrors; a duplicate key there is a normal answer.
func TestReplyRefusal(t *testing.T) {
	reply := func(code int, msg string) bson.Raw {
		raw, err := bson.Marshal(bson.D{{Key: "ok", Value: 1}, {Key: "n", Value: 0},
			{Key: "writeErrors", Value: bson.A{bson.D{{Key: "index", Value: 0}, {Key: "code", Value: code}, {Key: "errmsg", Value: msg}}}}})
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	if replyRefusal(reply(14031, "out of disk space")) == nil {
		t.Error("OutOfDiskSpace in writeErrors not seen as a refusal")
	}
	if err := replyRefusal(reply(11000, "E11000 duplicate key")); err != nil {
		t.Errorf("duplicate key seen as a refusal: %v", err)
	}
	ok, _ := bson.Marshal(bson.D{{Key: "ok", Value: 1}, {Key: "n", Value: 1}})
	if err := replyRefusal(ok); err != nil {
		t.Errorf("plain success seen as a refusal: %v", err)
	}
}
