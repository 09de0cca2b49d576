package upkeep

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/internal/fakeclock"
	"github.com/ticketd/ticketd/store"
	"github.com/ticketd/ticketd/store/storetest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func open(t *testing.T) (*store.Store, *fakeclock.Clock) {
	clock := fakeclock.New(time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC))
	st, _ := storetest.OpenWith(t, store.OpenOptions{Now: clock.Now, Logger: quiet})
	if _, err := st.JoinDeployment(context.Background(), []string{"email"}); err != nil {
		t.Fatal(err)
	}
	return st, clock
}

func ticket(t *testing.T, st *store.Store, status store.Status) *store.Ticket {
	t.Helper()
	ctx := context.Background()
	tk, _, err := st.CreateTicket(ctx, store.NewTicket{Creator: store.Actor{ID: bson.NewObjectID(), Type: store.CreatorCustomer}, TeamID: "t", Subject: "s", Description: "d"})
	if err != nil {
		t.Fatal(err)
	}
	if status != store.StatusCreated {
		if _, err := st.UpdateTicket(ctx, tk.ID, store.AllTickets, store.TicketUpdate{Status: &status}, store.Actor{ID: bson.NewObjectID(), Type: store.CreatorAdmin}); err != nil {
			t.Fatal(err)
		}
	}
	return tk
}

// More idle resolved tickets than one batch: one run closes them all, as
// the system, and leaves the rest alone.
func TestAutoCloseJob(t *testing.T) {
	st, clock := open(t)
	ctx := context.Background()
	var idle []*store.Ticket
	for range Batch + 5 {
		idle = append(idle, ticket(t, st, store.StatusResolved))
	}
	inProgress := ticket(t, st, store.StatusInProgress)
	clock.Advance(7*24*time.Hour + time.Second)
	fresh := ticket(t, st, store.StatusResolved)

	if err := AutoClose(st, 7*24*time.Hour, clock.Now, quiet)(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tk := range idle {
		got, err := st.Ticket(ctx, tk.ID, store.AllTickets)
		if err != nil {
			t.Fatal(err)
		}
		l := got.Logs[len(got.Logs)-1]
		if got.Status != store.StatusClosed || l.ActionByType != store.CreatorSystem || l.ActionTaken != "Status changed from resolved to closed (no customer message for 7 days)" {
			t.Fatalf("idle ticket: %s, %+v", got.Status, l)
		}
	}
	for want, tk := range map[store.Status]*store.Ticket{store.StatusInProgress: inProgress, store.StatusResolved: fresh} {
		if got, _ := st.Ticket(ctx, tk.ID, store.AllTickets); got.Status != want {
			t.Errorf("ticket left %s became %s", want, got.Status)
		}
	}
}

func TestRetentionJob(t *testing.T) {
	st, clock := open(t)
	ctx := context.Background()
	for i := range Batch + 3 {
		if err := st.RecordIgnored(ctx, store.IgnoredMail{ID: fmt.Sprint("i", i), Reason: "bounce"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Quarantine(ctx, store.QuarantinedMail{ID: "q", Reason: "x"}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(31 * 24 * time.Hour)
	ages := map[string]time.Duration{store.PruneIgnored: 30 * 24 * time.Hour, store.PruneQuarantined: 0}
	if err := Retention(st, ages, clock.Now, quiet)(ctx); err != nil {
		t.Fatal(err)
	}
	if _, n, _ := st.ListIgnored(ctx, 1, 0); n != 0 {
		t.Errorf("%d ignored mails left", n)
	}
	if _, n, _ := st.ListQuarantine(ctx, 1, 0); n != 1 {
		t.Errorf("age 0 keeps for ever: %d quarantined left", n)
	}
	bad := map[string]time.Duration{"nonsense": time.Hour, store.PruneQuarantined: time.Hour}
	if err := Retention(st, bad, clock.Now, quiet)(ctx); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("a failing kind: %v", err)
	}
	if _, n, _ := st.ListQuarantine(ctx, 1, 0); n != 0 {
		t.Errorf("a failing kind stopped the others: %d quarantined left", n)
	}
}

// The sweep relays what the write signal missed and wakes the runner for
// a delivery whose claim ran out.
func TestOutboxSweepJob(t *testing.T) {
	st, clock := open(t)
	ctx := context.Background()
	tk := ticket(t, st, store.StatusCreated) // its event waits on the ticket: no relay runs
	ready := st.DeliveriesReady("email")
	if err := OutboxSweep(st, quiet)(ctx); err != nil {
		t.Fatal(err)
	}
	<-ready // woken by the relay
	d, err := st.ClaimDelivery(ctx, "email", time.Minute)
	if err != nil || d.TicketID != tk.ID {
		t.Fatalf("claim: %+v %v", d, err)
	}
	// The claimant dies; after its lease the sweep wakes the runner.
	clock.Advance(time.Minute + time.Second)
	if err := OutboxSweep(st, quiet)(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ready:
	default:
		t.Fatal("the sweep did not wake the runner for the expired claim")
	}
}
