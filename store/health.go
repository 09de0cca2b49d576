package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver"
)

// A database that answers pings may still refuse every write: its disk is
// full, it is read-only, over its quota, or has no primary. Such a refusal
// is an outage (ErrUnavailable: retry later, never the caller's fault), and
// the store is not ready while it lasts.

// Server error codes that mean "cannot write now".
const (
	codeInternalError  = 1     // FerretDB passes SQLite's errors as this
	codeAtlasError     = 8000  // Atlas: "you are over your space quota"
	codeOutOfDiskSpace = 14031 // MongoDB
)

// refusalTexts are the messages of refusals that come with a generic code:
// SQLite's SQLITE_FULL (13), SQLITE_READONLY (8) and SQLITE_IOERR (10)
// through FerretDB as InternalError, for example "[msg_insert.go:168 ...]
// database or disk is full (13)"; the operating system's ENOSPC; Atlas'
// storage quota.
var refusalTexts = []string{
	"database or disk is full",
	"attempt to write a readonly database",
	"disk I/O error",
	"no space left on device",
	"over your space quota",
}

// refusal says whether a server error with this code and message means the
// database cannot write at the moment. Texts count only under the generic
// codes, so a value quoted in another error (a duplicate key) never does.
func refusal(code int, msg string) bool {
	if code == codeOutOfDiskSpace {
		return true
	}
	if code != codeInternalError && code != codeAtlasError {
		return false
	}
	msg = strings.ToLower(msg)
	for _, t := range refusalTexts {
		if strings.Contains(msg, strings.ToLower(t)) {
			return true
		}
	}
	return false
}

// writeRefused says whether err is the database refusing writes for a
// reason of its own (see refusal), or a write the driver itself calls
// retryable (no primary, stepping down, shutting down).
func writeRefused(err error) bool {
	var de driver.Error
	if errors.As(err, &de) {
		return de.HasErrorLabel(driver.RetryableWriteError) || refusal(int(de.Code), de.Message)
	}
	var we mongo.WriteException
	if errors.As(err, &we) {
		if we.HasErrorLabel(driver.RetryableWriteError) {
			return true
		}
		for _, e := range we.WriteErrors {
			if refusal(e.Code, e.Message) {
				return true
			}
		}
	}
	var be mongo.BulkWriteException
	if errors.As(err, &be) {
		for _, e := range be.WriteErrors {
			if refusal(e.Code, e.Message) {
				return true
			}
		}
	}
	var ce mongo.CommandError
	return errors.As(err, &ce) && (ce.HasErrorLabel(driver.RetryableWriteError) || refusal(int(ce.Code), ce.Message))
}

// refusalHold is how long one refused write keeps the store not ready
// when nothing writes after it. A successful write ends it at once; once it
// has passed, the store is ready again and the next write tells anew (a
// node taken out of its load balancer gets no writes to prove it well).
const refusalHold = 30 * time.Second

// writeHealth remembers the outcome of the last write command, as the
// driver reports it: a ping alone answers while every write fails.
type writeHealth struct {
	now func() time.Time

	mu        sync.Mutex
	refusedAt time.Time // zero: the last write went through
	refusal   error

	// sent counts the commands sent, by name: how many database operations
	// a piece of work costs is a figure the benchmarks report.
	sentMu sync.Mutex
	sent   map[string]int64

	// gate, once serializeWrites made it, lets one write command at a time
	// reach the database (see writegate.go).
	gate *writeGate
}

func newWriteHealth(now func() time.Time) *writeHealth {
	if now == nil {
		now = time.Now
	}
	return &writeHealth{now: now}
}

// serializeWrites makes write commands wait for each other in this
// process (see writeGate). Call it before the first write.
func (h *writeHealth) serializeWrites() {
	h.gate = newWriteGate(time.Now, time.After) // real time: a test's frozen clock would hold deferred writes forever
}

// writeCommands are the commands whose outcome tells whether the database
// writes.
var writeCommands = map[string]bool{"insert": true, "update": true, "delete": true, "findAndModify": true}

// monitor watches every write command on the client.
func (h *writeHealth) monitor() *event.CommandMonitor {
	return &event.CommandMonitor{
		// The driver calls Started right before it sends a command, and
		// Succeeded or Failed once it is answered, in the caller's
		// goroutine: the gate is held for exactly one round trip.
		Started: func(ctx context.Context, e *event.CommandStartedEvent) {
			h.sentMu.Lock()
			if h.sent == nil {
				h.sent = map[string]int64{}
			}
			h.sent[e.CommandName]++
			h.sentMu.Unlock()
			if h.gate != nil && writeCommands[e.CommandName] {
				h.gate.enter(ctx, e.RequestID)
			}
		},
		Succeeded: func(_ context.Context, e *event.CommandSucceededEvent) {
			if h.gate != nil {
				h.gate.leave(e.RequestID)
			}
			if writeCommands[e.CommandName] {
				h.record(replyRefusal(e.Reply))
			}
		},
		Failed: func(_ context.Context, e *event.CommandFailedEvent) {
			if h.gate != nil {
				h.gate.leave(e.RequestID)
			}
			// Other failures (a network error, a rejected document) say
			// nothing about whether the next write would go through:
			// Ping covers the network.
			if writeCommands[e.CommandName] && writeRefused(e.Failure) {
				h.record(e.Failure)
			}
		},
	}
}

// replyRefusal finds a refusal among the write errors of an "ok" reply
// (MongoDB reports a failed insert of one document that way).
func replyRefusal(reply bson.Raw) error {
	v, err := reply.LookupErr("writeErrors") // rare: skip decoding the rest of every reply
	if err != nil {
		return nil
	}
	var writeErrors []struct {
		Code   int    `bson:"code"`
		Errmsg string `bson:"errmsg"`
	}
	if err := v.Unmarshal(&writeErrors); err != nil {
		return nil
	}
	for _, e := range writeErrors {
		if refusal(e.Code, e.Errmsg) {
			return fmt.Errorf("write error %d: %s", e.Code, e.Errmsg)
		}
	}
	return nil
}

// record notes a write's outcome: nil for one that went through.
func (h *writeHealth) record(refused error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if refused == nil {
		h.refusedAt, h.refusal = time.Time{}, nil
		return
	}
	h.refusedAt, h.refusal = h.now(), refused
}

// CommandCounts returns how many commands of each name (find, insert,
// update, findAndModify, ...) this store has sent to the database since it
// was opened; empty for a store made with New.
func (s *Store) CommandCounts() map[string]int64 {
	h := s.writes
	h.sentMu.Lock()
	defer h.sentMu.Unlock()
	out := make(map[string]int64, len(h.sent))
	for k, v := range h.sent {
		out[k] = v
	}
	return out
}

// check returns the last refusal, if it is recent and no write has gone
// through since.
func (h *writeHealth) check() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.refusedAt.IsZero() || h.now().Sub(h.refusedAt) >= refusalHold {
		return nil
	}
	return h.refusal
}

// Ready reports whether the store can serve requests: the database answers
// a ping, and did not refuse the last write (disk full, read-only, over
// quota) within refusalHold. An error wraps ErrUnavailable.
func (s *Store) Ready(ctx context.Context) error {
	if err := s.Ping(ctx); err != nil {
		return err
	}
	if err := s.writes.check(); err != nil {
		return fmt.Errorf("database refuses writes: %w", errors.Join(ErrUnavailable, err))
	}
	return nil
}
