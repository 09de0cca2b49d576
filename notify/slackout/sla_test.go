package slackout

import (
	"strings"
	"testing"
	"time"

	"github.com/ticketd/ticketd/internal/slackfake"
	"github.com/ticketd/ticketd/internal/slackui"
	"github.com/ticketd/ticketd/notify"
	"github.com/ticketd/ticketd/store"
)

const escalationChannel = "C0ESCALATE"

// assign gives the ticket to the env's agent (linked to Slack user U0BOB).
func (e *env) assign(tk *store.Ticket) {
	e.t.Helper()
	if _, err := e.st.UpdateTicket(e.ctx, tk.ID, store.AllTickets, store.TicketUpdate{AssigneeID: &e.agent.ID},
		store.Actor{ID: e.agent.ID, Type: store.CreatorAdmin}); err != nil {
		e.t.Fatal(err)
	}
}

// The reminder goes into the ticket's thread, mentioning the assignee's
// Slack user, once even when the delivery is retried.
func TestReminderMentionsTheAssigneeInTheThread(t *testing.T) {
	e := newEnv(t)
	tk, root := e.withRoot()
	e.assign(tk)
	due := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	if ok, err := e.st.RecordFirstResponseReminder(e.ctx, tk.ID, due); err != nil || !ok {
		t.Fatalf("record: %v %v", ok, err)
	}
	ev := e.event(tk.ID, store.EventSLAReminder)
	e.mustDeliver(ev)
	if err := e.deliver(ev, 2); err != nil { // a retry after a lost answer
		t.Fatal(err)
	}
	var lines []string
	for _, m := range e.replies(root) {
		if _, eid, _ := slackui.ParseMetadata(*m.Metadata); eid == ev.ID.Hex() {
			lines = append(lines, m.Text)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("%d reminder posts, want 1: %q", len(lines), lines)
	}
	if !strings.Contains(lines[0], "<@U0BOB>") || !strings.Contains(lines[0], "<!date^1796119200^") {
		t.Errorf("reminder %q lacks the assignee's mention or the due date", lines[0])
	}
}

// A reminder whose ticket was answered before it went out is not posted.
func TestReminderAnsweredMeanwhileIsSkipped(t *testing.T) {
	e := newEnv(t)
	tk, root := e.withRoot()
	if ok, err := e.st.RecordFirstResponseReminder(e.ctx, tk.ID, time.Now()); err != nil || !ok {
		t.Fatalf("record: %v %v", ok, err)
	}
	ev := e.event(tk.ID, store.EventSLAReminder)
	if _, _, err := e.st.AddResponse(e.ctx, tk.ID, store.AllTickets, store.NewResponse{
		Author: store.Actor{ID: e.agent.ID, Type: store.CreatorAdmin}, Description: "on it", Source: store.SourceAPI}); err != nil {
		t.Fatal(err)
	}
	if err := e.deliver(ev, 1); !notify.IsSkipped(err) {
		t.Fatalf("deliver: %v, want skipped", err)
	}
	if n := len(e.replies(root)); n != 0 {
		t.Errorf("%d posts in the thread", n)
	}
}

// A missed target is said in the thread and posted, with a link to the
// thread, in the escalation channel; a retry after the escalation post
// failed posts it there once and does not repeat the thread's line.
func TestBreachGoesToThreadAndEscalationChannelOnce(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.EscalationChannel = escalationChannel })
	tk, root := e.withRoot()
	if ok, err := e.st.RecordFirstResponseBreach(e.ctx, tk.ID, time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)); err != nil || !ok {
		t.Fatalf("record: %v %v", ok, err)
	}
	ev := e.event(tk.ID, store.EventSLABreached)
	// The escalation channel does not exist yet: the thread's line goes
	// out, the escalation post fails for good (an operator fixes it and
	// requeues the dead letter).
	if err := e.deliver(ev, 1); !notify.IsPermanent(err) {
		t.Fatalf("first attempt: %v, want a permanent failure", err)
	}
	e.fake.AddChannel(escalationChannel, "escalations")
	for attempt := 2; attempt <= 3; attempt++ {
		if err := e.deliver(ev, attempt); err != nil {
			t.Fatalf("attempt %d: %v", attempt, err)
		}
	}
	thread := e.replies(root)
	if len(thread) != 1 || !strings.Contains(thread[0].Text, "First-response target missed") || !strings.Contains(thread[0].Text, "nobody") {
		t.Fatalf("thread %+v, want one missed-target line naming nobody", thread)
	}
	posts := e.fake.Messages(escalationChannel)
	if len(posts) != 1 {
		t.Fatalf("%d escalation posts, want 1", len(posts))
	}
	p := posts[0]
	link := "https://" + slackfake.TeamDomain + ".slack.com/archives/" + slackfake.ChannelID + "/p" + strings.ReplaceAll(root, ".", "")
	if !strings.Contains(p.Text, link) || !strings.Contains(p.Text, "missed its first-response target") || !strings.Contains(p.Text, "*low*") {
		t.Errorf("escalation post %q lacks the thread's link (%s), the words or the priority", p.Text, link)
	}
	if tid, eid, ok := slackui.ParseMetadata(*p.Metadata); !ok || tid != tk.ID.Hex() || eid != ev.ID.Hex() {
		t.Errorf("escalation metadata %+v", p.Metadata)
	}
}
