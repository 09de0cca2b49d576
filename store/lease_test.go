package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ticketd/ticketd/store"
	"github.com/ticketd/ticketd/store/storetest"
)

func TestLeaseLifecycle(t *testing.T) {
	clock := newFakeClock()
	a, _ := storetest.OpenWith(t, store.OpenOptions{Now: clock.Now})
	b := secondDaemon(t, a, clock.Now)
	ctx := context.Background()
	const ttl = time.Minute

	la, err := a.AcquireLease(ctx, "job:x", "A", ttl)
	if err != nil || la.Token != 1 || la.Owner != "A" || !la.Expires.Equal(clock.Now().Add(ttl)) {
		t.Fatalf("first acquisition: %+v %v", la, err)
	}
	if _, err := b.AcquireLease(ctx, "job:x", "B", ttl); !errors.Is(err, store.ErrLeaseHeld) {
		t.Fatalf("B while A holds it: %v, want ErrLeaseHeld", err)
	}
	clock.Advance(30 * time.Second)
	again, err := a.AcquireLease(ctx, "job:x", "A", ttl)
	if err != nil || again.Token != 1 || !again.Expires.Equal(clock.Now().Add(ttl)) {
		t.Fatalf("A again renews and keeps its token: %+v %v", again, err)
	}
	if err := a.RenewLease(ctx, la, ttl); err != nil {
		t.Fatalf("renew: %v", err)
	}

	// A stops renewing (it died): after the ttl B takes over with a
	// higher token, and A's old lease is lost.
	clock.Advance(ttl + time.Second)
	lb, err := b.AcquireLease(ctx, "job:x", "B", ttl)
	if err != nil || lb.Token != 2 || lb.Owner != "B" {
		t.Fatalf("B after expiry: %+v %v", lb, err)
	}
	if err := a.RenewLease(ctx, la, ttl); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("A renewing after takeover: %v, want ErrLeaseLost", err)
	}
	if err := a.ReleaseLease(ctx, la); err != nil {
		t.Fatalf("releasing a lost lease is a no-op: %v", err)
	}
	if _, err := a.AcquireLease(ctx, "job:x", "A", ttl); !errors.Is(err, store.ErrLeaseHeld) {
		t.Fatalf("A's release must not free B's lease: %v", err)
	}

	// A release frees it at once; the next acquisition has a new token.
	if err := b.ReleaseLease(ctx, lb); err != nil {
		t.Fatal(err)
	}
	la, err = a.AcquireLease(ctx, "job:x", "A", ttl)
	if err != nil || la.Token != 3 {
		t.Fatalf("after release: %+v %v", la, err)
	}
	if _, err := a.AcquireLease(ctx, "other", "A", ttl); err != nil {
		t.Fatal(err)
	}
	leases, err := b.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(leases) != 2 || leases[0].Name != "job:x" || leases[0].Token != 3 || leases[0].Owner != "A" || leases[1].Name != "other" {
		t.Errorf("leases: %+v", leases)
	}
	if _, err := a.AcquireLease(ctx, "", "A", ttl); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("empty name: %v", err)
	}
}
