package store_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/internal/testwait"
	"github.com/ticketd/ticketd/store"
	"github.com/ticketd/ticketd/store/storetest"
)

var (
	alice = store.Actor{ID: bson.NewObjectID(), Type: store.CreatorCustomer}
	agent = store.Actor{ID: bson.NewObjectID(), Type: store.CreatorAdmin}
)

// join makes s a daemon of a deployment with these sinks.
func join(t *testing.T, s *store.Store, sinks ...string) {
	t.Helper()
	if _, err := s.JoinDeployment(context.Background(), sinks); err != nil {
		t.Fatal(err)
	}
}

func newTicket(t *testing.T, s *store.Store, team, subject string) *store.Ticket {
	t.Helper()
	tk, created, err := s.CreateTicket(context.Background(), store.NewTicket{
		Creator: alice, TeamID: team, Category: "Support", Subject: subject,
		Description: "details of " + subject, Source: store.SourceAPI,
	})
	if err != nil || !created {
		t.Fatalf("create ticket: created=%v err=%v", created, err)
	}
	return tk
}

func TestCreateTicketKeepsSeedShapeAndRecordsLogAndEvent(t *testing.T) {
	s := storetest.Open(t)
	ctx := context.Background()
	a := newTicket(t, s, "team-a", "Account Issue")
	b := newTicket(t, s, "team-a", "Second")

	got, err := s.Ticket(ctx, a.ID, store.AllTickets)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != store.StatusCreated || got.Priority != store.PriorityLow || got.V != 0 {
		t.Errorf("defaults: status=%q priority=%q __v=%d", got.Status, got.Priority, got.V)
	}
	if got.Response == nil || len(got.Response) != 0 {
		t.Errorf("response should be an empty array, got %#v", got.Response)
	}
	if b.RefID != a.RefID+1 {
		t.Errorf("refId not sequential: %d then %d", a.RefID, b.RefID)
	}
	if !got.CreatedAt.Equal(got.UpdatedAt) || got.CreatedAt.IsZero() {
		t.Errorf("timestamps: %v %v", got.CreatedAt, got.UpdatedAt)
	}
	if len(got.Logs) != 1 || got.Logs[0].ActionTaken != "Ticket created" || got.Logs[0].ActionByType != store.CreatorCustomer {
		t.Errorf("audit log: %+v", got.Logs)
	}
	if len(got.Outbox) != 1 || got.Outbox[0].Kind != store.EventTicketCreated || got.Outbox[0].TicketID != a.ID {
		t.Errorf("outbox: %+v", got.Outbox)
	}
}

func TestCreateTicketIsIdempotentOnSourceKey(t *testing.T) {
	s := storetest.Open(t)
	ctx := context.Background()
	in := store.NewTicket{Creator: alice, TeamID: "t", Subject: "s", Description: "d", Source: store.SourceEmail, SourceKey: "email:<abc@x>"}
	first, created, err := s.CreateTicket(ctx, in)
	if err != nil || !created {
		t.Fatalf("first: %v %v", created, err)
	}
	again, created, err := s.CreateTicket(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if created || again.ID != first.ID {
		t.Errorf("retry created a second ticket: created=%v %s vs %s", created, again.ID.Hex(), first.ID.Hex())
	}
	_, total, err := s.ListTickets(ctx, store.AllTickets, store.ListQuery{})
	if err != nil || total != 1 {
		t.Errorf("want 1 ticket, got %d (%v)", total, err)
	}
}

func TestCreateTicketRejectsInvalidValues(t *testing.T) {
	s := storetest.Open(t)
	ctx := context.Background()
	cases := map[string]store.NewTicket{
		"priority": {Creator: alice, TeamID: "t", Priority: "whenever"},
		"creator":  {Creator: store.SystemActor, TeamID: "t"},
		"team":     {Creator: alice},
	}
	for name, in := range cases {
		if _, _, err := s.CreateTicket(ctx, in); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: want ErrInvalid, got %v", name, err)
		}
	}
}

func TestAddResponseAppendsAndReopensFinishedTicket(t *testing.T) {
	s := storetest.Open(t)
	ctx := context.Background()
	tk := newTicket(t, s, "team-a", "Broken")

	tk, added, err := s.AddResponse(ctx, tk.ID, store.AllTickets, store.NewResponse{Author: agent, Description: "looking", Source: store.SourceAPI})
	if err != nil || !added {
		t.Fatal(added, err)
	}
	if tk.V != 1 || len(tk.Response) != 1 || tk.Response[0].CreatorType != store.CreatorAdmin || tk.Status != store.StatusCreated {
		t.Fatalf("after admin reply: __v=%d responses=%d status=%s", tk.V, len(tk.Response), tk.Status)
	}
	resolved := store.StatusResolved
	if tk, err = s.UpdateTicket(ctx, tk.ID, store.AllTickets, store.TicketUpdate{Status: &resolved}, agent); err != nil {
		t.Fatal(err)
	}
	tk, _, err = s.AddResponse(ctx, tk.ID, store.TeamScope("team-a"), store.NewResponse{Author: alice, Description: "still broken"})
	if err != nil {
		t.Fatal(err)
	}
	if tk.Status != store.StatusOpen || tk.V != 3 {
		t.Errorf("customer reply on resolved: status=%s __v=%d, want open and 3", tk.Status, tk.V)
	}
	tk, _ = s.Ticket(ctx, tk.ID, store.AllTickets) // with its history
	last := tk.Logs[len(tk.Logs)-1].ActionTaken
	if last != "Status changed from resolved to open (reopened by customer reply)" {
		t.Errorf("reopen not logged; last log %q", last)
	}
	var kinds []store.EventKind
	for _, e := range tk.Outbox {
		kinds = append(kinds, e.Kind)
	}
	want := []store.EventKind{store.EventTicketCreated, store.EventResponseAdded, store.EventStatusChanged, store.EventResponseAdded, store.EventStatusChanged}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Errorf("events %v, want %v", kinds, want)
	}
}

func TestAddResponseIsIdempotentOnSourceKey(t *testing.T) {
	s := storetest.Open(t)
	ctx := context.Background()
	tk := newTicket(t, s, "t", "x")
	in := store.NewResponse{Author: alice, Description: "again", Source: store.SourceEmail, SourceKey: "email:<r1@x>"}
	for i := 0; i < 3; i++ {
		got, added, err := s.AddResponse(ctx, tk.ID, store.AllTickets, in)
		if err != nil {
			t.Fatal(err)
		}
		if added != (i == 0) || len(got.Response) != 1 || got.V != 1 {
			t.Fatalf("attempt %d: added=%v responses=%d __v=%d", i, added, len(got.Response), got.V)
		}
	}
}

func TestInternalNotesAreAgentsOnly(t *testing.T) {
	s := storetest.Open(t)
	tk := newTicket(t, s, "t", "x")
	_, _, err := s.AddResponse(context.Background(), tk.ID, store.AllTickets, store.NewResponse{Author: alice, Description: "x", Internal: true})
	if !errors.Is(err, store.ErrInvalid) {
		t.Errorf("customer internal note: want ErrInvalid, got %v", err)
	}
}

func TestUpdateTicketLogsEachChangeAndSkipsNoOps(t *testing.T) {
	s := storetest.Open(t)
	ctx := context.Background()
	tk := newTicket(t, s, "t", "x")
	st, pr, cat, who := store.StatusInProgress, store.PriorityUrgent, "Billing", bson.NewObjectID()
	got, err := s.UpdateTicket(ctx, tk.ID, store.AllTickets, store.TicketUpdate{Status: &st, Priority: &pr, Category: &cat, AssigneeID: &who}, agent)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != st || got.Priority != pr || got.Category != cat || got.AssigneeID == nil || *got.AssigneeID != who || got.V != 1 {
		t.Fatalf("update not applied: %+v", got)
	}
	got, _ = s.Ticket(ctx, tk.ID, store.AllTickets) // with its history
	if len(got.Logs) != 5 {
		t.Errorf("want 5 log lines (create + 4 changes), got %d", len(got.Logs))
	}
	if len(got.Outbox) != 4 { // created, status, priority, assignee: category is not announced
		t.Errorf("want 4 events, got %d", len(got.Outbox))
	} else if e := got.Outbox[3]; e.Kind != store.EventAssigneeChanged || e.From != "" || e.To != who.Hex() {
		t.Errorf("assignee event %+v", e)
	}
	same, err := s.UpdateTicket(ctx, tk.ID, store.AllTickets, store.TicketUpdate{Status: &st, Priority: &pr}, agent)
	same, _ = s.Ticket(ctx, tk.ID, store.AllTickets)
	if err != nil || same.V != 1 || len(same.Logs) != 5 {
		t.Errorf("no-op update changed the ticket: __v=%d logs=%d err=%v", same.V, len(same.Logs), err)
	}
	stale := int64(0)
	closed := store.StatusClosed
	if _, err := s.UpdateTicket(ctx, tk.ID, store.AllTickets, store.TicketUpdate{Status: &closed, ExpectedV: &stale}, agent); !errors.Is(err, store.ErrConflict) {
		t.Errorf("stale __v: want ErrConflict, got %v", err)
	}
	bad := store.Status("done")
	if _, err := s.UpdateTicket(ctx, tk.ID, store.AllTickets, store.TicketUpdate{Status: &bad}, agent); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("bad status: want ErrInvalid, got %v", err)
	}
	none := bson.NilObjectID
	got, err = s.UpdateTicket(ctx, tk.ID, store.AllTickets, store.TicketUpdate{AssigneeID: &none}, agent)
	if err != nil || got.AssigneeID != nil {
		t.Errorf("unassign: %v %v", got.AssigneeID, err)
	}
}

func TestScopeHidesOtherTeamsAndDeletedTickets(t *testing.T) {
	s := storetest.Open(t)
	ctx := context.Background()
	mine := newTicket(t, s, "team-a", "mine")
	theirs := newTicket(t, s, "team-b", "theirs")
	if _, err := s.Ticket(ctx, theirs.ID, store.TeamScope("team-a")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("other team's ticket: want ErrNotFound, got %v", err)
	}
	if _, _, err := s.AddResponse(ctx, theirs.ID, store.TeamScope("team-a"), store.NewResponse{Author: alice, Description: "x"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("reply to other team's ticket: want ErrNotFound, got %v", err)
	}
	if _, err := s.Ticket(ctx, mine.ID, store.Scope{}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("zero scope must see nothing, got %v", err)
	}
	list, total, err := s.ListTickets(ctx, store.TeamScope("team-a"), store.ListQuery{TeamID: "team-b"})
	if err != nil || total != 0 || len(list) != 0 {
		t.Errorf("customer asking for another team: %d %v", total, err)
	}
	if _, err := s.DeleteTicket(ctx, mine.ID, store.AllTickets, agent); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Ticket(ctx, mine.ID, store.AllTickets); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted ticket: want ErrNotFound, got %v", err)
	}
	if _, total, _ := s.ListTickets(ctx, store.AllTickets, store.ListQuery{}); total != 1 {
		t.Errorf("deleted ticket still listed: total=%d", total)
	}
	raw := s.Database().Collection("tickets").FindOne(ctx, bson.D{{Key: "_id", Value: mine.ID}})
	var kept store.Ticket
	if err := raw.Decode(&kept); err != nil || !kept.IsDelete || kept.Logs[len(kept.Logs)-1].ActionTaken != "Ticket deleted" {
		t.Errorf("soft delete must keep the document and log it: %v %+v", err, kept.Logs)
	}
}

func TestListFiltersPagesAndOrders(t *testing.T) {
	s := storetest.Open(t)
	ctx := context.Background()
	var ids []bson.ObjectID
	for i := 0; i < 7; i++ {
		tk := newTicket(t, s, "team-a", fmt.Sprintf("printer %d", i))
		ids = append(ids, tk.ID)
	}
	newTicket(t, s, "team-b", "Refund (a.k.a. money back)")
	urgent := store.PriorityUrgent
	if _, err := s.UpdateTicket(ctx, ids[2], store.AllTickets, store.TicketUpdate{Priority: &urgent}, agent); err != nil {
		t.Fatal(err)
	}

	page, total, err := s.ListTickets(ctx, store.TeamScope("team-a"), store.ListQuery{Limit: 3, Offset: 0})
	if err != nil || total != 7 || len(page) != 3 {
		t.Fatalf("page 1: len=%d total=%d err=%v", len(page), total, err)
	}
	if page[0].ID != ids[2] {
		t.Errorf("newest-updated first: got %s first", page[0].Subject)
	}
	if page[0].Logs != nil || page[0].Outbox != nil {
		t.Errorf("listing must not carry logs or outbox")
	}
	seen := map[bson.ObjectID]bool{}
	for off := 0; off < 9; off += 3 {
		p, _, err := s.ListTickets(ctx, store.TeamScope("team-a"), store.ListQuery{Limit: 3, Offset: off})
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range p {
			if seen[tk.ID] {
				t.Errorf("ticket %s on two pages", tk.Subject)
			}
			seen[tk.ID] = true
		}
	}
	if len(seen) != 7 {
		t.Errorf("paging saw %d tickets, want 7", len(seen))
	}
	if _, n, _ := s.ListTickets(ctx, store.AllTickets, store.ListQuery{Priority: store.PriorityUrgent}); n != 1 {
		t.Errorf("priority filter: %d", n)
	}
	if _, n, _ := s.ListTickets(ctx, store.AllTickets, store.ListQuery{Keyword: "PRINTER 3"}); n != 1 {
		t.Errorf("keyword is case-insensitive: %d", n)
	}
	if _, n, _ := s.ListTickets(ctx, store.AllTickets, store.ListQuery{Keyword: "(a.k.a."}); n != 1 {
		t.Errorf("keyword is literal text, not a pattern: %d", n)
	}
	if _, n, _ := s.ListTickets(ctx, store.AllTickets, store.ListQuery{Keyword: ".*"}); n != 0 {
		t.Errorf("a pattern keyword must match literally: %d", n)
	}
	if _, n, _ := s.ListTickets(ctx, store.AllTickets, store.ListQuery{Status: store.StatusClosed}); n != 0 {
		t.Errorf("status filter: %d", n)
	}
	if _, n, _ := s.ListTickets(ctx, store.AllTickets, store.ListQuery{CreatorID: alice.ID, TeamID: "team-b"}); n != 1 {
		t.Errorf("creator+team filter: %d", n)
	}
}

func TestConcurrentRepliesAreAllKept(t *testing.T) {
	s := storetest.Open(t)
	ctx := context.Background()
	tk := newTicket(t, s, "t", "busy")
	const writers, each = 16, 5
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				_, _, err := s.AddResponse(ctx, tk.ID, store.AllTickets, store.NewResponse{Author: agent, Description: fmt.Sprintf("w%d-%d", w, i)})
				errs <- err
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Ticket(ctx, tk.ID, store.AllTickets)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Response) != writers*each || got.V != writers*each {
		t.Errorf("responses=%d __v=%d, want %d and %d", len(got.Response), got.V, writers*each, writers*each)
	}
	descs := map[string]bool{}
	for _, r := range got.Response {
		descs[r.Description] = true
	}
	if len(descs) != writers*each {
		t.Errorf("distinct responses %d, want %d", len(descs), writers*each)
	}
}

func TestRelayMovesEventsOncePerSinkAndQueueWorks(t *testing.T) {
	s := storetest.Open(t)
	ctx := context.Background()
	tk := newTicket(t, s, "t", "x")
	if _, _, err := s.AddResponse(ctx, tk.ID, store.AllTickets, store.NewResponse{Author: agent, Description: "hi"}); err != nil {
		t.Fatal(err)
	}
	join(t, s, "email", "slack")
	n, err := s.RelayAll(ctx)
	if err != nil || n != 2 {
		t.Fatalf("relayed %d events (%v), want 2", n, err)
	}
	if n, _ := s.RelayAll(ctx); n != 0 {
		t.Errorf("second relay moved %d events", n)
	}
	got, _ := s.Ticket(ctx, tk.ID, store.AllTickets)
	if len(got.Outbox) != 0 {
		t.Errorf("ticket still holds %d events", len(got.Outbox))
	}
	// Per sink, the ticket's first delivery is pending, the second waits
	// for it.
	if n, _ := s.CountDeliveries(ctx, store.DeliveryPending); n != 2 {
		t.Errorf("want 2 pending deliveries (1 per sink), got %d", n)
	}
	if n, _ := s.CountDeliveries(ctx, store.DeliveryWaiting); n != 2 {
		t.Errorf("want 2 waiting deliveries (1 per sink), got %d", n)
	}

	d, err := s.ClaimDelivery(ctx, "email", time.Minute)
	if err != nil || d.Event.Kind != store.EventTicketCreated || d.Attempts != 1 {
		t.Fatalf("claim: %+v %v", d, err)
	}
	if _, err := s.ClaimDelivery(ctx, "email", time.Minute); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the ticket's second delivery must wait for the leased first, got %v", err)
	}
	if err := s.CompleteDelivery(ctx, d); err != nil {
		t.Fatal(err)
	}
	d2, err := s.ClaimDelivery(ctx, "email", time.Minute)
	if err != nil || d2.ID == d.ID || d2.Event.Kind != store.EventResponseAdded {
		t.Fatalf("second claim must take the next entry: %+v %v", d2, err)
	}
	if err := s.RetryDelivery(ctx, d2, errors.New("smtp 451"), time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	d3, err := s.ClaimDelivery(ctx, "email", time.Minute)
	if err != nil || d3.ID != d2.ID || d3.Attempts != 2 || d3.LastError != "smtp 451" {
		t.Fatalf("retry: %+v %v", d3, err)
	}
	if err := s.KillDelivery(ctx, d3, errors.New("smtp 550")); err != nil {
		t.Fatal(err)
	}
	dead, err := s.Deliveries(ctx, store.DeliveryDead, 10)
	if err != nil || len(dead) != 1 || dead[0].ID != d3.ID {
		t.Fatalf("dead letters: %+v %v", dead, err)
	}
	ready := s.DeliveriesReady("email")
	select { // drain the relay's signal
	case <-ready:
	default:
	}
	if err := s.RequeueDelivery(ctx, d3.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ready:
	default:
		t.Error("requeue did not wake the sink's runner")
	}
	if d4, err := s.ClaimDelivery(ctx, "email", time.Minute); err != nil || d4.ID != d3.ID || d4.Attempts != 1 {
		t.Errorf("requeued: %+v %v", d4, err)
	}
}

func TestRunRelayDeliversSignalledWritesPromptly(t *testing.T) {
	s := storetest.Open(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	join(t, s, "email")
	go func() { done <- s.RunRelay(ctx, time.Hour) }()
	newTicket(t, s, "t", "x")
	testwait.For(t, "the relay to move the event", func() bool {
		n, err := s.CountDeliveries(context.Background(), store.DeliveryPending)
		if err != nil {
			t.Fatal(err)
		}
		return n == 1
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestCustomersAndAgents(t *testing.T) {
	s := storetest.Open(t)
	ctx := context.Background()
	c, created, err := s.FindOrCreateCustomer(ctx, " Ann@Example.COM ", "Ann", "")
	if err != nil || !created || c.Email != "ann@example.com" || c.TeamID != "personal:"+c.ID.Hex() {
		t.Fatalf("create customer: %+v %v %v", c, created, err)
	}
	again, created, err := s.FindOrCreateCustomer(ctx, "ann@example.com", "", "other")
	if err != nil || created || again.ID != c.ID {
		t.Errorf("second lookup: %+v %v %v", again, created, err)
	}
	// Only the store assigns personal teams: joining Ann's from outside is refused.
	if x, _, err := s.FindOrCreateCustomer(ctx, "eve@example.com", "", c.TeamID); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("customer created in another's personal team: %+v %v", x, err)
	}
	a, err := s.FindOrCreateAgent(ctx, "bob@support.test", "Bob", "U123")
	if err != nil {
		t.Fatal(err)
	}
	bySlack, err := s.AgentBySlackUser(ctx, "U123")
	if err != nil || bySlack.ID != a.ID {
		t.Errorf("agent by slack id: %+v %v", bySlack, err)
	}
	if _, err := s.AgentBySlackUser(ctx, "U999"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown slack user: %v", err)
	}
}

func TestMessageIDsThreadAndWakeNotifiers(t *testing.T) {
	s := storetest.Open(t)
	join(t, s, "email")
	ctx := context.Background()
	tk := newTicket(t, s, "t", "x")
	for _, id := range []string{"<First@Mail.example>", "second@x", "<first@mail.example>"} {
		if err := s.AddMessageID(ctx, tk.ID, id); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := s.Ticket(ctx, tk.ID, store.AllTickets)
	if fmt.Sprint(got.MessageIDs) != "[<First@Mail.example> <second@x> <first@mail.example>]" || got.V != 0 {
		t.Errorf("messageIds %v __v=%d", got.MessageIDs, got.V)
	}
	if id, err := s.TicketIDByMessageID(ctx, "FIRST@mail.example"); err != nil || id != tk.ID {
		t.Errorf("lookup by message id: %v %v", id, err)
	}
	if _, err := s.TicketIDByMessageID(ctx, "<nope@x>"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown message id: %v", err)
	}
	ready := s.DeliveriesReady("email")
	if _, err := s.RelayTicket(ctx, tk.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ready:
	default:
		t.Error("relay did not wake the email notifier")
	}
}

func TestReopenKeepsDataAndIsIdempotent(t *testing.T) {
	ctx := context.Background()
	s1, o := storetest.OpenWith(t, store.OpenOptions{})
	tk := newTicket(t, s1, "t", "kept")
	if err := s1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // indexes and the embedded fix run again on every open
		s2, _ := storetest.OpenWith(t, o)
		got, err := s2.Ticket(ctx, tk.ID, store.AllTickets)
		if err != nil || got.Subject != "kept" {
			t.Fatalf("reopen %d: %v %v", i, got, err)
		}
		if _, n, err := s2.ListTickets(ctx, store.AllTickets, store.ListQuery{Keyword: "kept"}); err != nil || n != 1 {
			t.Fatalf("reopen %d: listing finds %d (%v)", i, n, err)
		}
		next := newTicket(t, s2, "t", fmt.Sprintf("after reopen %d", i))
		if next.RefID != tk.RefID+int64(i)+1 {
			t.Errorf("refId after reopen %d: %d", i, next.RefID)
		}
		s2.Close(ctx)
	}
}

func TestMessageIDsRecordedWithTheWrite(t *testing.T) {
	s := storetest.Open(t)
	ctx := context.Background()
	in := store.NewTicket{Creator: alice, TeamID: "t", Subject: "s", Source: store.SourceEmail, SourceKey: "email:a@x", MessageID: "<a@x>"}
	tk, _, err := s.CreateTicket(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(tk.MessageIDs) != "[<a@x>]" {
		t.Errorf("created ticket thread: %v", tk.MessageIDs)
	}
	r := store.NewResponse{Author: alice, Description: "more", Source: store.SourceEmail, SourceKey: "email:b@x", MessageID: "b@x"}
	for i := 0; i < 2; i++ {
		if tk, _, err = s.AddResponse(ctx, tk.ID, store.AllTickets, r); err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(tk.MessageIDs) != "[<a@x> <b@x>]" || tk.V != 1 {
		t.Errorf("thread after reply (twice): %v __v=%d", tk.MessageIDs, tk.V)
	}
	for _, id := range []string{"a@x", "<B@X>"} {
		if got, err := s.TicketIDByMessageID(ctx, id); err != nil || got != tk.ID {
			t.Errorf("lookup %s: %v %v", id, got, err)
		}
	}
}

func TestAttachmentsAreStoredOnceAndScoped(t *testing.T) {
	s := storetest.Open(t)
	ctx := context.Background()
	tk := newTicket(t, s, "team-a", "with a file")
	f := store.AttachmentFile{
		Attachment: store.Attachment{ID: bson.NewObjectID(), Filename: "screen.png", ContentType: "image/png", Inline: true},
		TicketID:   tk.ID, Data: []byte("\x89PNG fake"),
	}
	for i := 0; i < 2; i++ { // a re-read message saves its files again: no-op
		if err := s.SaveAttachment(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Attachment(ctx, f.ID, store.TeamScope("team-a"))
	if err != nil || string(got.Data) != "\x89PNG fake" || got.Size != 9 || !got.Inline || got.Filename != "screen.png" {
		t.Fatalf("attachment: %+v %v", got, err)
	}
	if _, err := s.Attachment(ctx, f.ID, store.TeamScope("team-b")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("other team read an attachment: %v", err)
	}
	if n, _ := s.Database().Collection("attachments").CountDocuments(ctx, bson.D{}); n != 1 {
		t.Errorf("%d stored copies", n)
	}
}

// What a write returns must be what it stored: the store computes the
// returned ticket itself instead of reading it back.
func TestWritesReturnWhatTheyStored(t *testing.T) {
	s := storetest.Open(t)
	ctx := context.Background()
	tk := newTicket(t, s, "t", "x")
	st, pr, cat, who, none := store.StatusResolved, store.PriorityHigh, "Billing", bson.NewObjectID(), bson.NilObjectID
	steps := []func() (*store.Ticket, error){
		func() (*store.Ticket, error) {
			r, _, err := s.AddResponse(ctx, tk.ID, store.AllTickets, store.NewResponse{Author: agent, Description: "a", MessageID: "<r1@x>"})
			return r, err
		},
		func() (*store.Ticket, error) {
			return s.UpdateTicket(ctx, tk.ID, store.AllTickets, store.TicketUpdate{Status: &st, Priority: &pr, Category: &cat, AssigneeID: &who}, agent)
		},
		func() (*store.Ticket, error) {
			r, _, err := s.AddResponse(ctx, tk.ID, store.AllTickets, store.NewResponse{Author: alice, Description: "reopen"})
			return r, err
		},
		func() (*store.Ticket, error) {
			return s.UpdateTicket(ctx, tk.ID, store.AllTickets, store.TicketUpdate{AssigneeID: &none}, agent)
		},
		func() (*store.Ticket, error) { return s.DeleteTicket(ctx, tk.ID, store.AllTickets, agent) },
	}
	for i, step := range steps {
		got, err := step()
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		var stored store.Ticket
		if err := s.Database().Collection("tickets").FindOne(ctx, bson.D{{Key: "_id", Value: tk.ID}}).Decode(&stored); err != nil {
			t.Fatal(err)
		}
		stored.Logs, stored.Outbox = nil, nil
		if !reflect.DeepEqual(*got, stored) {
			t.Errorf("step %d returned\n%+v\nbut stored\n%+v", i, *got, stored)
		}
	}
}

// Writes that skip the read (recently written tickets on the embedded
// store) must see every other write to the document: a thread Message-ID
// added between two replies, a relay, many writers at once.
func TestRecentTicketStateStaysCoherent(t *testing.T) {
	s := storetest.Open(t)
	join(t, s, "email")
	ctx := context.Background()
	tk := newTicket(t, s, "t", "hot")
	reply := func(d string) *store.Ticket {
		got, _, err := s.AddResponse(ctx, tk.ID, store.AllTickets, store.NewResponse{Author: agent, Description: d})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	reply("one")
	if err := s.AddMessageID(ctx, tk.ID, "<between@x>"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RelayTicket(ctx, tk.ID); err != nil {
		t.Fatal(err)
	}
	got := reply("two")
	if fmt.Sprint(got.MessageIDs) != "[<between@x>]" || len(got.Response) != 2 || got.V != 2 {
		t.Errorf("write after AddMessageID lost it: %v, %d responses, __v %d", got.MessageIDs, len(got.Response), got.V)
	}
	got.Response[0].Description = "caller scribbles on its copy"
	if again := reply("three"); again.Response[0].Description != "one" {
		t.Errorf("a caller's copy leaked into the store's memory: %q", again.Response[0].Description)
	}
	stored, _ := s.Ticket(ctx, tk.ID, store.AllTickets)
	if len(stored.Response) != 3 || stored.V != 3 || len(stored.Outbox) != 2 || fmt.Sprint(stored.MessageIDs) != "[<between@x>]" {
		t.Errorf("stored: %d responses, __v %d, %d pending events, ids %v", len(stored.Response), stored.V, len(stored.Outbox), stored.MessageIDs)
	}
}

// A delivery completed before its event was pulled from the ticket (the
// pull failed) is not queued again by the next relay; requeue only revives
// dead deliveries.
func TestCompletedDeliveriesAreNotRequeued(t *testing.T) {
	s := storetest.Open(t)
	join(t, s, "email")
	ctx := context.Background()
	tk := newTicket(t, s, "t", "x")
	if _, err := s.RelayTicket(ctx, tk.ID); err != nil {
		t.Fatal(err)
	}
	d, err := s.ClaimDelivery(ctx, "email", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RequeueDelivery(ctx, d.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("requeue of an in-flight delivery: %v", err)
	}
	if err := s.CompleteDelivery(ctx, d); err != nil {
		t.Fatal(err)
	}
	// Put the event back on the ticket, as if the first pull had failed.
	_, err = s.Database().Collection("tickets").UpdateOne(ctx, bson.D{{Key: "_id", Value: tk.ID}},
		bson.D{{Key: "$push", Value: bson.D{{Key: "outbox", Value: d.Event}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RelayTicket(ctx, tk.ID); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.CountDeliveries(ctx, store.DeliveryPending); n != 0 {
		t.Errorf("a completed delivery was queued again (%d pending)", n)
	}
}
