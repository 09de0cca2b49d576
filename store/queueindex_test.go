package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// The queue table (queueindex.go) holds exactly what the outbox holds,
// after every kind of write the queue sees, and its look-ups search an
// index rather than scan.
func TestQueueFollowsTheOutbox(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, OpenOptions{DataDir: t.TempDir(), Database: "queue", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if !s.ownQueue() {
		t.Fatal("want the store's own queue")
	}
	if _, err := s.JoinDeployment(ctx, []string{"email", "slack"}); err != nil {
		t.Fatal(err)
	}
	cust := Actor{ID: bson.NewObjectID(), Type: CreatorCustomer}
	admin := Actor{ID: bson.NewObjectID(), Type: CreatorAdmin}
	for i := range 6 {
		tk, _, err := s.CreateTicket(ctx, NewTicket{Creator: cust, TeamID: "t", Subject: fmt.Sprint("s", i)})
		if err != nil {
			t.Fatal(err)
		}
		for range i % 3 {
			if _, _, err := s.AddResponse(ctx, tk.ID, AllTickets, NewResponse{Author: admin, Description: "answer"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := s.RelayAll(ctx); err != nil {
		t.Fatal(err)
	}
	all := func() []Delivery {
		t.Helper()
		cur, err := s.outbox.Find(ctx, bson.D{})
		if err != nil {
			t.Fatal(err)
		}
		var ds []Delivery
		if err := cur.All(ctx, &ds); err != nil {
			t.Fatal(err)
		}
		return ds
	}
	check := func(when string) {
		t.Helper()
		var want []string
		for _, d := range all() {
			want = append(want, fmt.Sprint(d.ID, d.Sink, d.TicketID.Hex(), d.State, d.Seq, d.NextAttemptAt.UnixMilli()))
		}
		rows, err := s.index.db.Query(`SELECT ` + queueColumns + ` FROM ticketd_queue`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var got []string
		for rows.Next() {
			var id, sink, ticket, state string
			var seq, next int64
			if err := rows.Scan(&id, &sink, &ticket, &state, &seq, &next); err != nil {
				t.Fatal(err)
			}
			got = append(got, fmt.Sprint(id, sink, ticket, state, seq, next))
		}
		slices.Sort(want)
		slices.Sort(got)
		if len(want) == 0 || !slices.Equal(got, want) {
			t.Errorf("%s: queue table\n%s\noutbox\n%s", when, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	check("relayed")
	// Claim, then complete, retry, kill and requeue, as runners do.
	var claimed []*Delivery
	for range 4 {
		d, err := s.ClaimDelivery(ctx, "email", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		claimed = append(claimed, d)
	}
	check("claimed")
	if err := s.CompleteDelivery(ctx, claimed[0]); err != nil {
		t.Fatal(err)
	}
	if err := s.RetryDelivery(ctx, claimed[1], errors.New("busy"), s.nowUTC().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.KillDelivery(ctx, claimed[2], errors.New("refused")); err != nil {
		t.Fatal(err)
	}
	check("completed, retried, killed")
	if err := s.RequeueDelivery(ctx, claimed[2].ID); err != nil {
		t.Fatal(err)
	}
	if err := s.RequeueDelivery(ctx, claimed[3].ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("requeue of a claimed delivery: %v, want ErrNotFound", err)
	}
	// A stale claimant is refused, changing nothing.
	stale := *claimed[3]
	stale.Claim = "not-the-latest"
	if err := s.CompleteDelivery(ctx, &stale); !errors.Is(err, ErrClaimLost) {
		t.Errorf("complete with a lost claim: %v, want ErrClaimLost", err)
	}
	if err := s.RetryDelivery(ctx, &stale, errors.New("x"), s.nowUTC()); !errors.Is(err, ErrClaimLost) {
		t.Errorf("retry with a lost claim: %v, want ErrClaimLost", err)
	}
	check("requeued")
	// Drain both sinks: every delivery once, in each ticket's order.
	sent := map[string]int{}
	for _, sink := range []string{"email", "slack"} {
		for {
			d, err := s.ClaimDelivery(ctx, sink, time.Minute)
			if errors.Is(err, ErrNotFound) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			sent[d.ID]++
			if err := s.CompleteDelivery(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
	}
	for id, n := range sent {
		if n != 1 {
			t.Errorf("%s claimed %d times", id, n)
		}
	}
	// Left: the delivery backing off for an hour and what waits behind it
	// on its ticket, and the one still claimed (its lease not run out).
	for _, d := range all() {
		behind := d.TicketID == claimed[1].TicketID && d.State == DeliveryWaiting
		if d.ID != claimed[1].ID && d.ID != claimed[3].ID && !behind {
			t.Errorf("left in the queue: %s %s, want only the retried one, its ticket's later ones and the claimed one", d.ID, d.State)
		}
	}
	check("drained")

	plan := func(q string, args ...any) string { return explain(t, s.index.db, q, args...) }
	for _, q := range []string{
		`SELECT id FROM ticketd_queue WHERE sink = ? AND state = ? AND next <= ? ORDER BY next, id LIMIT 1`,
		`SELECT id FROM ticketd_queue WHERE ticket = ? AND sink = ? AND state = ? ORDER BY seq, id LIMIT 1`,
		`SELECT 1 FROM ticketd_queue WHERE ticket = ? AND sink = ? AND state IN (?, ?) LIMIT 1`,
	} {
		if p := plan(q, "a", "b", "c", "d"); !strings.HasPrefix(p, "SEARCH") || strings.Contains(p, "TEMP B-TREE") {
			t.Errorf("%s plans as %q, want a search of an index in order", q, p)
		}
	}
}
