package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ticketd/ticketd/store"
	"github.com/ticketd/ticketd/store/storetest"
)

// A sender whose claim ran out and whose delivery was claimed again can
// neither complete, retry nor kill it; the new claimant can.
func TestDeliveryClaimsAreFenced(t *testing.T) {
	clock := newFakeClock()
	s, _ := storetest.OpenWith(t, store.OpenOptions{Now: clock.Now})
	ctx := context.Background()
	join(t, s, "email")
	tk := newTicket(t, s, "t", "fenced")
	if _, err := s.RelayTicket(ctx, tk.ID); err != nil {
		t.Fatal(err)
	}
	first, err := s.ClaimDelivery(ctx, "email", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute + time.Second)
	second, err := s.ClaimDelivery(ctx, "email", time.Minute)
	if err != nil || second.ID != first.ID || second.Claim == first.Claim || second.Claim == "" {
		t.Fatalf("second claim: %+v %v (first claim %q)", second, err, first.Claim)
	}
	if err := s.CompleteDelivery(ctx, first); !errors.Is(err, store.ErrClaimLost) {
		t.Fatalf("complete by the first claimant: %v, want ErrClaimLost", err)
	}
	if err := s.RetryDelivery(ctx, first, errors.New("451"), clock.Now()); !errors.Is(err, store.ErrClaimLost) {
		t.Fatalf("retry by the first claimant: %v, want ErrClaimLost", err)
	}
	if err := s.KillDelivery(ctx, first, errors.New("550")); !errors.Is(err, store.ErrClaimLost) {
		t.Fatalf("kill by the first claimant: %v, want ErrClaimLost", err)
	}
	if n, _ := s.CountDeliveries(ctx, store.DeliveryPending); n != 1 {
		t.Fatalf("the refused calls changed the queue: %d pending", n)
	}
	if err := s.CompleteDelivery(ctx, second); err != nil {
		t.Fatalf("complete by the second claimant: %v", err)
	}
	if n, _ := s.CountDeliveries(ctx, store.DeliveryPending); n != 0 {
		t.Errorf("%d pending after completion", n)
	}
	if err := s.CompleteDelivery(ctx, first); err != nil {
		t.Errorf("completing a delivery that is gone is a no-op: %v", err)
	}
}
