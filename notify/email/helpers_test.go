package email

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ticketd/ticketd/internal/fakeclock"
	"github.com/ticketd/ticketd/internal/replytoken"
	"github.com/ticketd/ticketd/internal/testwait"
	"github.com/ticketd/ticketd/notify"
	"github.com/ticketd/ticketd/notify/email/smtptest"
	"github.com/ticketd/ticketd/store"
	"github.com/ticketd/ticketd/store/storetest"
	"go.mongodb.org/mongo-driver/v2/bson"
)

var _ Store = (*store.Store)(nil)

// env is one test's world: a store and the runners on a fake clock, an SMTP
// server, a customer and an agent.
type env struct {
	t      testing.TB
	ctx    context.Context
	clock  *fakeclock.Clock
	idled  chan struct{} // a runner drained what was due and waits
	st     *store.Store
	srv    *smtptest.Server
	signer *replytoken.Signer
	cust   *store.Customer
	agent  *store.Agent
}

func newEnv(t testing.TB, so smtptest.Options) *env {
	t.Helper()
	ctx := t.Context()
	clock := fakeclock.New(time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC))
	st, _ := storetest.OpenWith(t, store.OpenOptions{Now: clock.Now})
	if _, err := st.JoinDeployment(ctx, []string{Sink}); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: ctx, clock: clock, idled: make(chan struct{}, 1), st: st, srv: smtptest.StartWith(t, so), signer: replytoken.New([]byte("test secret"))}
	var err error
	if e.cust, _, err = st.FindOrCreateCustomer(ctx, "bob@customer.example", "Bob Customer", ""); err != nil {
		t.Fatal(err)
	}
	if e.agent, err = st.FindOrCreateAgent(ctx, "ada@example.com", "Ada Agent", ""); err != nil {
		t.Fatal(err)
	}
	return e
}

// options point at the test server over plain SMTP on loopback. The
// runner's waits are on the fake clock: nothing is retried until the test
// moves it (drive).
func (e *env) options() Options {
	return Options{
		SMTP:   SMTPOptions{Host: e.srv.Host(), Port: e.srv.Port(), Security: SecurityPlain, Timeout: 3 * time.Second},
		From:   "Example Support <support@example.com>",
		Signer: e.signer,
		Schedule: notify.Schedule{
			BackoffBase: 20 * time.Second, BackoffMax: time.Minute, Lease: 5 * time.Minute,
			PollInterval: time.Hour, ShutdownGrace: 2 * time.Second,
		},
	}
}

// testLogger logs to the test at debug level when -v, else warnings only.
func testLogger(t testing.TB) *slog.Logger {
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelDebug
	}
	var w io.Writer = os.Stderr
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// relay runs the outbox relay for the "email" sink until the test ends.
func (e *env) relay() {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.st.RunRelay(ctx, 200*time.Millisecond)
	}()
	e.t.Cleanup(func() { cancel(); <-done })
}

// running is a delivery runner with the email adapter, in the background.
type running struct {
	n      *notify.Runner
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// stop cancels Run and waits for it to return.
func (r *running) stop(t testing.TB) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
	})
}

func (e *env) start(o Options) *running {
	return e.startWith(o, e.st)
}

// startWith runs the email sink as cmd wires it: the adapter under a
// runner with the options' retry settings, here on the fake clock.
func (e *env) startWith(o Options, outbox notify.OutboxStore) *running {
	e.t.Helper()
	a, err := NewAdapter(o, e.st, testLogger(e.t))
	if err != nil {
		e.t.Fatalf("NewAdapter: %v", err)
	}
	ro := o.RunnerOptions()
	ro.Now, ro.After = e.clock.Now, e.clock.After
	ro.Idle = func() {
		select {
		case e.idled <- struct{}{}:
		default:
		}
	}
	n, err := notify.NewRunner(ro, outbox, a, testLogger(e.t))
	if err != nil {
		e.t.Fatalf("NewRunner: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{n: n, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- n.Run(ctx) }()
	e.t.Cleanup(func() { r.stop(e.t) })
	return r
}

// drive moves the fake clock by step each time a runner goes idle, until
// cond holds: retries and expired leases come due without real waiting.
func (e *env) drive(what string, step time.Duration, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		select {
		case <-e.idled:
			e.clock.Advance(step)
		case <-time.After(10 * time.Millisecond): // re-check cond: the work may be done
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// ticket opens a ticket as the customer, by mail, as ingest does: its
// Message-ID recorded in the same write.
func (e *env) ticket(subject string) *store.Ticket {
	e.t.Helper()
	key := "<" + bson.NewObjectID().Hex() + "@customer.example>"
	tk, _, err := e.st.CreateTicket(e.ctx, store.NewTicket{
		Creator: store.Actor{ID: e.cust.ID, Type: store.CreatorCustomer}, TeamID: e.cust.TeamID,
		Category: "general", Subject: subject, Description: "It does not work.", Source: store.SourceEmail, SourceKey: key, MessageID: key,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return e.load(tk.ID)
}

func (e *env) reply(tk *store.Ticket, text string, internal bool) {
	e.t.Helper()
	if _, _, err := e.st.AddResponse(e.ctx, tk.ID, store.AllTickets, store.NewResponse{
		Author: store.Actor{ID: e.agent.ID, Type: store.CreatorAdmin}, Description: text, Source: store.SourceAPI, Internal: internal,
	}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) customerReply(tk *store.Ticket, text string) {
	e.t.Helper()
	if _, _, err := e.st.AddResponse(e.ctx, tk.ID, store.AllTickets, store.NewResponse{
		Author: store.Actor{ID: e.cust.ID, Type: store.CreatorCustomer}, Description: text, Source: store.SourceEmail,
	}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) setStatus(tk *store.Ticket, s store.Status) {
	e.t.Helper()
	if _, err := e.st.UpdateTicket(e.ctx, tk.ID, store.AllTickets, store.TicketUpdate{Status: &s},
		store.Actor{ID: e.agent.ID, Type: store.CreatorAdmin}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) load(id bson.ObjectID) *store.Ticket {
	e.t.Helper()
	tk, err := e.st.Ticket(e.ctx, id, store.AllTickets)
	if err != nil {
		e.t.Fatal(err)
	}
	return tk
}

// deliveries lists the email queue's entries in a state.
func (e *env) deliveries(state store.DeliveryState) []store.Delivery {
	e.t.Helper()
	ds, err := e.st.Deliveries(e.ctx, state, 1000)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []store.Delivery
	for _, d := range ds {
		if d.Sink == Sink {
			out = append(out, d)
		}
	}
	return out
}

// eventually waits until cond holds (timeout: kept for the callers'
// readability; testwait.For's limit applies).
func eventually(t testing.TB, _ time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, what, cond)
}

// idle relays every event still on a ticket, then waits until the email
// queue holds nothing but dead letters: everything was sent, skipped or
// killed. One query counts pending and waiting together: counted apart, a
// delivery promoted between the two counts would be missed.
func (e *env) idle() {
	e.t.Helper()
	if _, err := e.st.RelayAll(e.ctx); err != nil {
		e.t.Fatal(err)
	}
	eventually(e.t, 10*time.Second, "an empty email queue", func() bool {
		n, err := e.st.Database().Collection("outbox").CountDocuments(e.ctx, bson.D{
			{Key: "sink", Value: Sink}, {Key: "state", Value: bson.D{{Key: "$ne", Value: store.DeliveryDead}}}})
		if err != nil {
			e.t.Fatal(err)
		}
		return n == 0
	})
}

// bodyText returns the decoded text/plain part of a message.
func bodyText(t testing.TB, m smtptest.Message) string {
	t.Helper()
	text, _ := parts(t, m)
	return text
}

func header(t testing.TB, m smtptest.Message, key string) string {
	t.Helper()
	msg, err := m.Parse()
	if err != nil {
		t.Fatalf("parse message: %v", err)
	}
	return msg.Header.Get(key)
}

func contains(t testing.TB, what, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Errorf("%s = %q, want it to contain %q", what, s, sub)
	}
}
