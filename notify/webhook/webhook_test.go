package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/internal/fakeclock"
	"github.com/ticketd/ticketd/internal/testwait"
	"github.com/ticketd/ticketd/notify"
	"github.com/ticketd/ticketd/store"
	"github.com/ticketd/ticketd/store/storetest"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// hit is one request the receiver got.
type hit struct {
	header http.Header
	body   []byte
}

// receiver is an httptest server that records each request and answers
// with the next of its scripted answers (200 once they run out).
type receiver struct {
	srv  *httptest.Server
	hits chan hit
	mu   sync.Mutex
	next []func(w http.ResponseWriter)
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{hits: make(chan hit, 100)}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.hits <- hit{header: r.Header.Clone(), body: body}
		rc.mu.Lock()
		var answer func(http.ResponseWriter)
		if len(rc.next) > 0 {
			answer, rc.next = rc.next[0], rc.next[1:]
		}
		rc.mu.Unlock()
		if answer != nil {
			answer(w)
		}
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

// then scripts the next answers.
func (rc *receiver) then(answers ...func(w http.ResponseWriter)) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.next = append(rc.next, answers...)
}

func status(code int, header ...string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(code)
	}
}

// wait returns the next request, verified against testSecret at now.
func (rc *receiver) wait(t *testing.T, now time.Time) (hit, Payload) {
	t.Helper()
	select {
	case h := <-rc.hits:
		if err := Verify(testSecret, h.header, h.body, now, DefaultTolerance); err != nil {
			t.Fatalf("the request does not verify: %v", err)
		}
		var p Payload
		if err := json.Unmarshal(h.body, &p); err != nil {
			t.Fatalf("body %s: %v", h.body, err)
		}
		return h, p
	case <-time.After(testwait.Timeout):
		t.Fatalf("no request after %s", testwait.Timeout)
	}
	return hit{}, Payload{}
}

// none fails if the receiver got a request.
func (rc *receiver) none(t *testing.T) {
	t.Helper()
	select {
	case h := <-rc.hits:
		t.Fatalf("unexpected request: %s", h.body)
	default:
	}
}

// env is an endpoint's adapter on the real embedded store.
type env struct {
	t     *testing.T
	ctx   context.Context
	st    *store.Store
	rc    *receiver
	cust  *store.Customer
	agent *store.Agent
	clock *fakeclock.Clock
}

func newEnv(t *testing.T) *env {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	clock := fakeclock.New(time.Now().UTC().Truncate(time.Millisecond))
	st, _ := storetest.OpenWith(t, store.OpenOptions{Now: clock.Now})
	e := &env{t: t, ctx: ctx, st: st, rc: newReceiver(t), clock: clock}
	var err error
	if e.cust, _, err = st.FindOrCreateCustomer(ctx, "ann@example.com", "Ann", "acme"); err != nil {
		t.Fatal(err)
	}
	if e.agent, err = st.FindOrCreateAgent(ctx, "bob@support.example", "Bob", ""); err != nil {
		t.Fatal(err)
	}
	return e
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// adapter makes the endpoint "crm" pointing at the receiver.
func (e *env) adapter(mod ...func(*Options)) *Adapter {
	e.t.Helper()
	o := Options{Name: "crm", URL: e.rc.srv.URL + "/hooks", Secret: testSecret, Store: e.st, Logger: quiet(), Now: e.clock.Now}
	for _, m := range mod {
		m(&o)
	}
	a, err := New(o)
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

func (e *env) ticket() *store.Ticket {
	e.t.Helper()
	tk, _, err := e.st.CreateTicket(e.ctx, store.NewTicket{
		Creator: store.Actor{ID: e.cust.ID, Type: store.CreatorCustomer, Via: store.SourceAPI},
		TeamID:  "acme", Category: "Billing", Subject: "Invoice wrong", Description: "Please fix.", Source: store.SourceAPI,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return tk
}

func (e *env) reply(tk *store.Ticket, text string, internal bool) {
	e.t.Helper()
	if _, _, err := e.st.AddResponse(e.ctx, tk.ID, store.AllTickets, store.NewResponse{
		Author: store.Actor{ID: e.agent.ID, Type: store.CreatorAdmin, Via: store.SourceAPI}, Description: text,
		Source: store.SourceAPI, Internal: internal}); err != nil {
		e.t.Fatal(err)
	}
}

// event is the ticket's latest pending event of a kind (no relay runs, so
// every event stays on the ticket).
func (e *env) event(id bson.ObjectID, kind store.EventKind) store.Event {
	e.t.Helper()
	return storetest.PendingEvent(e.t, e.st, id, kind)
}

func deliver(ctx context.Context, a *Adapter, ev store.Event) error {
	return a.Deliver(ctx, &store.Delivery{ID: ev.ID.Hex() + "/" + Sink("crm"), Sink: Sink("crm"), Event: ev, Attempts: 1})
}

func skipped(err error) bool { return notify.IsSkipped(err) }

func TestDeliverSignsAndDescribesTheChange(t *testing.T) {
	e := newEnv(t)
	a := e.adapter()
	tk := e.ticket()
	ev := e.event(tk.ID, store.EventTicketCreated)
	if err := deliver(e.ctx, a, ev); err != nil {
		t.Fatal(err)
	}
	h, p := e.rc.wait(t, e.clock.Now())
	if got := h.header.Get(HeaderID); got != MessageID(ev.ID.Hex()+"/"+Sink("crm")) {
		t.Errorf("webhook-id %q is not derived from the delivery", got)
	}
	if ct := h.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if p.Type != "ticket.created" || p.Data.TicketID != tk.ID.Hex() || p.Data.Ticket.Subject != "Invoice wrong" ||
		p.Data.Actor.Type != "customer" || p.Data.Actor.ID != e.cust.ID.Hex() || p.Data.EventID != ev.ID.Hex() || p.Data.Ticket.RefID != tk.RefID {
		t.Errorf("payload %+v", p)
	}

	status := store.StatusResolved
	if _, err := e.st.UpdateTicket(e.ctx, tk.ID, store.AllTickets, store.TicketUpdate{Status: &status, AssigneeID: &e.agent.ID},
		store.Actor{ID: e.agent.ID, Type: store.CreatorAdmin, Via: store.SourceAPI}); err != nil {
		t.Fatal(err)
	}
	if err := deliver(e.ctx, a, e.event(tk.ID, store.EventAssigneeChanged)); err != nil {
		t.Fatal(err)
	}
	h, _ = e.rc.wait(t, e.clock.Now())
	var raw struct{ Data map[string]any }
	if err := json.Unmarshal(h.body, &raw); err != nil {
		t.Fatal(err)
	}
	if from, ok := raw.Data["from"]; !ok || from != nil || raw.Data["to"] != e.agent.ID.Hex() {
		t.Errorf("assignee change from nobody: data %v, want from null and to the agent", raw.Data)
	}
}

// A retry after a 500 carries the same webhook-id (with a fresh timestamp
// and signature), under the shared runner on a fake clock.
func TestRetryKeepsTheWebhookID(t *testing.T) {
	e := newEnv(t)
	r, idle := e.runner(e.adapter())
	e.rc.then(status(500))
	first := e.attempt(idle)
	e.clock.Advance(time.Second) // BackoffBase: the longest first backoff
	second, p := e.rc.wait(t, e.clock.Now())
	waitIdle(t, idle)
	if first.header.Get(HeaderID) != second.header.Get(HeaderID) {
		t.Fatalf("webhook-id %q then %q", first.header.Get(HeaderID), second.header.Get(HeaderID))
	}
	if first.header.Get(HeaderTimestamp) == second.header.Get(HeaderTimestamp) {
		t.Fatal("the retry was not signed anew")
	}
	if p.Type != "ticket.created" {
		t.Fatalf("retried %s", p.Type)
	}
	if s := r.Stats(); s.Sent != 1 || s.Retried != 1 || s.Dead != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// 410 Gone: dead at once, listed with the receiver's answer.
func TestGoneIsADeadLetter(t *testing.T) {
	e := newEnv(t)
	_, idle := e.runner(e.adapter())
	e.rc.then(func(w http.ResponseWriter) { w.WriteHeader(http.StatusGone); io.WriteString(w, "endpoint removed") })
	e.attempt(idle)
	if dead := e.deliveries(store.DeliveryDead); len(dead) != 1 || dead[0].Sink != Sink("crm") || !strings.Contains(dead[0].LastError, "410") || !strings.Contains(dead[0].LastError, "endpoint removed") {
		t.Fatalf("dead letters %+v", e.deliveries(store.DeliveryDead))
	}
}

// 429 and 503 with Retry-After are waited out exactly that long.
func TestRetryAfterIsHonoured(t *testing.T) {
	for _, code := range []int{http.StatusTooManyRequests, http.StatusServiceUnavailable} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			e := newEnv(t)
			r, idle := e.runner(e.adapter())
			e.rc.then(status(code, "Retry-After", "120"))
			e.attempt(idle)
			pending := e.deliveries(store.DeliveryPending)
			if want := e.clock.Now().Add(120 * time.Second); len(pending) != 1 || !pending[0].NextAttemptAt.Equal(want) {
				t.Fatalf("pending %+v, want the next attempt at %v", pending, want)
			}
			e.clock.Advance(120 * time.Second)
			e.rc.wait(t, e.clock.Now())
			waitIdle(t, idle)
			if s := r.Stats(); s.Sent != 1 || s.RateLimited != 1 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

// A redirect is not followed: the signed body never reaches where it
// points, and the attempt is a (temporary) failure.
func TestRedirectIsNotFollowed(t *testing.T) {
	e := newEnv(t)
	var followed atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { followed.Add(1) }))
	defer elsewhere.Close()
	a := e.adapter()
	for _, code := range []int{http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		e.rc.then(status(code, "Location", elsewhere.URL+"/x"))
		err := deliver(e.ctx, a, e.event(e.ticket().ID, store.EventTicketCreated))
		e.rc.wait(t, e.clock.Now())
		if err == nil || notify.IsPermanent(err) || !strings.Contains(err.Error(), "not followed") {
			t.Fatalf("%d: %v, want a temporary failure", code, err)
		}
	}
	if n := followed.Load(); n != 0 {
		t.Fatalf("the redirect was followed %d times", n)
	}
}

func TestInternalNotesOnlyWhenAsked(t *testing.T) {
	e := newEnv(t)
	tk := e.ticket()
	e.reply(tk, "customer-visible answer", false)
	e.reply(tk, "secret note", true)
	note := e.event(tk.ID, store.EventResponseAdded)
	err := deliver(e.ctx, e.adapter(), note)
	if !skipped(err) {
		t.Fatalf("internal note to a default endpoint: %v, want skipped", err)
	}
	e.rc.none(t)

	if err := deliver(e.ctx, e.adapter(func(o *Options) { o.IncludeInternalNotes = true }), note); err != nil {
		t.Fatal(err)
	}
	_, p := e.rc.wait(t, e.clock.Now())
	if p.Data.Response == nil || !p.Data.Response.Internal || p.Data.Response.Description != "secret note" || p.Data.Ticket.Responses != 2 {
		t.Fatalf("payload %+v", p.Data)
	}
}

func TestEventsFilter(t *testing.T) {
	e := newEnv(t)
	a := e.adapter(func(o *Options) { o.Events = []store.EventKind{store.EventStatusChanged} })
	tk := e.ticket()
	if err := deliver(e.ctx, a, e.event(tk.ID, store.EventTicketCreated)); !skipped(err) {
		t.Fatalf("unwanted kind: %v", err)
	}
	e.rc.none(t)
	open := store.StatusOpen
	if _, err := e.st.UpdateTicket(e.ctx, tk.ID, store.AllTickets, store.TicketUpdate{Status: &open},
		store.Actor{ID: e.agent.ID, Type: store.CreatorAdmin, Via: store.SourceAPI}); err != nil {
		t.Fatal(err)
	}
	if err := deliver(e.ctx, a, e.event(tk.ID, store.EventStatusChanged)); err != nil {
		t.Fatal(err)
	}
	_, p := e.rc.wait(t, e.clock.Now())
	if p.Type != "status.changed" || p.Data.Change == nil || *p.Data.From != "created" || *p.Data.To != "open" {
		t.Fatalf("payload %+v", p)
	}
}

// A receiver that never answers, or answers endlessly, costs one timeout
// and a bounded read.
func TestSlowAndHugeAnswersAreBounded(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	var written atomic.Int64
	const huge = 64 << 20
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		w.WriteHeader(http.StatusInternalServerError)
		chunk := []byte(strings.Repeat("x", 32<<10))
		for written.Load() < huge {
			n, err := w.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	defer close(release)
	tk := e.ticket()
	ev := e.event(tk.ID, store.EventTicketCreated)

	slow := e.adapter(func(o *Options) { o.URL = srv.URL + "/slow"; o.Timeout = 50 * time.Millisecond })
	var timeout interface{ Timeout() bool }
	if err := deliver(e.ctx, slow, ev); !errors.As(err, &timeout) || !timeout.Timeout() {
		t.Fatalf("no answer: %v, want the timeout", err)
	}
	big := e.adapter(func(o *Options) { o.URL = srv.URL + "/big" })
	err := deliver(e.ctx, big, ev)
	if err == nil || len(err.Error()) > 1024 {
		t.Fatalf("huge answer: error of %d bytes", len(err.Error()))
	}
	srv.CloseClientConnections()
	if n := written.Load(); n >= huge {
		t.Fatalf("the whole %d-byte answer was read", n)
	}
}

func TestOptionsValidate(t *testing.T) {
	err := Options{Name: "Bad Name", URL: "ftp://x", Secret: "nope",
		Events: []store.EventKind{"ticket.edited", store.EventTicketCreated, store.EventTicketCreated}, Timeout: -1}.Validate()
	for _, want := range []string{"name:", "url:", "secret:", "events[0]", "events[2]: ticket.created is listed twice", "timeout:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want a line about %q", err, want)
		}
	}
	if err := (Options{Name: "crm-1", URL: "https://crm.example.com/h", Secret: testSecret}).Validate(); err != nil {
		t.Fatal(err)
	}
}

// runner joins the deployment with the endpoint's sink and runs the shared
// delivery runner on the fake clock; the channel receives when it idles.
func (e *env) runner(a *Adapter) (*notify.Runner, chan struct{}) {
	e.t.Helper()
	if _, err := e.st.JoinDeployment(e.ctx, []string{Sink("crm")}); err != nil {
		e.t.Fatal(err)
	}
	idle := make(chan struct{}, 1)
	r, err := notify.NewRunner(notify.Options{Sink: Sink("crm"), BackoffBase: time.Second, Now: e.clock.Now, After: e.clock.After,
		Idle: func() {
			select {
			case idle <- struct{}{}:
			default:
			}
		}}, e.st, a, quiet())
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	stopped := make(chan error, 1)
	go func() { stopped <- r.Run(ctx) }()
	e.t.Cleanup(func() { cancel(); <-stopped })
	waitIdle(e.t, idle)
	return r, idle
}

// attempt opens a ticket, relays its ticket.created and waits until the
// runner has posted it and booked the outcome; it returns the request.
func (e *env) attempt(idle chan struct{}) hit {
	e.t.Helper()
	if _, err := e.st.RelayTicket(e.ctx, e.ticket().ID); err != nil {
		e.t.Fatal(err)
	}
	h, _ := e.rc.wait(e.t, e.clock.Now())
	waitIdle(e.t, idle)
	return h
}

func (e *env) deliveries(state store.DeliveryState) []store.Delivery {
	e.t.Helper()
	ds, err := e.st.Deliveries(e.ctx, state, 10)
	if err != nil {
		e.t.Fatal(err)
	}
	return ds
}

func waitIdle(t *testing.T, idle chan struct{}) {
	t.Helper()
	select {
	case <-idle:
	case <-time.After(testwait.Timeout):
		t.Fatalf("runner not idle after %s", testwait.Timeout)
	}
}
