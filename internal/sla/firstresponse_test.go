package sla

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ticketd/ticketd/internal/slackfake"
	"github.com/ticketd/ticketd/internal/testwait"
	"github.com/ticketd/ticketd/notify"
	"github.com/ticketd/ticketd/notify/slackout"
	"github.com/ticketd/ticketd/store"
	"github.com/ticketd/ticketd/store/storetest"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// An urgent ticket (1 business hour) gets its reminder at 80% and its
// breach at the target, each once: runs repeated, two daemons at once,
// and a restart (a new Store and job on the same data) add nothing.
func TestReminderAndBreachOnceAcrossRunsDaemonsAndRestarts(t *testing.T) {
	e := newEnv(t)
	tk := e.ticket("down", store.PriorityUrgent)
	job := e.firstResponse(e.st)

	e.at(1, 9, 47)
	e.run(job)
	if n := e.events(e.st, tk, store.EventSLAReminder); n != 0 {
		t.Fatalf("%d reminders before 80%% of the target", n)
	}
	e.at(1, 9, 48)
	other := e.firstResponse(e.st) // a second daemon's job
	var wg sync.WaitGroup
	for _, j := range []*FirstResponse{job, other, job} {
		wg.Add(1)
		go func() { defer wg.Done(); e.run(j) }()
	}
	wg.Wait()
	if n := e.events(e.st, tk, store.EventSLAReminder); n != 1 {
		t.Fatalf("%d reminders, want 1", n)
	}
	if s, o := job.Stats(), other.Stats(); s.Reminded+o.Reminded != 1 {
		t.Errorf("stats %+v and %+v: want one reminder between them", s, o)
	}

	// Restart: a new Store and a new job on the same data.
	if err := e.st.Close(e.ctx); err != nil {
		t.Fatal(err)
	}
	st2, _ := storetest.OpenWith(t, store.OpenOptions{Now: e.clock.Now, URI: e.opts.URI, Database: e.opts.Database, DataDir: e.opts.DataDir})
	restarted := e.firstResponse(st2)
	e.run(restarted)
	if n := e.events(st2, tk, store.EventSLAReminder); n != 1 {
		t.Fatalf("after restart: %d reminders, want 1", n)
	}

	e.at(1, 9, 59)
	e.run(restarted)
	if n := e.events(st2, tk, store.EventSLABreached); n != 0 {
		t.Fatalf("breach before the target")
	}
	e.at(1, 10, 0)
	e.run(restarted)
	e.run(e.firstResponse(st2))
	if n := e.events(st2, tk, store.EventSLABreached); n != 1 {
		t.Fatalf("%d breaches, want 1", n)
	}
	got, err := st2.Ticket(e.ctx, tk.ID, store.AllTickets)
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 12, 1, 10, 0, 0, 0, e.berlin)
	if fr := got.FirstResponse; fr == nil || fr.BreachedAt == nil || fr.DueAt == nil || !fr.DueAt.Equal(want) {
		t.Fatalf("firstResponse %+v, want dueAt %v and breachedAt", got.FirstResponse, want)
	}
	if s := restarted.Stats(); s.Breached != 1 {
		t.Errorf("stats %+v, want 1 breach", s)
	}
}

// Targets count business hours: a high-priority ticket (4 h) opened on
// Friday at 16:30 is due on Monday at 12:30, not on Friday evening; one
// opened on Saturday starts counting on Monday morning. An answered
// ticket is neither reminded nor breached.
func TestTargetsCountBusinessHours(t *testing.T) {
	e := newEnv(t)
	job := e.firstResponse(e.st)
	e.at(4, 16, 30) // Friday
	friday := e.ticket("friday", store.PriorityHigh)
	answered := e.ticket("answered", store.PriorityUrgent)
	if _, _, err := e.st.AddResponse(e.ctx, answered.ID, store.AllTickets, store.NewResponse{
		Author: store.Actor{ID: e.agent.ID, Type: store.CreatorAdmin}, Description: "on it"}); err != nil {
		t.Fatal(err)
	}
	e.at(5, 11, 0) // Saturday
	saturday := e.ticket("saturday", store.PriorityUrgent)

	e.at(7, 9, 47) // Monday
	e.run(job)
	if n := e.events(e.st, saturday, store.EventSLAReminder); n != 0 {
		t.Errorf("saturday's urgent ticket reminded after 47 business minutes")
	}
	e.at(7, 11, 41)
	e.run(job)
	if n := e.events(e.st, friday, store.EventSLAReminder); n != 0 {
		t.Errorf("friday's ticket reminded before 80%% (11:42)")
	}
	if n := e.events(e.st, saturday, store.EventSLABreached); n != 1 {
		t.Errorf("saturday's urgent ticket: %d breaches at 11:41 (due 10:00)", n)
	}
	e.at(7, 12, 29)
	e.run(job)
	if r, b := e.events(e.st, friday, store.EventSLAReminder), e.events(e.st, friday, store.EventSLABreached); r != 1 || b != 0 {
		t.Errorf("friday's ticket at 12:29: %d reminders, %d breaches; want 1, 0", r, b)
	}
	e.at(7, 12, 30)
	e.run(job)
	if n := e.events(e.st, friday, store.EventSLABreached); n != 1 {
		t.Errorf("friday's ticket at 12:30: %d breaches, want 1", n)
	}
	if r, b := e.events(e.st, answered, store.EventSLAReminder), e.events(e.st, answered, store.EventSLABreached); r+b != 0 {
		t.Errorf("answered ticket: %d reminders, %d breaches", r, b)
	}
}

// A ticket answered before respondedAt existed (older data) is recorded
// as answered by the job, and leaves the candidates, instead of breaching.
func TestOlderAnsweredTicketsAreBackfilled(t *testing.T) {
	e := newEnv(t)
	tk := e.ticket("old", store.PriorityUrgent)
	if _, _, err := e.st.AddResponse(e.ctx, tk.ID, store.AllTickets, store.NewResponse{
		Author: store.Actor{ID: e.agent.ID, Type: store.CreatorAdmin}, Description: "hi"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Database().Collection("tickets").UpdateOne(e.ctx, bson.D{{Key: "_id", Value: tk.ID}},
		bson.D{{Key: "$unset", Value: bson.D{{Key: "firstResponse", Value: ""}}}}); err != nil {
		t.Fatal(err)
	}
	e.at(2, 9, 0)
	job := e.firstResponse(e.st)
	e.run(job)
	if s := job.Stats(); s.Backfilled != 1 || s.Breached != 0 {
		t.Fatalf("stats %+v, want 1 backfilled and no breach", s)
	}
	c, err := e.st.FirstResponseCandidates(e.ctx, 10)
	if err != nil || len(c) != 0 {
		t.Fatalf("candidates %d, %v", len(c), err)
	}
}

// The whole way: the job records, the relay queues, the Slack sink under
// the shared runner posts the reminder (mentioning the assignee) and the
// breach into the ticket's thread, and the breach into the escalation
// channel, each once.
func TestReminderAndBreachReachSlackThroughTheSink(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	if _, err := e.st.JoinDeployment(ctx, []string{slackout.Sink}); err != nil {
		t.Fatal(err)
	}
	const escalation = "C0ESCALATE"
	e.fake.AddChannel(escalation, "escalations")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := slackout.New(slackout.Options{Client: e.client, Channel: slackfake.ChannelID, BotUserID: slackfake.BotUserID,
		EscalationChannel: escalation, Store: e.st, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	r, err := notify.NewRunner(notify.Options{Sink: slackout.Sink, Now: e.clock.Now, After: e.clock.After}, e.st, a, log)
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- r.Run(ctx) }()
	defer func() { cancel(); <-stopped }()
	relay := func() {
		t.Helper()
		if _, err := e.st.RelayAll(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// drained waits until the runner has completed every delivery, so the
	// job's writes do not race the runner's (the embedded server refuses
	// one of two racing writes with SQLITE_BUSY).
	drained := func() {
		t.Helper()
		testwait.For(t, "every delivery completed", func() bool {
			p, err1 := e.st.CountDeliveries(ctx, store.DeliveryPending)
			w, err2 := e.st.CountDeliveries(ctx, store.DeliveryWaiting)
			return err1 == nil && err2 == nil && p+w == 0
		})
	}

	tk := e.ticket("cannot log in", store.PriorityUrgent)
	if _, err := e.st.UpdateTicket(ctx, tk.ID, store.AllTickets, store.TicketUpdate{AssigneeID: &e.agent.ID},
		store.Actor{ID: e.agent.ID, Type: store.CreatorAdmin}); err != nil {
		t.Fatal(err)
	}
	relay()
	var root string
	e.fake.Until(t, "root message and assignment line", func() bool {
		roots := e.fake.Roots(slackfake.ChannelID)
		if len(roots) == 1 {
			root = roots[0].TS
		}
		return root != "" && len(e.fake.Replies(slackfake.ChannelID, root)) == 1
	})
	job := e.firstResponse(e.st)
	drained()
	e.at(1, 9, 50)
	e.run(job)
	relay()
	e.fake.Until(t, "reminder in the thread", func() bool { return len(e.fake.Replies(slackfake.ChannelID, root)) == 2 })
	drained()
	e.at(1, 10, 5)
	e.run(job)
	e.run(job)
	relay()
	e.fake.Until(t, "breach in the thread and the escalation channel", func() bool {
		return len(e.fake.Replies(slackfake.ChannelID, root)) == 3 && len(e.fake.Messages(escalation)) == 1
	})
	replies := e.fake.Replies(slackfake.ChannelID, root)
	if !strings.Contains(replies[1].Text, "<@U0BOB>") || !strings.Contains(replies[1].Text, "first answer") {
		t.Errorf("reminder %q does not name the assignee", replies[1].Text)
	}
	if !strings.Contains(replies[2].Text, "First-response target missed") {
		t.Errorf("breach line %q", replies[2].Text)
	}
	if !strings.Contains(e.fake.Messages(escalation)[0].Text, "#1 cannot log in") {
		t.Errorf("escalation post %q does not name the ticket", e.fake.Messages(escalation)[0].Text)
	}
	// Nothing more is queued: each was delivered once.
	drained()
	if n := len(e.fake.Replies(slackfake.ChannelID, root)); n != 3 {
		t.Errorf("%d thread replies, want 3", n)
	}
	if s := r.Stats(); s.Dead != 0 {
		t.Errorf("runner stats %+v", s)
	}
}
