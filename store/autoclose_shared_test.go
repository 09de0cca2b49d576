package store

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The query path of IdleResolvedTickets (MongoDB's) and the listing path
// (the embedded store's) find the same candidates.
func TestIdleResolvedTicketsBothPaths(t *testing.T) {
	ctx := context.Background()
	uri, stop, err := startEmbedded(ctx, t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer stop(ctx)
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(ctx)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := func() time.Time { return now }
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	shared, err := New(ctx, client, client.Database("idle"), Options{Logger: quiet, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	cust := Actor{ID: bson.NewObjectID(), Type: CreatorCustomer}
	resolved := StatusResolved
	var want []bson.ObjectID
	var replied bson.ObjectID
	for i := range 6 {
		tk, _, err := shared.CreateTicket(ctx, NewTicket{Creator: cust, TeamID: "t", Subject: "s", Description: "d"})
		if err != nil {
			t.Fatal(err)
		}
		if i%3 == 2 {
			continue // left open
		}
		if _, err := shared.UpdateTicket(ctx, tk.ID, AllTickets, TicketUpdate{Status: &resolved}, SystemActor); err != nil {
			t.Fatal(err)
		}
		if i == 4 {
			replied = tk.ID
		} else {
			want = append(want, tk.ID)
		}
		now = now.Add(time.Minute)
	}
	now = now.Add(8 * 24 * time.Hour)
	if _, _, err := shared.AddResponse(ctx, replied, AllTickets, NewResponse{Author: cust, Description: "again"}); err != nil {
		t.Fatal(err)
	}
	if _, err := shared.UpdateTicket(ctx, replied, AllTickets, TicketUpdate{Status: &resolved}, SystemActor); err != nil {
		t.Fatal(err)
	}
	before := now.Add(-7 * 24 * time.Hour)
	serial, err := New(ctx, client, client.Database("idle"), Options{Logger: quiet, Now: clock, Serialized: true})
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*Store{"query": shared, "listing": serial} {
		got, err := s.IdleResolvedTickets(ctx, before, 100)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%s: %v %v, want %v", name, got, err, want)
		}
	}
}
