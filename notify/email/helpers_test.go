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

	"github.com/ticketd/ticketd/internal/replytoken"
	"github.com/ticketd/ticketd/notify/email/smtptest"
	"github.com/ticketd/ticketd/store"
	"github.com/ticketd/ticketd/store/storetest"
	"go.mongodb.org/mongo-driver/v2/bson"
)

var _ OutboxStore = (*store.Store)(nil)

// env is one test's world: a store, an SMTP server, a customer and an agent.
type env struct {
	t      testing.TB
	ctx    context.Context
	st     *store.Store
	srv    *smtptest.Server
	signer *replytoken.Signer
	cust   *store.Customer
	agent  *store.Agent
}

func newEnv(t testing.TB, so smtptest.Options) *env {
	t.Helper()
	ctx := t.Context()
	st := storetest.Open(t)
	if _, err := st.JoinDeployment(ctx, []string{Sink}); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: ctx, st: st, srv: smtptest.StartWith(t, so), signer: replytoken.New([]byte("test secret"))}
	var err error
	if e.cust, _, err = st.FindOrCreateCustomer(ctx, "bob@customer.example", "Bob Customer", ""); err != nil {
		t.Fatal(err)
	}
	if e.agent, err = st.FindOrCreateAgent(ctx, "ada@example.com", "Ada Agent", ""); err != nil {
		t.Fatal(err)
	}
	return e
}

// options point at the test server over plain SMTP on loopback, with
// short waits.
func (e *env) options() Options {
	return Options{
		SMTP:          SMTPOptions{Host: e.srv.Host(), Port: e.srv.Port(), Security: SecurityPlain, Timeout: 3 * time.Second},
		From:          "Example Support <support@example.com>",
		Signer:        e.signer,
		BackoffBase:   20 * time.Millisecond,
		BackoffMax:    100 * time.Millisecond,
		Lease:         5 * time.Second,
		PollInterval:  200 * time.Millisecond,
		ShutdownGrace: 2 * time.Second,
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

// running is a Notifier's Run in the background.
type running struct {
	n      *Notifier
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// stop cancels Run and returns how long it took to return.
func (r *running) stop(t testing.TB) time.Duration {
	t.Helper()
	var took time.Duration
	r.once.Do(func() {
		start := time.Now()
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
		took = time.Since(start)
	})
	return took
}

func (e *env) start(o Options) *running {
	return e.startWith(o, e.st)
}

func (e *env) startWith(o Options, st OutboxStore) *running {
	e.t.Helper()
	n, err := New(o, st, testLogger(e.t))
	if err != nil {
		e.t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{n: n, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- n.Run(ctx) }()
	e.t.Cleanup(func() { r.stop(e.t) })
	return r
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

// eventually waits until cond holds, checking every 10ms.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// idle relays every event still on a ticket, then waits until the email
// queue has no pending entries: everything was sent, skipped or killed.
func (e *env) idle() {
	e.t.Helper()
	if _, err := e.st.RelayAll(e.ctx); err != nil {
		e.t.Fatal(err)
	}
	eventually(e.t, 10*time.Second, "an empty email queue", func() bool {
		return len(e.deliveries(store.DeliveryPending))+len(e.deliveries(store.DeliveryWaiting)) == 0
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
