package store_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/store"
	"github.com/ticketd/ticketd/store/storetest"
)

// fakeClock is a settable clock for the store.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *fakeClock) Advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// secondDaemon is another daemon on s's database (a second Store with its
// own daemon id), on the same clock.
func secondDaemon(t *testing.T, s *store.Store, now func() time.Time) *store.Store {
	t.Helper()
	db := s.Database()
	s2, err := store.New(context.Background(), db.Client(), db, store.Options{Now: now, Serialized: true})
	if err != nil {
		t.Fatal(err)
	}
	return s2
}

func outboxOf(t *testing.T, s *store.Store, id bson.ObjectID) []store.Event {
	t.Helper()
	tk, err := s.Ticket(context.Background(), id, store.AllTickets)
	if err != nil {
		t.Fatal(err)
	}
	return tk.Outbox
}

// Every event says through which channel its change came.
func TestEventsRecordTheirOrigin(t *testing.T) {
	s := storetest.Open(t)
	ctx := context.Background()
	tk, _, err := s.CreateTicket(ctx, store.NewTicket{Creator: alice, TeamID: "t", Subject: "s", Source: store.SourceEmail})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AddResponse(ctx, tk.ID, store.AllTickets, store.NewResponse{Author: agent, Description: "hi", Source: store.SourceSlack}); err != nil {
		t.Fatal(err)
	}
	resolved, high := store.StatusResolved, store.PriorityHigh
	viaAPI := agent
	viaAPI.Via = store.SourceAPI
	if _, err := s.UpdateTicket(ctx, tk.ID, store.AllTickets, store.TicketUpdate{Status: &resolved, Priority: &high}, viaAPI); err != nil {
		t.Fatal(err)
	}
	// A customer's mail reopens the ticket: the reopen came by email.
	if _, _, err := s.AddResponse(ctx, tk.ID, store.AllTickets, store.NewResponse{Author: alice, Description: "again", Source: store.SourceEmail}); err != nil {
		t.Fatal(err)
	}
	var got []string
	var seqs []int64
	for _, e := range outboxOf(t, s, tk.ID) {
		got = append(got, string(e.Kind)+"<"+string(e.Origin))
		seqs = append(seqs, e.Seq)
	}
	want := "ticket.created<email response.added<slack status.changed<api priority.changed<api response.added<email status.changed<email"
	if strings.Join(got, " ") != want {
		t.Errorf("events\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Errorf("event order %v is not increasing", seqs)
			break
		}
	}
}

func TestThreadsBindUniquelyAndKeepMailKeys(t *testing.T) {
	s := storetest.Open(t)
	ctx := context.Background()
	a, b := newTicket(t, s, "t", "a"), newTicket(t, s, "t", "b")
	key := "C0123/1700000000.000100"
	for range 2 { // idempotent
		if err := s.BindThread(ctx, a.ID, store.ThreadSlackAgents, key); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.BindThread(ctx, b.ID, store.ThreadSlackAgents, key); !errors.Is(err, store.ErrConflict) {
		t.Errorf("a key already naming another ticket: %v, want ErrConflict", err)
	}
	// The same key under another kind is another thread.
	if err := s.BindThread(ctx, b.ID, store.ThreadSlackCustomer, key); err != nil {
		t.Fatal(err)
	}
	if id, err := s.TicketIDByThread(ctx, store.ThreadSlackAgents, key); err != nil || id != a.ID {
		t.Errorf("agents' thread names %v (%v), want %v", id, err, a.ID)
	}
	if id, err := s.TicketIDByThread(ctx, store.ThreadSlackCustomer, key); err != nil || id != b.ID {
		t.Errorf("customer's thread names %v (%v), want %v", id, err, b.ID)
	}
	if _, err := s.TicketIDByThread(ctx, store.ThreadSlackAgents, "C0123/1.2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown thread: %v", err)
	}
	if err := s.BindThread(ctx, a.ID, "fax", "1"); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("unknown kind: %v", err)
	}
	got, _ := s.Ticket(ctx, a.ID, store.AllTickets)
	if len(got.Threads) != 1 || got.Thread(store.ThreadSlackAgents) != key || got.V != a.V {
		t.Errorf("ticket threads %+v __v %d", got.Threads, got.V)
	}

	// Mail: a binding stored before threads existed ("msgid:" + the
	// normalized id) still threads, and a new one is stored the same way.
	if _, err := s.Database().Collection("keys").InsertOne(ctx, bson.D{{Key: "_id", Value: "msgid:legacy@mail.example"}, {Key: "ref", Value: b.ID}}); err != nil {
		t.Fatal(err)
	}
	if id, err := s.TicketIDByThread(ctx, store.ThreadMail, "<Legacy@Mail.example>"); err != nil || id != b.ID {
		t.Errorf("legacy Message-ID names %v (%v)", id, err)
	}
	if err := s.BindThread(ctx, a.ID, store.ThreadMail, "<New@Mail.example>"); err != nil {
		t.Fatal(err)
	}
	n, err := s.Database().Collection("keys").CountDocuments(ctx, bson.D{{Key: "_id", Value: "msgid:new@mail.example"}, {Key: "ref", Value: a.ID}})
	if err != nil || n != 1 {
		t.Errorf("mail binding not stored under its old key form (%d, %v)", n, err)
	}
	if id, err := s.TicketIDByMessageID(ctx, "new@mail.example"); err != nil || id != a.ID {
		t.Errorf("TicketIDByMessageID: %v %v", id, err)
	}
	got, _ = s.Ticket(ctx, a.ID, store.AllTickets)
	if len(got.MessageIDs) != 1 || got.MessageIDs[0] != "<New@Mail.example>" {
		t.Errorf("messageIds %v", got.MessageIDs)
	}
}

// A sink's outcome for a customer-facing response is announced once;
// internal notes and other events announce nothing.
func TestRecordDeliveryOutcome(t *testing.T) {
	s := storetest.Open(t)
	ctx := context.Background()
	join(t, s, "email", "slack")
	tk := newTicket(t, s, "t", "x")
	if _, _, err := s.AddResponse(ctx, tk.ID, store.AllTickets, store.NewResponse{Author: agent, Description: "note", Internal: true, Source: store.SourceSlack}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AddResponse(ctx, tk.ID, store.AllTickets, store.NewResponse{Author: agent, Description: "reply", Source: store.SourceSlack}); err != nil {
		t.Fatal(err)
	}
	events := outboxOf(t, s, tk.ID)
	if _, err := s.RelayAll(ctx); err != nil {
		t.Fatal(err)
	}
	for _, e := range events { // all three: ticket.created, the note, the reply
		if err := s.RecordDeliveryOutcome(ctx, &store.Delivery{ID: e.ID.Hex() + "/email", Sink: "email", Event: e}, true, ""); err != nil {
			t.Fatal(err)
		}
	}
	reply := events[2]
	out := outboxOf(t, s, tk.ID)
	if len(out) != 1 || out[0].Kind != store.EventResponseDelivered || out[0].Origin != store.SourceEmail ||
		out[0].ResponseID == nil || *out[0].ResponseID != *reply.ResponseID || out[0].Seq <= reply.Seq {
		t.Fatalf("outcome events %+v", out)
	}
	d := &store.Delivery{ID: reply.ID.Hex() + "/email", Sink: "email", Event: reply}
	if err := s.RecordDeliveryOutcome(ctx, d, false, "550 no such user"); err != nil {
		t.Fatal(err)
	}
	out = outboxOf(t, s, tk.ID)
	if len(out) != 2 || out[1].Kind != store.EventResponseUndelivered || out[1].Note != "550 no such user" {
		t.Fatalf("undelivered: %+v", out)
	}
	before, _ := s.CountDeliveries(ctx, store.DeliveryWaiting)
	if _, err := s.RelayAll(ctx); err != nil {
		t.Fatal(err)
	}
	after, _ := s.CountDeliveries(ctx, store.DeliveryWaiting)
	// Recording the same outcome again (a retry after a crash) queues nothing.
	if err := s.RecordDeliveryOutcome(ctx, d, false, "550 no such user"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RelayAll(ctx); err != nil {
		t.Fatal(err)
	}
	again, _ := s.CountDeliveries(ctx, store.DeliveryWaiting)
	if after != before+4 || again != after {
		t.Errorf("waiting deliveries %d -> %d -> %d, want +4 (2 events x 2 sinks) then unchanged", before, after, again)
	}
	if got, _ := s.Ticket(ctx, tk.ID, store.AllTickets); got.V != 2 {
		t.Errorf("an outcome changed the ticket: __v %d", got.V)
	}
}

// The sinks belong to the deployment: a daemon relays for all of them
// whatever it runs, the relay refuses to run without them, and a daemon
// with another set is refused while one with the recorded set is alive.
func TestDeploymentSinks(t *testing.T) {
	clock := newFakeClock()
	s, _ := storetest.OpenWith(t, store.OpenOptions{Now: clock.Now})
	ctx := context.Background()
	tk := newTicket(t, s, "t", "x")

	// Before joining, nothing is relayed and nothing is lost.
	if _, err := s.RelayAll(ctx); !errors.Is(err, store.ErrNotJoined) {
		t.Fatalf("relay before joining: %v", err)
	}
	if err := s.RunRelay(ctx, time.Hour); !errors.Is(err, store.ErrNotJoined) {
		t.Fatalf("RunRelay before joining: %v", err)
	}
	if len(outboxOf(t, s, tk.ID)) != 1 {
		t.Fatal("the event was dropped")
	}
	j, err := s.JoinDeployment(ctx, []string{"email"})
	if err != nil || !j.Changed || j.Previous != nil {
		t.Fatalf("first join: %+v %v", j, err)
	}
	// This daemon runs no email worker; the event is queued for email
	// anyway, since the deployment has it.
	if n, err := s.RelayAll(ctx); err != nil || n != 1 {
		t.Fatalf("relay: %d %v", n, err)
	}
	if ds, _ := s.Deliveries(ctx, store.DeliveryPending, 10); len(ds) != 1 || ds[0].Sink != "email" {
		t.Fatalf("queued %+v", ds)
	}

	// A second daemon without email (the old "RelayAll(nil)") is refused
	// while the first is alive, and relays nothing.
	other := secondDaemon(t, s, clock.Now)
	newTicket(t, s, "t", "y")
	if _, err := other.JoinDeployment(ctx, nil); !errors.Is(err, store.ErrConflict) || !strings.Contains(err.Error(), "[email]") {
		t.Fatalf("join with another set while a daemon is alive: %v", err)
	}
	if _, err := other.RelayAll(ctx); !errors.Is(err, store.ErrNotJoined) {
		t.Fatalf("refused daemon relays: %v", err)
	}
	// Same set: welcome, nothing changes.
	same := secondDaemon(t, s, clock.Now)
	if j, err := same.JoinDeployment(ctx, []string{"email", "email"}); err != nil || j.Changed {
		t.Fatalf("join with the same set: %+v %v", j, err)
	}
	same.LeaveDeployment(ctx)

	// Heartbeats keep the first daemon alive; once they stop (a crash),
	// a daemon with a new set adopts it after DaemonAlive.
	clock.Advance(store.DaemonAlive - time.Second)
	if err := s.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	clock.Advance(store.DaemonAlive - time.Second)
	if _, err := other.JoinDeployment(ctx, []string{"email", "slack"}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("join while the first daemon still beats: %v", err)
	}
	clock.Advance(2 * time.Second)
	j, err = other.JoinDeployment(ctx, []string{"slack", "email"})
	if err != nil || !j.Changed || strings.Join(j.Previous, ",") != "email" {
		t.Fatalf("adopting a new set: %+v %v", j, err)
	}
	if sinks, ok := other.Sinks(); !ok || strings.Join(sinks, ",") != "email,slack" {
		t.Errorf("sinks %v %v", sinks, ok)
	}

	// A daemon killed on this host (its process is gone) blocks nothing,
	// heartbeat or not: a restart with a new configuration is not refused.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if _, err := s.Database().Collection("daemons").InsertOne(ctx, bson.D{{Key: "_id", Value: "killed"}, {Key: "host", Value: host},
		{Key: "pid", Value: dead.Process.Pid}, {Key: "sinks", Value: bson.A{"webhook"}}, {Key: "heartbeatAt", Value: clock.Now()}}); err != nil {
		t.Fatal(err)
	}
	other.LeaveDeployment(ctx)
	if _, err := secondDaemon(t, s, clock.Now).JoinDeployment(ctx, []string{"email"}); err != nil {
		t.Errorf("a killed daemon on this host blocked the start: %v", err)
	}
}

// A ticket's deliveries to a sink go out one at a time in event order, and
// tickets take turns: a noisy ticket does not drain before a quiet one.
func TestDeliveriesKeepTicketOrderAndTakeTurns(t *testing.T) {
	clock := newFakeClock()
	s, _ := storetest.OpenWith(t, store.OpenOptions{Now: clock.Now})
	ctx := context.Background()
	join(t, s, "slack")
	noisy := newTicket(t, s, "t", "noisy")
	for i := range 3 {
		clock.Advance(time.Second)
		if _, _, err := s.AddResponse(ctx, noisy.ID, store.AllTickets, store.NewResponse{Author: agent, Description: string(rune('a' + i))}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.RelayTicket(ctx, noisy.ID); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	quiet := newTicket(t, s, "t", "quiet")
	if _, err := s.RelayTicket(ctx, quiet.ID); err != nil {
		t.Fatal(err)
	}

	var order []string
	claim := func() *store.Delivery {
		t.Helper()
		d, err := s.ClaimDelivery(ctx, "slack", time.Minute)
		if err != nil {
			t.Fatalf("claim after %v: %v", order, err)
		}
		name := "quiet"
		if d.TicketID == noisy.ID {
			name = "noisy"
		}
		order = append(order, name+":"+string(d.Event.Kind))
		return d
	}
	clock.Advance(time.Second)
	d := claim() // noisy's root
	// Backing off holds the ticket's later deliveries back.
	if err := s.RetryDelivery(ctx, d, errors.New("429"), clock.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	q := claim() // so the quiet one goes
	if err := s.CompleteDelivery(ctx, q); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ClaimDelivery(ctx, "slack", time.Minute); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a later delivery went before the ticket's first: %v (order %v)", err, order)
	}
	clock.Advance(time.Minute)
	d = claim() // the root again, then the replies in order
	for range 3 {
		clock.Advance(time.Second)
		if err := s.CompleteDelivery(ctx, d); err != nil {
			t.Fatal(err)
		}
		d = claim()
	}
	want := "noisy:ticket.created quiet:ticket.created noisy:ticket.created noisy:response.added noisy:response.added noisy:response.added"
	if got := strings.Join(order, " "); got != want {
		t.Errorf("claims\n got %s\nwant %s", got, want)
	}
	replies := []string{}
	tk, _ := s.Ticket(ctx, noisy.ID, store.AllTickets)
	for _, r := range tk.Response {
		replies = append(replies, r.ID.Hex())
	}
	if d.Event.ResponseID.Hex() != replies[2] {
		t.Errorf("last claimed response %s, want the last reply %s", d.Event.ResponseID.Hex(), replies[2])
	}

	// Turns: two noisy tickets and a quiet one relayed after them; once a
	// noisy ticket's head completes, its next goes behind the quiet one.
	clock.Advance(time.Second)
	if err := s.CompleteDelivery(ctx, d); err != nil {
		t.Fatal(err)
	}
	n2 := newTicket(t, s, "t", "n2")
	if _, _, err := s.AddResponse(ctx, n2.ID, store.AllTickets, store.NewResponse{Author: agent, Description: "more"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RelayTicket(ctx, n2.ID); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	q2 := newTicket(t, s, "t", "q2")
	if _, err := s.RelayTicket(ctx, q2.ID); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	first, err := s.ClaimDelivery(ctx, "slack", time.Minute)
	if err != nil || first.TicketID != n2.ID {
		t.Fatalf("first claim %+v %v", first, err)
	}
	clock.Advance(time.Second)
	if err := s.CompleteDelivery(ctx, first); err != nil {
		t.Fatal(err)
	}
	next, err := s.ClaimDelivery(ctx, "slack", time.Minute)
	if err != nil || next.TicketID != q2.ID {
		t.Errorf("after the noisy ticket's first, claimed %v (%v), want the quiet ticket's", next, err)
	}
	// A dead delivery does not hold its ticket back.
	if err := s.KillDelivery(ctx, next, errors.New("gone")); err != nil {
		t.Fatal(err)
	}
	if last, err := s.ClaimDelivery(ctx, "slack", time.Minute); err != nil || last.TicketID != n2.ID || last.Event.Kind != store.EventResponseAdded {
		t.Errorf("last claim %+v %v", last, err)
	}
}
