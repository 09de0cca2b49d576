package store_test

import (
	"context"
	"os"
	"testing"

	"github.com/ticketd/ticketd/store"
	"github.com/ticketd/ticketd/store/storetest"
)

// TestEmbeddedWriteOutlivesItsCaller: on the embedded server the per-ticket
// lock is all that orders a ticket's writes, and the server rewrites the
// whole document, so a write must reach a known outcome before the lock is
// released, even when its caller's context ends first; otherwise the next
// write to the ticket races it inside the server and one of the two is
// lost (seen under a burst of Slack replies: a reply acked right after a
// timed-out one vanished). A context already done when the update goes out
// (the ticket is remembered, so nothing is read first) stands for one that
// ends while the server works.
func TestEmbeddedWriteOutlivesItsCaller(t *testing.T) {
	if os.Getenv("MONGODB_URI") != "" {
		t.Skip("MONGODB_URI set: on MongoDB the __v compare orders writes, not this process's lock")
	}
	s := storetest.Open(t)
	ctx := context.Background()
	tk := newTicket(t, s, "team-a", "Printer")
	first := store.NewResponse{Author: alice, Description: "first", Source: store.SourceAPI}
	if _, _, err := s.AddResponse(ctx, tk.ID, store.AllTickets, first); err != nil {
		t.Fatal(err)
	}
	gone, cancel := context.WithCancel(ctx)
	cancel()
	second := store.NewResponse{Author: alice, Description: "second", Source: store.SourceAPI}
	if _, added, err := s.AddResponse(gone, tk.ID, store.AllTickets, second); err != nil || !added {
		t.Fatalf("a write whose caller left before the server answered: added=%v err=%v; want it carried out", added, err)
	}
	got, err := s.Ticket(ctx, tk.ID, store.AllTickets)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(got.Response); n != 2 {
		t.Errorf("%d responses stored, want 2", n)
	}
}
