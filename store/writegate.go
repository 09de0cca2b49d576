package store

import (
	"context"
	"sync"
	"time"
)

// The embedded server's SQLite takes one writer at a time and makes the
// others retry in its busy handler, which sleeps 1, 2, 5, 10, 15, 20, 25...
// ms between tries. With the mail source, the outbox relay and a notifier
// writing at once, the daemon spent most of a 2,000-mail burst asleep there
// (0.3 of 2 cores busy). So on the embedded server every write command
// waits for the previous one in this process instead (writeGate, held from
// the moment the driver sends a command until it is answered), and the
// next one starts at once. Reads are not held: SQLite's WAL lets them run
// beside the writer.
//
// Writes made for deferred work, the relay and the notifiers (Deferrable),
// also yield to the others while those are busy: in a burst the mail is
// stored first and its acknowledgement mailed after. Nothing waits for
// them: the outbox records every announcement in the write that caused it.

// Deferrable marks ctx's store writes as deferred work (relaying events,
// delivering notifications): on the embedded server they yield to other
// writes while those keep coming, for up to deferAtMost each.
func Deferrable(ctx context.Context) context.Context {
	return context.WithValue(ctx, deferrableKey{}, true)
}

type deferrableKey struct{}

func isDeferrable(ctx context.Context) bool {
	d, _ := ctx.Value(deferrableKey{}).(bool)
	return d
}

const (
	// deferQuiet is how long other writes must have been quiet before a
	// deferred one goes: longer than the gaps of a busy mail pipeline
	// between its writes (reading, parsing), short against a notification.
	deferQuiet = 50 * time.Millisecond
	// deferAtMost bounds how long a deferred write yields, so that under
	// a sustained load notifications still go out, slowly.
	deferAtMost = 250 * time.Millisecond
)

// writeGate lets one write command at a time through.
type writeGate struct {
	sem   chan struct{}
	now   func() time.Time
	after func(time.Duration) <-chan time.Time

	mu      sync.Mutex
	held    map[int64]bool // requests holding sem, true for an undeferred one
	waiting int            // undeferred writes waiting for sem
	active  int            // undeferred writes holding sem (0 or 1)
	lastEnd time.Time      // when an undeferred write last ended
}

func newWriteGate(now func() time.Time, after func(time.Duration) <-chan time.Time) *writeGate {
	return &writeGate{sem: make(chan struct{}, 1), now: now, after: after, held: map[int64]bool{}}
}

// enter waits for the gate on behalf of request id, or until ctx ends: the
// driver then fails the command without sending it.
func (g *writeGate) enter(ctx context.Context, id int64) {
	deferred := isDeferrable(ctx)
	if deferred {
		g.yield(ctx)
	} else {
		g.mu.Lock()
		g.waiting++
		g.mu.Unlock()
	}
	got := false
	select {
	case g.sem <- struct{}{}:
		got = true
	case <-ctx.Done():
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !deferred {
		g.waiting--
	}
	if !got {
		return
	}
	g.held[id] = !deferred
	if !deferred {
		g.active++
	}
}

// leave opens the gate if request id holds it.
func (g *writeGate) leave(id int64) {
	g.mu.Lock()
	undeferred, ok := g.held[id]
	delete(g.held, id)
	if undeferred {
		g.active--
		g.lastEnd = g.now()
	}
	g.mu.Unlock()
	if ok {
		<-g.sem
	}
}

// yield returns once no undeferred write is waiting or running and none
// ended within deferQuiet, or deferAtMost after it was called, or when ctx
// ends.
func (g *writeGate) yield(ctx context.Context) {
	until := g.now().Add(deferAtMost)
	for {
		g.mu.Lock()
		now := g.now()
		wait := deferQuiet - now.Sub(g.lastEnd)
		if g.waiting > 0 || g.active > 0 {
			wait = deferQuiet
		}
		g.mu.Unlock()
		if wait <= 0 || !now.Before(until) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-g.after(min(wait, until.Sub(now))):
		}
	}
}
