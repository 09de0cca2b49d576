package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"
)

// Several daemons racing for a lease, each with its own client: the
// embedded server in its shared mode (whose findAndModify is not atomic
// between clients), or MONGODB_URI when set. Every round exactly one wins.
func TestLeaseRaceAcrossClients(t *testing.T) {
	ctx := context.Background()
	uri := os.Getenv("MONGODB_URI")
	if uri == "" {
		var stop func(context.Context) error
		var err error
		uri, stop, err = startEmbedded(ctx, t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		defer stop(ctx)
	}
	db := fmt.Sprintf("ticketd_lease_%d", time.Now().UnixNano())
	daemons := []*Store{openShared(t, uri, db), openShared(t, uri, db), openShared(t, uri, db)}
	defer daemons[0].db.Drop(ctx)
	for round := 1; round <= 15; round++ {
		var wg sync.WaitGroup
		won := make(chan *Lease, len(daemons))
		for i, s := range daemons {
			wg.Add(1)
			go func() {
				defer wg.Done()
				l, err := s.AcquireLease(ctx, "race", fmt.Sprint("daemon-", i), time.Hour)
				if err == nil {
					won <- l
				} else if !errors.Is(err, ErrLeaseHeld) {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		close(won)
		var winners []*Lease
		for l := range won {
			winners = append(winners, l)
		}
		if len(winners) != 1 {
			t.Fatalf("round %d: %d winners: %+v", round, len(winners), winners)
		}
		if winners[0].Token != int64(round) {
			t.Errorf("round %d: token %d", round, winners[0].Token)
		}
		if err := daemons[0].ReleaseLease(ctx, winners[0]); err != nil {
			t.Fatal(err)
		}
	}
}
