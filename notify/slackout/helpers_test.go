package slackout

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/ticketd/ticketd/internal/slackfake"
	"github.com/ticketd/ticketd/internal/slackui"
	"github.com/ticketd/ticketd/notify"
	"github.com/ticketd/ticketd/store"
	"github.com/ticketd/ticketd/store/storetest"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// env is a sink wired to the real embedded store and the fake Slack.
type env struct {
	t        testing.TB
	ctx      context.Context
	st       *store.Store
	fake     *slackfake.Fake
	a        *Adapter
	reader   *flakyReader
	customer *store.Customer
	agent    *store.Agent
}

// flakyReader is the store with a BindThread that can be made to fail, as
// a crash between Slack's answer and the binding would leave things.
type flakyReader struct {
	*store.Store
	failBinds atomic.Int32
	// beforeBind, when set, runs before each bind (the inbound side binding
	// the same root in between).
	beforeBind func(ctx context.Context, ticket bson.ObjectID, kind store.ThreadKind, key string)
}

func (r *flakyReader) BindThread(ctx context.Context, ticket bson.ObjectID, kind store.ThreadKind, key string) error {
	if r.beforeBind != nil {
		r.beforeBind(ctx, ticket, kind, key)
	}
	if r.failBinds.Add(-1) >= 0 {
		return errors.New("simulated crash before the binding was stored")
	}
	r.failBinds.Store(0)
	return r.Store.BindThread(ctx, ticket, kind, key)
}

func newEnv(t testing.TB, mod ...func(*Options)) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	st := storetest.Open(t)
	f := slackfake.New(t)
	e := &env{t: t, ctx: ctx, st: st, fake: f, reader: &flakyReader{Store: st}}
	o := Options{
		Client:         slack.New(slackfake.BotToken, slack.OptionAPIURL(f.APIURL())),
		Channel:        slackfake.ChannelID,
		BotUserID:      slackfake.BotUserID,
		APIBaseURL:     "https://tickets.example.com/",
		MaxUploadBytes: 1024,
		Store:          e.reader,
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, m := range mod {
		m(&o)
	}
	a, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	e.a = a
	if e.customer, _, err = st.FindOrCreateCustomer(ctx, "ann@example.com", "Ann Customer", "acme"); err != nil {
		t.Fatal(err)
	}
	if e.agent, err = st.FindOrCreateAgent(ctx, "bob@support.example", "Bob Agent", "U0BOB"); err != nil {
		t.Fatal(err)
	}
	return e
}

// newTicket opens a ticket by the customer, by email.
func (e *env) newTicket() *store.Ticket {
	e.t.Helper()
	tk, _, err := e.st.CreateTicket(e.ctx, store.NewTicket{
		Creator: store.Actor{ID: e.customer.ID, Type: store.CreatorCustomer, Via: store.SourceEmail},
		TeamID:  "acme", Category: "Billing", Subject: "Invoice <wrong>", Description: "Please fix & resend.",
		Source: store.SourceEmail,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return tk
}

// event returns the ticket's latest pending event of a kind (the relay is
// not running, so every event stays on the ticket).
func (e *env) event(id bson.ObjectID, kind store.EventKind) store.Event {
	e.t.Helper()
	return storetest.PendingEvent(e.t, e.st, id, kind)
}

// deliver hands one event to the sink as the runner's attempt-th try.
func (e *env) deliver(ev store.Event, attempt int) error {
	return e.a.Deliver(e.ctx, &store.Delivery{
		ID: ev.ID.Hex() + "/" + Sink, Sink: Sink, Event: ev, State: store.DeliveryPending, Attempts: attempt,
	})
}

// mustDeliver delivers on the first attempt and fails the test unless the
// delivery is done (delivered, or skipped on purpose).
func (e *env) mustDeliver(ev store.Event) {
	e.t.Helper()
	if err := e.deliver(ev, 1); !done(err) {
		e.t.Fatalf("deliver %s: %v", ev.Kind, err)
	}
}

// done reports whether the runner completes a delivery that ended with err:
// nil, or notify.Skipped (whose type is the runner's; its text says it).
func done(err error) bool {
	return err == nil || strings.HasPrefix(err.Error(), "not delivered: ") && !notify.IsPermanent(err)
}

// rootTS is the ts the ticket is bound to ("" when none).
func (e *env) rootTS(id bson.ObjectID) string {
	e.t.Helper()
	tk, err := e.st.Ticket(e.ctx, id, store.AllTickets)
	if err != nil {
		e.t.Fatal(err)
	}
	ch, ts, ok := slackui.ParseMessageKey(tk.Thread(store.ThreadSlackAgents))
	if ok && ch != slackfake.ChannelID {
		e.t.Fatalf("bound to channel %s", ch)
	}
	return ts
}

// withRoot opens a ticket and delivers its creation.
func (e *env) withRoot() (*store.Ticket, string) {
	e.t.Helper()
	tk := e.newTicket()
	e.mustDeliver(e.event(tk.ID, store.EventTicketCreated))
	ts := e.rootTS(tk.ID)
	if ts == "" {
		e.t.Fatal("no root bound")
	}
	return tk, ts
}

// replies is the thread under ts, as the fake holds it.
func (e *env) replies(ts string) []slackfake.Message {
	return e.fake.Replies(slackfake.ChannelID, ts)
}

// blocksText is every text of a message's blocks, joined by newlines.
func blocksText(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	text, err := slackfake.BlocksText(raw)
	if err != nil {
		t.Fatal(err)
	}
	return text
}
