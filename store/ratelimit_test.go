package store

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// sharedStores opens n Stores on one database, as n daemons do: on the
// embedded server (started here, shared through its URI) or on MONGODB_URI.
// now nil keeps the real clock.
func sharedStores(t *testing.T, n int, now func() time.Time) []*Store {
	t.Helper()
	ctx := context.Background()
	uri, db := os.Getenv("MONGODB_URI"), fmt.Sprintf("ticketd_shared_%d", time.Now().UnixNano())
	if uri == "" {
		u, stop, err := startEmbedded(ctx, t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stop(context.Background()) })
		uri = u
	}
	out := make([]*Store, n)
	for i := range out {
		out[i] = openShared(t, uri, db)
		if now != nil {
			out[i].now = now
		}
	}
	t.Cleanup(func() { out[0].db.Drop(context.Background()) })
	return out
}

// Two daemons on one database together allow exactly the limit, however
// their takes interleave; a returned slot can be taken again; the next
// window starts afresh and the ended one's slots are deleted.
func TestRateLimitSharedByDaemons(t *testing.T) {
	var clock atomic.Pointer[time.Time]
	start := time.Date(2026, 3, 2, 10, 5, 0, 0, time.UTC)
	clock.Store(&start)
	now := func() time.Time { return *clock.Load() }
	pair := sharedStores(t, 2, now)
	a, b := pair[0], pair[1]
	ctx := context.Background()
	const limit = 7
	var allowed atomic.Int32
	var slots sync.Map
	var wg sync.WaitGroup
	for w, s := range []*Store{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 6 {
				slot, ok, err := s.TakeRateSlot(ctx, "mail:flood@x.test", limit, time.Hour)
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					allowed.Add(1)
					slots.Store(fmt.Sprint(w, i), slot)
				}
			}
		}()
	}
	wg.Wait()
	if n := allowed.Load(); n != limit {
		t.Fatalf("two daemons allowed %d of 24 in one window, want exactly %d", n, limit)
	}
	if _, ok, _ := a.TakeRateSlot(ctx, "mail:other@x.test", limit, time.Hour); !ok {
		t.Error("another sender is limited too")
	}
	var one RateSlot
	slots.Range(func(_, v any) bool { one = v.(RateSlot); return false })
	if err := b.ReturnRateSlot(ctx, one); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := a.TakeRateSlot(ctx, "mail:flood@x.test", limit, time.Hour); !ok {
		t.Error("a returned slot was not given out again")
	}
	if _, ok, _ := b.TakeRateSlot(ctx, "mail:flood@x.test", limit, time.Hour); ok {
		t.Error("a slot over the limit after the return")
	}

	next := start.Add(time.Hour)
	clock.Store(&next)
	if _, ok, err := b.TakeRateSlot(ctx, "mail:flood@x.test", limit, time.Hour); !ok || err != nil {
		t.Errorf("the next window is still limited (err %v)", err)
	}
	// b swept when it took: only the new window's slot is left.
	n, err := a.col(colRateSlots).CountDocuments(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d rate slots stored after the window ended, want the new window's 1", n)
	}
	if _, ok, _ := a.TakeRateSlot(ctx, "k", 0, time.Hour); !ok {
		t.Error("a limit of 0 limits")
	}
}
