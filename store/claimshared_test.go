package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Three daemons claiming one queue on the shared embedded server (or
// MONGODB_URI): every delivery is claimed exactly once. The embedded
// server's findAndModify is not atomic between clients, so without the
// claim's unique insert two daemons take the same delivery.
func TestSharedClaimsOncePerDelivery(t *testing.T) {
	ctx := context.Background()
	daemons := sharedStores(t, 3, nil)
	for _, s := range daemons {
		if _, err := s.JoinDeployment(ctx, []string{"email"}); err != nil {
			t.Fatal(err)
		}
	}
	const tickets = 60
	cust := Actor{ID: bson.NewObjectID(), Type: CreatorCustomer}
	for i := range tickets {
		if _, _, err := daemons[i%3].CreateTicket(ctx, NewTicket{Creator: cust, TeamID: "t", Subject: fmt.Sprint("s", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := daemons[0].RelayAll(ctx); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	claims := map[string]int{}
	var wg sync.WaitGroup
	for _, s := range daemons {
		for range 2 { // two runners per daemon, as a runner's workers
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					d, err := s.ClaimDelivery(ctx, "email", time.Minute)
					if errors.Is(err, ErrNotFound) {
						return
					}
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					claims[d.ID]++
					mu.Unlock()
					if err := s.CompleteDelivery(ctx, d); err != nil && !errors.Is(err, ErrClaimLost) {
						t.Error(err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	twice := 0
	for _, n := range claims {
		if n > 1 {
			twice++
		}
	}
	if len(claims) != tickets || twice > 0 {
		t.Errorf("%d deliveries claimed, %d of them more than once; want %d, each once", len(claims), twice, tickets)
	}
}

// Two daemons relaying the same ticket at once: one's relay read the event
// before the other's delivery was sent and completed, and queues it again
// after completion removed it (in one process: a relay repeating an event
// whose earlier pull failed). The repeat is dropped when claimed, not sent
// twice, on a shared database and on the process's own.
func TestSharedRelayAfterCompletionIsNotSentAgain(t *testing.T) {
	t.Run("shared", func(t *testing.T) { relayAfterCompletion(t, sharedStores(t, 1, nil)[0]) })
	t.Run("own", func(t *testing.T) {
		s, err := Open(context.Background(), OpenOptions{DataDir: t.TempDir(), Database: "own", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close(context.Background()) })
		if !s.serial {
			t.Fatal("want the serialized store")
		}
		relayAfterCompletion(t, s)
	})
}

// claimNewTicketsDelivery joins s to an email deployment, creates a ticket
// and claims its one delivery.
func claimNewTicketsDelivery(t *testing.T, s *Store) *Delivery {
	t.Helper()
	ctx := context.Background()
	if _, err := s.JoinDeployment(ctx, []string{"email"}); err != nil {
		t.Fatal(err)
	}
	cust := Actor{ID: bson.NewObjectID(), Type: CreatorCustomer}
	if _, _, err := s.CreateTicket(ctx, NewTicket{Creator: cust, TeamID: "t", Subject: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RelayAll(ctx); err != nil {
		t.Fatal(err)
	}
	d, err := s.ClaimDelivery(ctx, "email", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func relayAfterCompletion(t *testing.T, s *Store) {
	ctx := context.Background()
	d := claimNewTicketsDelivery(t, s)
	if err := s.CompleteDelivery(ctx, d); err != nil {
		t.Fatal(err)
	}
	// The late relay's insert, as it makes it.
	late := *d
	late.Claim, late.Attempts, late.State, late.NextAttemptAt = "", 0, DeliveryPending, s.nowUTC()
	if _, err := s.outbox.InsertOne(ctx, late); err != nil {
		t.Fatal(err)
	}
	if again, err := s.ClaimDelivery(ctx, "email", time.Minute); !errors.Is(err, ErrNotFound) {
		t.Errorf("claimed %+v (err %v) after it was delivered, want none due", again, err)
	}
	if n, err := s.outbox.CountDocuments(ctx, bson.D{}); err != nil || n != 0 {
		t.Errorf("%d deliveries left (err %v), want the repeat removed", n, err)
	}
}

// A requeued dead letter starts its attempts again from 0: its next claim
// must not be taken for an earlier one (the attempt's name includes the
// due time).
func TestSharedClaimAfterRequeue(t *testing.T) {
	ctx := context.Background()
	s := sharedStores(t, 1, nil)[0]
	d := claimNewTicketsDelivery(t, s)
	if err := s.KillDelivery(ctx, d, errors.New("refused")); err != nil {
		t.Fatal(err)
	}
	if err := s.RequeueDelivery(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	again, err := s.ClaimDelivery(ctx, "email", time.Minute)
	if err != nil {
		t.Fatalf("claim after requeue: %v", err)
	}
	if again.ID != d.ID || again.Claim == d.Claim {
		t.Errorf("claimed %s (claim %s) after requeueing %s (claim %s)", again.ID, again.Claim, d.ID, d.Claim)
	}
	if err := s.CompleteDelivery(ctx, again); err != nil {
		t.Error(err)
	}
}
