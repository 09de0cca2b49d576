package store_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/internal/fakeclock"
	"github.com/ticketd/ticketd/store"
	"github.com/ticketd/ticketd/store/storetest"
)

func candidateIDs(t *testing.T, s *store.Store) []bson.ObjectID {
	t.Helper()
	got, err := s.FirstResponseCandidates(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	var ids []bson.ObjectID
	for _, tk := range got {
		ids = append(ids, tk.ID)
	}
	return ids
}

func eventsOf(t *testing.T, s *store.Store, id bson.ObjectID, kind store.EventKind) int {
	t.Helper()
	tk, err := s.Ticket(context.Background(), id, store.AllTickets)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range tk.Outbox {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

// Only open, unanswered tickets a customer opened are watched; an
// internal note is no answer, and an agent's reply is recorded with it.
func TestFirstResponseCandidates(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC))
	s, _ := storetest.OpenWith(t, store.OpenOptions{Now: clock.Now})
	ctx := context.Background()
	step := func() { clock.Advance(time.Minute) }

	waiting := newTicket(t, s, "acme", "waiting")
	step()
	noted := newTicket(t, s, "acme", "only a note")
	if _, _, err := s.AddResponse(ctx, noted.ID, store.AllTickets, store.NewResponse{Author: agent, Description: "n", Internal: true}); err != nil {
		t.Fatal(err)
	}
	step()
	answered := newTicket(t, s, "acme", "answered")
	if _, _, err := s.AddResponse(ctx, answered.ID, store.AllTickets, store.NewResponse{Author: alice, Description: "more"}); err != nil {
		t.Fatal(err)
	}
	tk, _, err := s.AddResponse(ctx, answered.ID, store.AllTickets, store.NewResponse{Author: agent, Description: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	if tk.FirstResponse == nil || tk.FirstResponse.RespondedAt == nil || !tk.FirstResponse.RespondedAt.Equal(clock.Now()) {
		t.Fatalf("agent reply: firstResponse %+v, want respondedAt %v", tk.FirstResponse, clock.Now())
	}
	step()
	resolved := newTicket(t, s, "acme", "resolved")
	st := store.StatusResolved
	if _, err := s.UpdateTicket(ctx, resolved.ID, store.AllTickets, store.TicketUpdate{Status: &st}, agent); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateTicket(ctx, store.NewTicket{Creator: agent, TeamID: "acme", Category: "Support", Subject: "by agent", Description: "d"}); err != nil {
		t.Fatal(err)
	}
	deleted := newTicket(t, s, "acme", "deleted")
	if _, err := s.DeleteTicket(ctx, deleted.ID, store.AllTickets, agent); err != nil {
		t.Fatal(err)
	}
	breached := newTicket(t, s, "acme", "breached")
	if ok, err := s.RecordFirstResponseBreach(ctx, breached.ID, clock.Now()); err != nil || !ok {
		t.Fatalf("breach: %v %v", ok, err)
	}
	reminded := newTicket(t, s, "acme", "reminded")
	if ok, err := s.RecordFirstResponseReminder(ctx, reminded.ID, clock.Now().Add(time.Hour)); err != nil || !ok {
		t.Fatalf("reminder: %v %v", ok, err)
	}

	// Not: answered, resolved, opened by an agent, deleted, breached.
	want := []bson.ObjectID{waiting.ID, noted.ID, reminded.ID}
	if got := candidateIDs(t, s); !slices.Equal(got, want) {
		t.Errorf("candidates %v, want %v (waiting, noted, reminded; oldest first)", got, want)
	}

	// Older data: an answer without respondedAt, recorded afterwards.
	if err := s.MarkFirstResponded(ctx, noted.ID, clock.Now()); err != nil {
		t.Fatal(err)
	}
	if got := candidateIDs(t, s); slices.Contains(got, noted.ID) {
		t.Errorf("marked responded, still a candidate: %v", got)
	}
}

// A reminder and a breach are each recorded once, with their event, in
// the same write; nothing is recorded for an answered ticket, and a new
// Store on the same data (a restart) refuses them too.
func TestFirstResponseMarksAreRecordedOnce(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC))
	s, opts := storetest.OpenWith(t, store.OpenOptions{Now: clock.Now})
	ctx := context.Background()
	tk := newTicket(t, s, "acme", "slow")
	due := clock.Now().Add(time.Hour)
	for i, want := range []bool{true, false} {
		ok, err := s.RecordFirstResponseReminder(ctx, tk.ID, due)
		if err != nil || ok != want {
			t.Fatalf("reminder #%d: recorded=%v err=%v, want %v", i+1, ok, err, want)
		}
	}
	if n := eventsOf(t, s, tk.ID, store.EventSLAReminder); n != 1 {
		t.Fatalf("%d reminder events, want 1", n)
	}
	clock.Advance(time.Hour)
	if ok, err := s.RecordFirstResponseBreach(ctx, tk.ID, due); err != nil || !ok {
		t.Fatalf("breach: recorded=%v err=%v", ok, err)
	}
	got, err := s.Ticket(ctx, tk.ID, store.AllTickets)
	if err != nil {
		t.Fatal(err)
	}
	fr := got.FirstResponse
	if fr == nil || fr.DueAt == nil || !fr.DueAt.Equal(due) || fr.RemindedAt == nil || fr.BreachedAt == nil || !fr.BreachedAt.Equal(clock.Now()) {
		t.Fatalf("firstResponse %+v", fr)
	}
	if last := got.Logs[len(got.Logs)-1]; last.ActionByType != store.CreatorSystem || last.ActionTaken != "First-response target missed: due 2026-12-01T10:00:00Z" {
		t.Errorf("last log %+v", last)
	}

	// A restart: another Store on the same data.
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s2, _ := storetest.OpenWith(t, store.OpenOptions{Now: clock.Now, URI: opts.URI, Database: opts.Database, DataDir: opts.DataDir})
	for _, rec := range []func(context.Context, bson.ObjectID, time.Time) (bool, error){s2.RecordFirstResponseReminder, s2.RecordFirstResponseBreach} {
		if ok, err := rec(ctx, tk.ID, due); err != nil || ok {
			t.Errorf("after restart: recorded=%v err=%v, want nothing", ok, err)
		}
	}
	if r, b := eventsOf(t, s2, tk.ID, store.EventSLAReminder), eventsOf(t, s2, tk.ID, store.EventSLABreached); r != 1 || b != 1 {
		t.Errorf("events: %d reminders, %d breaches; want 1 each", r, b)
	}

	// An answered ticket gets neither.
	other := newTicket(t, s2, "acme", "answered")
	if _, _, err := s2.AddResponse(ctx, other.ID, store.AllTickets, store.NewResponse{Author: agent, Description: "hi"}); err != nil {
		t.Fatal(err)
	}
	if ok, err := s2.RecordFirstResponseBreach(ctx, other.ID, due); err != nil || ok {
		t.Errorf("answered ticket: recorded=%v err=%v", ok, err)
	}
	if ok, err := s2.RecordFirstResponseReminder(ctx, bson.NewObjectID(), due); err != nil || ok {
		t.Errorf("unknown ticket: recorded=%v err=%v", ok, err)
	}
}

// One claim at a time; a dead holder's claim is taken over after its
// lease; a finished action is never claimed again.
func TestClaimOnce(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC))
	s, _ := storetest.OpenWith(t, store.OpenOptions{Now: clock.Now})
	ctx := context.Background()
	first, ok, err := s.ClaimOnce(ctx, "digest:2026-12-01", time.Minute)
	if err != nil || !ok {
		t.Fatalf("first claim: %v %v", ok, err)
	}
	if _, ok, err := s.ClaimOnce(ctx, "digest:2026-12-01", time.Minute); err != nil || ok {
		t.Fatalf("second claim while held: %v %v", ok, err)
	}
	clock.Advance(time.Minute)
	second, ok, err := s.ClaimOnce(ctx, "digest:2026-12-01", time.Minute)
	if err != nil || !ok {
		t.Fatalf("claim after the lease: %v %v", ok, err)
	}
	if err := s.FinishOnce(ctx, "digest:2026-12-01", first); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("finish by the old holder: %v, want ErrConflict", err)
	}
	if err := s.FinishOnce(ctx, "digest:2026-12-01", second); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	if _, ok, err := s.ClaimOnce(ctx, "digest:2026-12-01", time.Minute); err != nil || ok {
		t.Fatalf("claim after done: %v %v", ok, err)
	}
	if _, ok, err := s.ClaimOnce(ctx, "digest:2026-12-02", time.Minute); err != nil || !ok {
		t.Fatalf("another key: %v %v", ok, err)
	}
}
