package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// openShared opens a Store the way it runs against a MongoDB that other
// daemons share: updates compare __v, nothing is remembered between writes.
func openShared(t *testing.T, uri, db string) *Store {
	t.Helper()
	ctx := context.Background()
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(ctx, client, client.Database(db), Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// The compare-and-set code path, run against the embedded server (which
// executes it correctly within one process, the ticket locks ordering it).
func TestSharedModeCompareAndSet(t *testing.T) {
	ctx := context.Background()
	uri, stop, err := startEmbedded(ctx, t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer stop(ctx)
	s := openShared(t, uri, "shared")
	if s.serial || s.recent != nil {
		t.Fatal("shared mode must compare __v and remember nothing")
	}
	cust := Actor{ID: bson.NewObjectID(), Type: CreatorCustomer}
	tk, _, err := s.CreateTicket(ctx, NewTicket{Creator: cust, TeamID: "t", Subject: "s"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 4; i++ {
				if _, _, err := s.AddResponse(ctx, tk.ID, AllTickets, NewResponse{Author: cust, Description: fmt.Sprint(w, i)}); err != nil {
					t.Error(err)
				}
			}
		}(w)
	}
	wg.Wait()
	closed, stale := StatusClosed, int64(3)
	if _, err := s.UpdateTicket(ctx, tk.ID, AllTickets, TicketUpdate{Status: &closed, ExpectedV: &stale}, SystemActor); !errors.Is(err, ErrConflict) {
		t.Errorf("stale __v: %v", err)
	}
	got, err := s.UpdateTicket(ctx, tk.ID, AllTickets, TicketUpdate{Status: &closed}, SystemActor)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := s.load(ctx, tk.ID, withoutHistory)
	if got.V != 33 || len(got.Response) != 32 || !reflect.DeepEqual(got, stored) {
		t.Errorf("after 32 replies and a close: __v %d, %d responses; returned equals stored: %v", got.V, len(got.Response), reflect.DeepEqual(got, stored))
	}
}

// Two daemons on one MongoDB: neither loses the other's replies, and each
// notification is claimed once. Needs a real MongoDB (the embedded server
// belongs to one process).
func TestTwoDaemonsShareMongoDB(t *testing.T) {
	uri := os.Getenv("MONGODB_URI")
	if uri == "" {
		t.Skip("MONGODB_URI not set: two daemons need a real MongoDB")
	}
	ctx := context.Background()
	db := fmt.Sprintf("ticketd_two_%d", time.Now().UnixNano())
	a, b := openShared(t, uri, db), openShared(t, uri, db)
	defer a.db.Drop(ctx)
	cust := Actor{ID: bson.NewObjectID(), Type: CreatorCustomer}
	tk, _, err := a.CreateTicket(ctx, NewTicket{Creator: cust, TeamID: "t", Subject: "s"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i, s := range []*Store{a, b, a, b} {
		wg.Add(1)
		go func(i int, s *Store) {
			defer wg.Done()
			for j := 0; j < 10; j++ {
				if _, _, err := s.AddResponse(ctx, tk.ID, AllTickets, NewResponse{Author: cust, Description: fmt.Sprint(i, j)}); err != nil {
					t.Error(err)
				}
			}
		}(i, s)
	}
	wg.Wait()
	got, _ := b.Ticket(ctx, tk.ID, AllTickets)
	if len(got.Response) != 40 || got.V != 40 {
		t.Errorf("%d responses, __v %d; want 40 and 40", len(got.Response), got.V)
	}
	for _, s := range []*Store{a, b} {
		if _, err := s.JoinDeployment(ctx, []string{"email"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.RelayAll(ctx); err != nil {
		t.Fatal(err)
	}
	// The ticket's 41 deliveries go out one at a time: each claimer
	// completes what it claims; none is claimed twice.
	claimed := map[string]int{}
	var mu sync.Mutex
	// completed is closed (and replaced) whenever a claimer completes a
	// delivery: a claimer that found nothing, because the other holds the
	// ticket's head, waits for that instead of polling.
	completed := make(chan struct{})
	state := func() (int, chan struct{}) { mu.Lock(); defer mu.Unlock(); return len(claimed), completed }
	waitCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for _, s := range []*Store{a, b} {
		wg.Add(1)
		go func(s *Store) {
			defer wg.Done()
			for {
				n, next := state()
				if n >= 41 {
					return
				}
				d, err := s.ClaimDelivery(ctx, "email", time.Minute)
				if errors.Is(err, ErrNotFound) {
					select {
					case <-next:
					case <-waitCtx.Done(): // the count check below reports it
						return
					}
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				claimed[d.ID]++
				mu.Unlock()
				if err := s.CompleteDelivery(ctx, d); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				close(completed)
				completed = make(chan struct{})
				mu.Unlock()
			}
		}(s)
	}
	wg.Wait()
	for id, n := range claimed {
		if n != 1 {
			t.Errorf("delivery %s claimed %d times", id, n)
		}
	}
	if len(claimed) != 41 {
		t.Errorf("%d deliveries claimed, want 41", len(claimed))
	}
}
