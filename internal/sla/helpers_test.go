package sla

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/ticketd/ticketd/internal/businesshours"
	"github.com/ticketd/ticketd/internal/fakeclock"
	"github.com/ticketd/ticketd/internal/slackfake"
	"github.com/ticketd/ticketd/store"
	"github.com/ticketd/ticketd/store/storetest"
)

var _ FirstResponseStore = (*store.Store)(nil)
var _ DigestStore = (*store.Store)(nil)
var _ Poster = (*slack.Client)(nil)

// env is a store on a fake clock, the fake Slack, office hours in Berlin
// (Mon-Fri 09:00-17:00) and the default targets.
type env struct {
	t        *testing.T
	ctx      context.Context
	clock    *fakeclock.Clock
	st       *store.Store
	opts     store.OpenOptions
	fake     *slackfake.Fake
	client   *slack.Client
	targets  *Targets
	berlin   *time.Location
	log      *slog.Logger
	customer *store.Customer
	agent    *store.Agent
}

// start is Tuesday 2026-12-01, 09:00 in Berlin.
func newEnv(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	clock := fakeclock.New(time.Date(2026, 12, 1, 9, 0, 0, 0, berlin))
	st, opts := storetest.OpenWith(t, store.OpenOptions{Now: clock.Now})
	hours, err := businesshours.New(berlin, []time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday}, "09:00", "17:00")
	if err != nil {
		t.Fatal(err)
	}
	f := slackfake.New(t)
	e := &env{
		t: t, ctx: ctx, clock: clock, st: st, opts: opts, fake: f,
		client:  slack.New(slackfake.BotToken, slack.OptionAPIURL(f.APIURL())),
		targets: NewTargets(hours, nil, RemindBefore{}), berlin: berlin,
		log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if e.customer, _, err = st.FindOrCreateCustomer(ctx, "ann@example.com", "Ann", "acme"); err != nil {
		t.Fatal(err)
	}
	if e.agent, err = st.FindOrCreateAgent(ctx, "bob@support.example", "Bob Agent", "U0BOB"); err != nil {
		t.Fatal(err)
	}
	return e
}

// at sets the clock to a time in Berlin (forward only).
func (e *env) at(day, hh, mm int) {
	e.t.Helper()
	to := time.Date(2026, 12, day, hh, mm, 0, 0, e.berlin)
	d := to.Sub(e.clock.Now())
	if d < 0 {
		e.t.Fatalf("clock would go back to %v", to)
	}
	e.clock.Advance(d)
}

func (e *env) ticket(subject string, p store.Priority) *store.Ticket {
	e.t.Helper()
	tk, _, err := e.st.CreateTicket(e.ctx, store.NewTicket{
		Creator: store.Actor{ID: e.customer.ID, Type: store.CreatorCustomer}, TeamID: "acme",
		Category: "Support", Subject: subject, Description: "help", Priority: p, Source: store.SourceAPI,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return tk
}

func (e *env) firstResponse(st FirstResponseStore) *FirstResponse {
	e.t.Helper()
	j, err := NewFirstResponse(st, FirstResponseOptions{Targets: e.targets, Now: e.clock.Now, Logger: e.log})
	if err != nil {
		e.t.Fatal(err)
	}
	return j
}

func (e *env) run(j interface{ Run(context.Context) error }) {
	e.t.Helper()
	if err := j.Run(e.ctx); err != nil {
		e.t.Fatal(err)
	}
}

// events counts a ticket's pending events of a kind (no relay runs).
func (e *env) events(st *store.Store, tk *store.Ticket, kind store.EventKind) int {
	e.t.Helper()
	got, err := st.Ticket(e.ctx, tk.ID, store.AllTickets)
	if err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for _, ev := range got.Outbox {
		if ev.Kind == kind {
			n++
		}
	}
	return n
}
