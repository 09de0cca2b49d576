package store

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ticketd/ticketd/internal/fakeclock"
	"github.com/ticketd/ticketd/internal/testwait"
)

// order records what happened, in the order it happened.
type order struct {
	mu     sync.Mutex
	events []string
}

func (o *order) add(e string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, e)
}

func (o *order) has(e string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, x := range o.events {
		if x == e {
			return true
		}
	}
	return false
}

func (o *order) want(t *testing.T, want ...string) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.events) != len(want) {
		t.Fatalf("events %v, want %v", o.events, want)
	}
	for i := range want {
		if o.events[i] != want[i] {
			t.Fatalf("events %v, want %v", o.events, want)
		}
	}
}

func (g *writeGate) state() (waiting, active int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waiting, g.active
}

// Two writes never reach the embedded server at once: the second waits
// for the first's answer.
func TestWriteGateLetsOneWriteThrough(t *testing.T) {
	g := newWriteGate(time.Now, time.After)
	ctx := context.Background()
	var o order
	g.enter(ctx, 1)
	go func() {
		g.enter(ctx, 2)
		o.add("2 entered")
		g.leave(2)
	}()
	testwait.For(t, "the second write waiting", func() bool { w, _ := g.state(); return w == 1 })
	o.add("1 answered")
	g.leave(1)
	testwait.For(t, "the second write through", func() bool { return o.has("2 entered") })
	o.want(t, "1 answered", "2 entered")

	// A write whose caller gave up while it waited holds nothing.
	g.enter(ctx, 3)
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { g.enter(cctx, 4); close(done) }()
	testwait.For(t, "the fourth write waiting", func() bool { w, _ := g.state(); return w == 1 })
	cancel()
	<-done
	g.leave(4) // the driver reports its failure: a no-op
	g.leave(3)
	g.enter(ctx, 5) // would block for ever if 4 held the gate
	g.leave(5)
}

// A deferred write (the relay's, a notifier's) waits while other writes
// keep coming, goes once they have been quiet for deferQuiet, and never
// waits longer than deferAtMost.
func TestWriteGateDeferredWritesYield(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	g := newWriteGate(clock.Now, clock.After)
	ctx := context.Background()
	var o order
	g.enter(ctx, 1)
	go func() {
		g.enter(Deferrable(ctx), 2)
		o.add("deferred entered")
		g.leave(2)
	}()
	testwait.For(t, "the deferred write yielding", func() bool { return clock.Sleepers() == 1 })
	g.leave(1)
	// Another write comes within deferQuiet: it goes first.
	clock.Advance(deferQuiet / 2)
	g.enter(ctx, 3)
	o.add("3 entered")
	g.leave(3)
	clock.Advance(deferQuiet / 2) // the deferred write wakes, sees 3, sleeps again
	testwait.For(t, "the deferred write yielding again", func() bool { return clock.Sleepers() == 1 })
	if o.has("deferred entered") {
		t.Fatal("the deferred write went while other writes kept coming")
	}
	clock.Advance(deferQuiet)
	testwait.For(t, "the deferred write through", func() bool { return o.has("deferred entered") })
	o.want(t, "3 entered", "deferred entered")

	// Under a write that never ends, a deferred one stops yielding after
	// deferAtMost, and then only waits its turn.
	g.enter(ctx, 4)
	go func() {
		g.enter(Deferrable(ctx), 5)
		o.add("second deferred entered")
		g.leave(5)
	}()
	for elapsed := time.Duration(0); elapsed < deferAtMost; elapsed += deferQuiet {
		testwait.For(t, "the deferred write yielding", func() bool { return clock.Sleepers() == 1 })
		clock.Advance(deferQuiet)
	}
	testwait.For(t, "the deferred write waiting its turn", func() bool { return clock.Sleepers() == 0 })
	o.add("4 answered")
	g.leave(4)
	testwait.For(t, "the second deferred write through", func() bool { return o.has("second deferred entered") })
	o.want(t, "3 entered", "deferred entered", "4 answered", "second deferred entered")
}
