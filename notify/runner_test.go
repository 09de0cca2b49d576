package notify_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ticketd/ticketd/internal/fakeclock"
	"github.com/ticketd/ticketd/internal/testwait"
	"github.com/ticketd/ticketd/notify"
	"github.com/ticketd/ticketd/store"
	"github.com/ticketd/ticketd/store/storetest"
	"go.mongodb.org/mongo-driver/v2/bson"
)

var _ notify.OutboxStore = (*store.Store)(nil)

// wait is how long a test waits for something that must happen: a safety
// net against a hung test, never a measurement.
const wait = 20 * time.Second

const sink = "test"

// call is one Deliver: the test answers it on reply, or the adapter's
// context ends first.
type call struct {
	d     *store.Delivery
	ctx   context.Context
	reply chan error
}

// scripted is an Adapter whose every Deliver waits for the test's answer.
type scripted struct{ calls chan call }

func (s *scripted) Deliver(ctx context.Context, d *store.Delivery) error {
	c := call{d: d, ctx: ctx, reply: make(chan error, 1)}
	s.calls <- c
	select {
	case err := <-c.reply:
		return err
	case <-ctx.Done():
		return fmt.Errorf("send aborted: %w", ctx.Err())
	}
}

// world is one test's store, clock, adapter and runner.
type world struct {
	t       *testing.T
	ctx     context.Context
	st      *store.Store
	clock   *fakeclock.Clock
	adapter *scripted
	idle    chan struct{}

	mu       sync.Mutex
	outcomes []string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	clock := fakeclock.New(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC))
	st, _ := storetest.OpenWith(t, store.OpenOptions{Now: clock.Now})
	w := &world{t: t, ctx: t.Context(), st: st, clock: clock, adapter: &scripted{calls: make(chan call)}, idle: make(chan struct{}, 1)}
	if _, err := st.JoinDeployment(w.ctx, []string{sink}); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *world) options() notify.Options {
	return notify.Options{
		Sink: sink, Lease: time.Minute, MaxAttempts: 3, BackoffBase: time.Second, BackoffMax: 4 * time.Second,
		PollInterval: time.Hour, ShutdownGrace: 5 * time.Second,
		Now: w.clock.Now, After: w.clock.After,
		Idle: func() {
			select {
			case w.idle <- struct{}{}:
			default:
			}
		},
		Outcome: func(_ context.Context, d *store.Delivery, delivered bool, reason string) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.outcomes = append(w.outcomes, fmt.Sprintf("%s %v %s", d.Event.Kind, delivered, reason))
		},
	}
}

func testLog() *slog.Logger {
	var out io.Writer = io.Discard
	if testing.Verbose() {
		out = os.Stderr
	}
	return slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type run struct {
	r      *notify.Runner
	cancel context.CancelFunc
	done   chan error
}

func (w *world) start(o notify.Options, a notify.Adapter) *run {
	w.t.Helper()
	r, err := notify.NewRunner(o, w.st, a, testLog())
	if err != nil {
		w.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	x := &run{r: r, cancel: cancel, done: make(chan error, 1)}
	go func() { x.done <- r.Run(ctx) }()
	w.t.Cleanup(func() { x.stop(w.t) })
	if o.Idle != nil {
		w.asleep() // the first drain, of an empty queue: every later idle follows work
	}
	return x
}

// stop cancels Run and waits for it to return.
func (x *run) stop(t *testing.T) {
	t.Helper()
	x.cancel()
	select {
	case err, ok := <-x.done:
		if ok && err != nil {
			t.Errorf("Run: %v", err)
		}
		if ok {
			close(x.done)
		}
	case <-time.After(wait):
		t.Fatal("Run did not return after cancel")
	}
}

// ticket opens a ticket and queues its ticket.created delivery.
func (w *world) ticket() *store.Ticket {
	w.t.Helper()
	tk, _, err := w.st.CreateTicket(w.ctx, store.NewTicket{
		Creator: store.Actor{ID: bson.NewObjectID(), Type: store.CreatorCustomer}, TeamID: "t", Subject: "s", Source: store.SourceAPI,
	})
	if err != nil {
		w.t.Fatal(err)
	}
	w.relay(tk.ID)
	return tk
}

func (w *world) relay(id bson.ObjectID) {
	w.t.Helper()
	if _, err := w.st.RelayTicket(w.ctx, id); err != nil {
		w.t.Fatal(err)
	}
}

// next is the runner's next Deliver call.
func (w *world) next() call {
	w.t.Helper()
	select {
	case c := <-w.adapter.calls:
		return c
	case <-time.After(wait):
		w.t.Fatal("no delivery attempt")
		return call{}
	}
}

// asleep waits until the runner has drained what was due and waits: what
// it has not done by then it will not do without a signal or the clock.
func (w *world) asleep() {
	w.t.Helper()
	select {
	case <-w.idle:
	case <-time.After(wait):
		w.t.Fatal("the runner did not go idle")
	}
}

func (w *world) drainIdle() {
	select {
	case <-w.idle:
	default:
	}
}

func (w *world) delivery(id string) store.Delivery {
	w.t.Helper()
	for _, state := range []store.DeliveryState{store.DeliveryPending, store.DeliveryWaiting, store.DeliveryDead} {
		ds, err := w.st.Deliveries(w.ctx, state, 1000)
		if err != nil {
			w.t.Fatal(err)
		}
		for _, d := range ds {
			if d.ID == id {
				return d
			}
		}
	}
	return store.Delivery{}
}

func (w *world) outcomesSoFar() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.outcomes, "; ")
}

// Each kind of answer ends a delivery its own way: completed (reported or
// not) or dead at once (reported with the reason).
func TestAnswersAreBooked(t *testing.T) {
	for _, tc := range []struct {
		name    string
		answer  error
		state   store.DeliveryState // "" means completed: gone from the queue
		stats   notify.Stats
		outcome string
	}{
		{"delivered", nil, "", notify.Stats{Sent: 1}, "ticket.created true "},
		{"skipped", notify.Skipped("policy"), "", notify.Stats{Skipped: 1}, ""},
		{"permanent", fmt.Errorf("send: %w", notify.Permanent(errors.New("550 no such user"))), store.DeliveryDead,
			notify.Stats{Dead: 1}, "ticket.created false send: 550 no such user"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			x := w.start(w.options(), w.adapter)
			w.ticket()
			c := w.next()
			c.reply <- tc.answer
			w.asleep()
			d := w.delivery(c.d.ID)
			if d.State != tc.state || (tc.state != "" && (d.Attempts != 1 || !strings.Contains(d.LastError, "550"))) {
				t.Errorf("delivery after the answer: %+v, want state %q", d, tc.state)
			}
			if s := x.r.Stats(); s != tc.stats {
				t.Errorf("stats %+v, want %+v", s, tc.stats)
			}
			if got := w.outcomesSoFar(); got != tc.outcome {
				t.Errorf("outcomes %q, want %q", got, tc.outcome)
			}
		})
	}
}

// A temporary failure is retried after the backoff, on the clock: not
// before it passes, and dead after MaxAttempts.
func TestTemporaryFailuresBackOffThenDie(t *testing.T) {
	w := newWorld(t)
	o := w.options()
	x := w.start(o, w.adapter)
	w.ticket()
	for attempt := 1; attempt <= o.MaxAttempts; attempt++ {
		c := w.next()
		if c.d.Attempts != attempt {
			t.Fatalf("attempt %d carries Attempts %d", attempt, c.d.Attempts)
		}
		w.drainIdle()
		c.reply <- errors.New("451 try later")
		w.asleep()
		select {
		case c := <-w.adapter.calls:
			t.Fatalf("retried before the backoff passed: %+v", c.d)
		default:
		}
		w.clock.Advance(o.BackoffMax)
	}
	ds, _ := w.st.Deliveries(w.ctx, store.DeliveryDead, 10)
	if len(ds) != 1 || ds[0].Attempts != 3 || !strings.Contains(ds[0].LastError, "gave up after 3 attempts: 451") {
		t.Fatalf("dead letters %+v", ds)
	}
	if s := x.r.Stats(); s.Retried != 2 || s.Dead != 1 {
		t.Errorf("stats %+v", s)
	}
}

// Issue 6, point 7: a send cut short by our own shutdown is not the
// channel's fault. Even on its last attempt it is not dead-lettered, and
// no outcome is reported; it is due again at once.
func TestShutdownNeverDeadLetters(t *testing.T) {
	w := newWorld(t)
	o := w.options()
	o.MaxAttempts = 1
	x := w.start(o, w.adapter)
	w.ticket()
	c := w.next()
	x.cancel()
	// The grace runs on the clock: the send may still finish until it ends.
	select {
	case <-c.ctx.Done():
		t.Fatal("the send was aborted at once, without grace")
	default:
	}
	testwait.For(t, "the grace timer", func() bool {
		w.clock.Advance(o.ShutdownGrace)
		return c.ctx.Err() != nil
	})
	x.stop(t)
	d := w.delivery(c.d.ID)
	if d.State != store.DeliveryPending || d.Attempts != 1 || d.NextAttemptAt.After(w.clock.Now()) {
		t.Errorf("after a shutdown cut the last attempt short: %+v, want pending and due now (%v)", d, w.clock.Now())
	}
	if !strings.Contains(d.LastError, "context canceled") {
		t.Errorf("last error %q", d.LastError)
	}
	if s := x.r.Stats(); s.Dead != 0 {
		t.Errorf("stats %+v", s)
	}
	if got := w.outcomesSoFar(); got != "" {
		t.Errorf("a cut-short send reported %q", got)
	}
}

// A send that ends within the grace is completed normally.
func TestShutdownLetsTheSendInFlightFinish(t *testing.T) {
	w := newWorld(t)
	x := w.start(w.options(), w.adapter)
	w.ticket()
	c := w.next()
	x.cancel()
	c.reply <- nil
	x.stop(t)
	if d := w.delivery(c.d.ID); d.ID != "" {
		t.Errorf("delivery not completed: %+v", d)
	}
	if s := x.r.Stats(); s.Sent != 1 {
		t.Errorf("stats %+v", s)
	}
}

// Issue 6, point 7: admin-requeue wakes the runner at once; nothing else
// would for an hour (PollInterval), and the clock never moves here.
func TestRequeueWakesTheRunner(t *testing.T) {
	w := newWorld(t)
	w.start(w.options(), w.adapter)
	w.ticket()
	c := w.next()
	c.reply <- notify.Permanent(errors.New("550"))
	w.asleep()
	if err := w.st.RequeueDelivery(w.ctx, c.d.ID); err != nil {
		t.Fatal(err)
	}
	again := w.next()
	if again.d.ID != c.d.ID || again.d.Attempts != 1 {
		t.Errorf("after requeue got %+v", again.d)
	}
	again.reply <- nil
}

// A rate limit (Slack's 429) holds the whole sink until Retry-After, and
// does not count as a failed attempt.
func TestRetryAfterPausesTheSink(t *testing.T) {
	w := newWorld(t)
	o := w.options()
	o.MaxAttempts = 1
	x := w.start(o, w.adapter)
	w.ticket()
	c := w.next()
	w.ticket() // queued (and signalled) while the first is in flight
	c.reply <- notify.RetryAfter(errors.New("429 ratelimited"), 30*time.Second)
	quiet := func() {
		t.Helper()
		w.asleep()
		select {
		case c := <-w.adapter.calls:
			t.Fatalf("delivered %s during the pause", c.d.ID)
		default:
		}
	}
	quiet()
	w.clock.Advance(29 * time.Second)
	w.drainIdle()
	w.ticket() // a signal during the pause changes nothing
	quiet()
	w.clock.Advance(time.Second)
	got := map[string]bool{}
	for range 3 {
		n := w.next()
		got[n.d.ID] = true
		n.reply <- nil
	}
	if !got[c.d.ID] || len(got) != 3 {
		t.Errorf("after the pause delivered %v", got)
	}
	testwait.For(t, "the stats", func() bool { return x.r.Stats().Sent == 3 })
	if s := x.r.Stats(); s.Dead != 0 || s.Retried != 1 || s.RateLimited != 1 {
		t.Errorf("stats %+v (a 429 must not use up the single attempt)", s)
	}
}

// Two runners on one store deliver each delivery exactly once, and a
// ticket's deliveries in order.
func TestRacingRunnersDeliverEachOnceInOrder(t *testing.T) {
	w := newWorld(t)
	var mu sync.Mutex
	seen := map[string]int{}
	var order []string
	a := adapterFunc(func(ctx context.Context, d *store.Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		seen[d.ID]++
		order = append(order, d.TicketID.Hex()+" "+string(d.Event.Kind))
		return nil
	})
	o := w.options()
	o.Idle = nil
	x, y := w.start(o, a), w.start(o, a)
	const n = 10
	tickets := make([]*store.Ticket, n)
	for i := range tickets {
		tk, _, err := w.st.CreateTicket(w.ctx, store.NewTicket{Creator: store.Actor{ID: bson.NewObjectID(), Type: store.CreatorCustomer}, TeamID: "t", Subject: "s"})
		if err != nil {
			t.Fatal(err)
		}
		for j := range 2 {
			if _, _, err := w.st.AddResponse(w.ctx, tk.ID, store.AllTickets, store.NewResponse{Author: store.Actor{ID: bson.NewObjectID(), Type: store.CreatorAdmin}, Description: fmt.Sprint(j)}); err != nil {
				t.Fatal(err)
			}
		}
		tickets[i] = tk
		w.relay(tk.ID)
	}
	testwait.For(t, "every delivery", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == 3*n
	})
	for id, k := range seen {
		if k != 1 {
			t.Errorf("%s delivered %d times", id, k)
		}
	}
	for _, tk := range tickets {
		var mine []string
		for _, o := range order {
			if strings.HasPrefix(o, tk.ID.Hex()) {
				mine = append(mine, strings.TrimPrefix(o, tk.ID.Hex()+" "))
			}
		}
		if strings.Join(mine, ",") != "ticket.created,response.added,response.added" {
			t.Errorf("ticket %s delivered in order %v", tk.ID.Hex(), mine)
		}
	}
	if sx, sy := x.r.Stats(), y.r.Stats(); sx.Sent+sy.Sent != 3*n {
		t.Errorf("sent %d + %d", sx.Sent, sy.Sent)
	}
}

// A panicking adapter is a failed attempt, not a dead daemon.
func TestPanicIsAFailedAttempt(t *testing.T) {
	w := newWorld(t)
	x := w.start(w.options(), adapterFunc(func(context.Context, *store.Delivery) error { panic("boom") }))
	w.ticket()
	w.asleep()
	testwait.For(t, "the retry", func() bool { return x.r.Stats().Retried == 1 })
	ds, _ := w.st.Deliveries(w.ctx, store.DeliveryPending, 10)
	if len(ds) != 1 || !strings.Contains(ds[0].LastError, "panic while delivering: boom") {
		t.Errorf("after a panic: %+v", ds)
	}
	if s := x.r.Stats(); s.Retried != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestOptionsAreValidated(t *testing.T) {
	err := notify.Options{MaxAttempts: -1, BackoffBase: time.Minute, BackoffMax: time.Second, PollInterval: -1}.Validate()
	for _, want := range []string{"sink: required", "maxAttempts", "backoffMax", "pollInterval"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to name %s", err, want)
		}
	}
	if _, err := notify.NewRunner(notify.Options{Sink: "x"}, nil, nil, nil); err == nil {
		t.Error("nil store and adapter accepted")
	}
}

type adapterFunc func(ctx context.Context, d *store.Delivery) error

func (f adapterFunc) Deliver(ctx context.Context, d *store.Delivery) error { return f(ctx, d) }

// A runner whose lease ran out while it was sending, and whose delivery
// another runner claimed since, books nothing: neither a dead letter nor a
// retry of the other's claim.
func TestALostClaimIsLeftToTheNewClaimant(t *testing.T) {
	for _, answer := range []error{notify.Permanent(errors.New("550 no such user")), errors.New("451 try later")} {
		t.Run(answer.Error(), func(t *testing.T) {
			w := newWorld(t)
			x := w.start(w.options(), w.adapter)
			w.ticket()
			c := w.next()
			w.clock.Advance(time.Minute + time.Second) // the runner's lease runs out
			other, err := w.st.ClaimDelivery(w.ctx, sink, time.Minute)
			if err != nil || other.ID != c.d.ID {
				t.Fatalf("second claim: %+v %v", other, err)
			}
			c.reply <- answer
			w.asleep()
			d := w.delivery(c.d.ID)
			if d.State != store.DeliveryPending || d.Claim != other.Claim || d.LastError != "" || !d.NextAttemptAt.Equal(other.NextAttemptAt) {
				t.Errorf("the new claimant's delivery was changed: %+v", d)
			}
			if s := x.r.Stats(); s.Dead != 0 || s.Retried != 0 {
				t.Errorf("stats %+v: a lost claim was booked", s)
			}
			if err := w.st.CompleteDelivery(w.ctx, other); err != nil {
				t.Errorf("the new claimant completes: %v", err)
			}
		})
	}
}
