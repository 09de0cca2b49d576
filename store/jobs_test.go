package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/store"
	"github.com/ticketd/ticketd/store/storetest"
)

// A slot runs once, whoever holds the lease then; a holder whose lease was
// taken over cannot overwrite its successor's record.
func TestJobRunsOncePerSlotAndAreFenced(t *testing.T) {
	clock := newFakeClock()
	a, _ := storetest.OpenWith(t, store.OpenOptions{Now: clock.Now})
	b := secondDaemon(t, a, clock.Now)
	ctx := context.Background()
	slot := clock.Now().Truncate(time.Minute)

	la, err := a.AcquireLease(ctx, "job:x", "A", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	runA, err := a.StartJobRun(ctx, la, "x", slot)
	if err != nil {
		t.Fatal(err)
	}
	// A dies; after its lease B holds it, but the slot has run.
	clock.Advance(2 * time.Minute)
	lb, err := b.AcquireLease(ctx, "job:x", "B", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.StartJobRun(ctx, lb, "x", slot); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("the same slot again: %v, want ErrConflict", err)
	}
	if _, err := a.StartJobRun(ctx, la, "x", slot.Add(time.Minute)); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("a start under a lost lease: %v, want ErrLeaseLost", err)
	}
	next := slot.Add(2 * time.Minute)
	runB, err := b.StartJobRun(ctx, lb, "x", next)
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(1500 * time.Millisecond)
	if err := b.FinishJobRun(ctx, runB, errors.New("boom")); err != nil {
		t.Fatal(err)
	}
	// A wakes up and finishes its old run: recorded on its own run, not
	// as the job's last run.
	if err := a.FinishJobRun(ctx, runA, nil); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("finish under a lost lease: %v, want ErrLeaseLost", err)
	}
	last, err := a.LastJobRuns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := last["x"]
	if got.Holder != "B" || got.Token != 2 || !got.Slot.Equal(next) || got.Outcome != store.JobFailed || got.Error != "boom" || got.DurationMS != 1500 {
		t.Errorf("last run: %+v", got)
	}
	if r, err := a.JobRunFor(ctx, "x", slot); err != nil || r.Outcome != store.JobOK || r.Holder != "A" {
		t.Errorf("A's run record: %+v %v", r, err)
	}
}

func TestAutoCloseIdleResolvedTickets(t *testing.T) {
	clock := newFakeClock()
	s, _ := storetest.OpenWith(t, store.OpenOptions{Now: clock.Now})
	ctx := context.Background()
	resolved := store.StatusResolved
	resolve := func(tk *store.Ticket) {
		t.Helper()
		if _, err := s.UpdateTicket(ctx, tk.ID, store.AllTickets, store.TicketUpdate{Status: &resolved}, agent); err != nil {
			t.Fatal(err)
		}
	}
	idle := newTicket(t, s, "t", "idle")
	resolve(idle)
	noted := newTicket(t, s, "t", "noted") // an agent's note later does not keep it open
	resolve(noted)
	open := newTicket(t, s, "t", "open") // never resolved
	// Opened long ago, but the customer's last reply (which reopened it)
	// will be 2 days old.
	replied := newTicket(t, s, "t", "replied")
	resolve(replied)
	clock.Advance(5 * 24 * time.Hour)
	if _, _, err := s.AddResponse(ctx, noted.ID, store.AllTickets, store.NewResponse{Author: agent, Description: "fyi", Internal: true}); err != nil {
		t.Fatal(err)
	}
	recent := newTicket(t, s, "t", "recent") // the customer wrote 2 days ago
	resolve(recent)
	if _, _, err := s.AddResponse(ctx, replied.ID, store.AllTickets, store.NewResponse{Author: alice, Description: "still broken"}); err != nil {
		t.Fatal(err)
	}
	resolve(replied)
	clock.Advance(2*24*time.Hour + time.Minute)
	before := clock.Now().Add(-7 * 24 * time.Hour)

	ids, err := s.IdleResolvedTickets(ctx, before, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 || ids[0] != idle.ID || ids[1] != noted.ID {
		t.Fatalf("candidates %v, want idle %s and noted %s", ids, idle.ID.Hex(), noted.ID.Hex())
	}
	for _, id := range ids {
		if closed, err := s.CloseIdleTicket(ctx, id, before, " (no customer message for 7 days)"); err != nil || !closed {
			t.Fatalf("close %s: %v %v", id.Hex(), closed, err)
		}
	}
	got, err := s.Ticket(ctx, idle.ID, store.AllTickets)
	if err != nil {
		t.Fatal(err)
	}
	lastLog := got.Logs[len(got.Logs)-1]
	lastEvent := got.Outbox[len(got.Outbox)-1]
	if got.Status != store.StatusClosed || lastLog.ActionByType != store.CreatorSystem || lastLog.ActionTaken != "Status changed from resolved to closed (no customer message for 7 days)" {
		t.Errorf("closed ticket: status %s, log %+v", got.Status, lastLog)
	}
	if lastEvent.Kind != store.EventStatusChanged || lastEvent.ActorType != store.CreatorSystem || lastEvent.To != string(store.StatusClosed) {
		t.Errorf("announcement: %+v", lastEvent)
	}
	for _, tk := range []*store.Ticket{recent, open, replied} {
		if closed, err := s.CloseIdleTicket(ctx, tk.ID, before, ""); err != nil || closed {
			t.Errorf("%s must stay: closed=%v %v", tk.Subject, closed, err)
		}
	}
	if ids, _ := s.IdleResolvedTickets(ctx, before, 100); len(ids) != 0 {
		t.Errorf("candidates after closing: %v", ids)
	}
	// A customer reply reopens; closing what no longer qualifies is a no-op.
	if closed, err := s.CloseIdleTicket(ctx, idle.ID, before, ""); err != nil || closed {
		t.Errorf("closing a closed ticket: %v %v", closed, err)
	}
}

func TestPruneRemovesOldRecordsInBatches(t *testing.T) {
	clock := newFakeClock()
	s, _ := storetest.OpenWith(t, store.OpenOptions{Now: clock.Now})
	ctx := context.Background()
	join(t, s, "email")
	old := clock.Now()
	for i := range 3 {
		if err := s.RecordIgnored(ctx, store.IgnoredMail{ID: fmt.Sprint("ign", i), Reason: "auto-reply"}); err != nil {
			t.Fatal(err)
		}
		if err := s.Quarantine(ctx, store.QuarantinedMail{ID: fmt.Sprint("q", i), Reason: "unparseable"}); err != nil {
			t.Fatal(err)
		}
	}
	// Three tickets: one delivery completed, one dead, one still pending.
	var ds []*store.Delivery
	for i := range 3 {
		tk := newTicket(t, s, "t", fmt.Sprint("d", i))
		if _, err := s.RelayTicket(ctx, tk.ID); err != nil {
			t.Fatal(err)
		}
		d, err := s.ClaimDelivery(ctx, "email", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	if err := s.CompleteDelivery(ctx, ds[0]); err != nil {
		t.Fatal(err)
	}
	if err := s.KillDelivery(ctx, ds[1], errors.New("550")); err != nil {
		t.Fatal(err)
	}
	clock.Advance(10 * 24 * time.Hour)
	// Newer ones stay.
	if err := s.RecordIgnored(ctx, store.IgnoredMail{ID: "ign-new", Reason: "bounce"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Quarantine(ctx, store.QuarantinedMail{ID: "q-new", Reason: "x"}); err != nil {
		t.Fatal(err)
	}
	before := old.Add(time.Hour)

	if n, err := s.Prune(ctx, store.PruneIgnored, before, 2); err != nil || n != 2 {
		t.Fatalf("first batch: %d %v", n, err)
	}
	if n, err := s.Prune(ctx, store.PruneIgnored, before, 2); err != nil || n != 1 {
		t.Fatalf("second batch: %d %v", n, err)
	}
	if _, total, _ := s.ListIgnored(ctx, 10, 0); total != 1 {
		t.Errorf("%d ignored left, want the new one", total)
	}
	if n, err := s.Prune(ctx, store.PruneQuarantined, before, 100); err != nil || n != 3 {
		t.Errorf("quarantine: %d %v", n, err)
	}
	if _, err := s.QuarantinedMessage(ctx, "q-new"); err != nil {
		t.Errorf("the new quarantined mail: %v", err)
	}
	if n, err := s.Prune(ctx, store.PruneDeadLetters, before, 100); err != nil || n != 1 {
		t.Errorf("dead letters: %d %v", n, err)
	}
	if n, _ := s.CountDeliveries(ctx, store.DeliveryPending); n != 1 {
		t.Errorf("a pending delivery was pruned: %d left", n)
	}
	// A key from before keys recorded their time counts as old; a new
	// one stays.
	if _, err := s.Database().Collection("keys").InsertOne(ctx, bson.D{{Key: "_id", Value: "delivered:legacy"}, {Key: "ref", Value: bson.NilObjectID}}); err != nil {
		t.Fatal(err)
	}
	if err := s.CompleteDelivery(ctx, ds[2]); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Prune(ctx, store.PruneDelivered, before, 100); err != nil || n != 2 {
		t.Errorf("delivered keys: %d %v", n, err)
	}
	if n, err := s.Prune(ctx, store.PruneDelivered, before, 100); err != nil || n != 0 {
		t.Errorf("delivered keys again: %d %v", n, err)
	}
	if _, err := s.Prune(ctx, "nonsense", before, 1); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("unknown kind: %v", err)
	}
}
