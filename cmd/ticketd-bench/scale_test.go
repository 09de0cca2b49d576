package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/store"
)

// TestSizeScenariosRun keeps the store-size scenarios working: at tiny
// sizes each must seed (once, then reuse), measure and print its table.
// No figure is asserted.
func TestSizeScenariosRun(t *testing.T) {
	var out bytes.Buffer
	b := &bench{ops: 20, out: &out, scale: scaleOptions{sizes: []int{20, 40}, cache: t.TempDir(), label: "test",
		seedWorkers: 2, seedAPI: 10, budget: time.Millisecond, duration: time.Second, idle: time.Second, clients: 2, runs: 1}}
	ctx := context.Background()
	for _, sc := range []string{"seed", "scale", "startup", "idle", "mixed", "seed"} {
		if err := b.run(ctx, sc); err != nil {
			t.Fatalf("%s: %v\n%s", sc, err, out.String())
		}
	}
	for _, want := range []string{
		"| keyword=zürich (non-ASCII word) |",
		"| first page, admin | 40 |", // every ticket listed, bulk and API alike
		"RSS after start-up (median)",
		"\"sweep failed\" logged",
		"| create |",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	// The second seed scenario finds the stores the first made.
	var seeded []string
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(line, "| 40 |") && strings.HasSuffix(line, "| test |") {
			seeded = append(seeded, line)
		}
	}
	if len(seeded) != 2 || seeded[0] != seeded[1] {
		t.Errorf("want the same seeding reported twice, got %q", seeded)
	}
}

// TestBulkTicketIsWhatTheStoreMakes: the tickets seeded in bulk have the
// fields, at every level, that the store's own operations give the same
// corpus ticket, so a listing or an index sees no difference.
func TestBulkTicketIsWhatTheStoreMakes(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.OpenOptions{DataDir: t.TempDir(), Database: benchDatabase,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(ctx)
	// Ticket 1 of the corpus has a status change, and some response.
	const i = 1
	if planTicket(i).status == store.StatusCreated {
		t.Fatal("corpus ticket 1 keeps its first status; pick one that changes")
	}
	var busy atomic.Int64
	viaAPI, err := seedTicket(ctx, st, i, &busy)
	if err != nil {
		t.Fatal(err)
	}
	bulk := bulkTicket(i, 10, time.Now())
	col := st.Database().Collection("tickets")
	if _, err := col.InsertOne(ctx, bulk); err != nil {
		t.Fatal(err)
	}
	read := func(id bson.ObjectID) bson.M {
		var m bson.M
		if err := col.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	api, got := read(viaAPI), read(bulk.ID)
	// The store API's events were never relayed here; the bulk ones are.
	api["outbox"] = bson.A{}
	if a, g := shape(api), shape(got); !slices.Equal(a, g) {
		t.Errorf("bulk ticket fields differ from the store's:\nstore: %v\nbulk:  %v", a, g)
	}
	for _, k := range []string{"subject", "description", "status", "priority", "category", "teamId", "__v", "creatorId"} {
		if api[k] != got[k] {
			t.Errorf("%s: store %v, bulk %v", k, api[k], got[k])
		}
	}
	if a, g := len(api["response"].(bson.A)), len(got["response"].(bson.A)); a != g {
		t.Errorf("responses: store %d, bulk %d", a, g)
	}
	if a, g := len(api["logs"].(bson.A)), len(got["logs"].(bson.A)); a != g {
		t.Errorf("audit lines: store %d, bulk %d", a, g)
	}
}

// shape lists a document's field paths, arrays by their first element.
func shape(m bson.M) []string {
	var paths []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch v := v.(type) {
		case bson.M:
			for _, k := range slices.Sorted(maps.Keys(v)) {
				paths = append(paths, prefix+k)
				walk(prefix+k+".", v[k])
			}
		case bson.D:
			m := bson.M{}
			for _, e := range v {
				m[e.Key] = e.Value
			}
			walk(prefix, m)
		case bson.A:
			if len(v) > 0 {
				walk(prefix+"0.", v[0])
			}
		}
	}
	walk("", m)
	return paths
}
