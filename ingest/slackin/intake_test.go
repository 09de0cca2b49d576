package slackin

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ticketd/ticketd/internal/slackfake"
	"github.com/ticketd/ticketd/internal/slackui"
	"github.com/ticketd/ticketd/store"
	"github.com/ticketd/ticketd/store/storetest"
)

// Intake test people and channels (besides the desk's).
const (
	intakeCh  = "C0INTAKE"
	dmCh      = "D0GUS"
	memberID  = "U0MEMBER" // a workspace member who is no agent
	strangerC = "C0UNKNOWN"
)

// newIntakeDesk is a desk whose bridge takes customers' messages in
// intakeCh and in direct messages.
func newIntakeDesk(t *testing.T, configure func(*Options)) *desk {
	d := newDesk(t, func(o *Options) {
		o.IntakeChannels = []string{intakeCh}
		o.DirectMessages = true
		if configure != nil {
			configure(o)
		}
	})
	d.f.AddUser(slackfake.User{ID: memberID, RealName: "Mel Member", Email: "mel@support.test"})
	d.f.AddChannel(intakeCh, "help")
	return d
}

// post is a message event delivered to the bridge.
func (d *desk) post(spec slackfake.MessageSpec) slackfake.Envelope {
	d.t.Helper()
	env := d.f.MessageEvent(spec)
	d.mustDeliver(env)
	return env
}

// opened is the ticket a message opened, or nil.
func (d *desk) opened(channel, ts string) *store.Ticket {
	d.t.Helper()
	id, err := d.st.TicketIDByThread(context.Background(), store.ThreadSlackCustomer, slackui.MessageKey(channel, ts))
	if err != nil {
		return nil
	}
	tk, err := d.st.Ticket(context.Background(), id, store.AllTickets)
	if err != nil {
		d.t.Fatal(err)
	}
	return tk
}

func (d *desk) ticketCount() int64 {
	d.t.Helper()
	_, n, err := d.st.ListTickets(context.Background(), store.AllTickets, store.ListQuery{})
	if err != nil {
		d.t.Fatal(err)
	}
	return n
}

func TestIntakeOpensTicketsForCustomersOnly(t *testing.T) {
	d := newIntakeDesk(t, nil)
	before := d.ticketCount() // the desk's own ticket
	// Ann is an agent (she acted in the agents' channel): her top-level
	// message in a customer channel is not a ticket.
	d.mustDeliver(d.reply(annID, "hello"))
	ignored := []slackfake.MessageSpec{
		{Channel: intakeCh, User: annID, Text: "Maintenance tonight"},
		{Channel: intakeCh, User: otherBotID, BotID: "B0OTHER", Text: "beep", SubType: "bot_message"},
		{Channel: intakeCh, User: slackfake.BotUserID, BotID: slackfake.BotID, Text: "our own"},
		{Channel: intakeCh, User: guestID, Text: "<@U0GUEST> has joined the channel", SubType: "channel_join"},
		{Channel: intakeCh, User: guestID, Text: "topic", SubType: "channel_topic"},
		{Channel: strangerC, User: guestID, Text: "not an intake channel"},
		{Channel: intakeCh, ThreadTS: "1.000001", User: guestID, Text: "a thread that is no ticket's"},
	}
	for _, spec := range ignored {
		d.post(spec)
	}
	if n := d.ticketCount(); n != before {
		t.Fatalf("%d tickets opened by agents, bots, joins or unknown channels", n-before)
	}
	// A member of the workspace who is no agent is a customer (a help
	// channel of the workspace), and so is a Slack Connect user.
	mel := d.post(slackfake.MessageSpec{Channel: intakeCh, User: memberID, Text: "VPN down"})
	gus := d.post(slackfake.MessageSpec{Channel: intakeCh, User: guestID, Text: "Invoice wrong"})
	for _, c := range []struct {
		env  slackfake.Envelope
		team string
	}{{mel, "slack:" + slackfake.TeamID}, {gus, "slack:T0CUSTOMER"}} {
		tk := d.opened(intakeCh, c.env.MessageTS)
		if tk == nil || tk.CreatorType != store.CreatorCustomer || tk.TeamID != c.team {
			t.Errorf("ticket of %s: %+v", c.env.MessageTS, tk)
		}
	}
	// Direct messages, when enabled.
	dm := d.post(slackfake.MessageSpec{Channel: dmCh, User: guestID, Text: "Private question"})
	if d.opened(dmCh, dm.MessageTS) == nil {
		t.Error("a direct message opened no ticket")
	}
}

func TestIntakeDirectMessagesOff(t *testing.T) {
	d := newIntakeDesk(t, func(o *Options) { o.DirectMessages = false })
	dm := d.post(slackfake.MessageSpec{Channel: dmCh, User: guestID, Text: "Private question"})
	if d.opened(dmCh, dm.MessageTS) != nil {
		t.Error("a direct message opened a ticket with directMessages off")
	}
}

func TestIntakeAgentReplyInCustomerThreadIsCustomerFacing(t *testing.T) {
	d := newIntakeDesk(t, nil)
	open := d.post(slackfake.MessageSpec{Channel: intakeCh, User: guestID, Text: "Help"})
	d.mustDeliver(d.reply(annID, "hello")) // Ann becomes a known agent
	d.post(slackfake.MessageSpec{Channel: intakeCh, ThreadTS: open.MessageTS, User: annID, Text: "// not a note here"})
	tk := d.opened(intakeCh, open.MessageTS)
	if len(tk.Response) != 1 {
		t.Fatalf("responses %+v", tk.Response)
	}
	if r := tk.Response[0]; r.CreatorType != store.CreatorAdmin || r.Internal || r.CreatorID != d.agentBySlack(annID).ID {
		t.Errorf("agent reply in the customer's thread: %+v", r)
	}
}

func TestIntakeLongMessageAndFiles(t *testing.T) {
	d := newIntakeDesk(t, func(o *Options) { o.Limits = store.Limits{MaxDescription: 100} })
	f := d.f.AddFile("log.txt", "text/plain", []byte("the log"))
	long := strings.Repeat("word ", 300)
	env := d.post(slackfake.MessageSpec{Channel: intakeCh, User: guestID, Text: long, Files: []string{f.ID}})
	tk := d.opened(intakeCh, env.MessageTS)
	if tk == nil {
		t.Fatal("no ticket")
	}
	if n := len([]rune(tk.Description)); n > 100 || !strings.Contains(tk.Description, fullTextName) {
		t.Errorf("description of %d characters: %q", n, tk.Description)
	}
	if n := len([]rune(tk.Subject)); n > d.st.Limits().MaxSubject || !strings.HasSuffix(tk.Subject, "…") {
		t.Errorf("subject %q", tk.Subject)
	}
	names := map[string]bool{}
	for _, a := range tk.Attachments {
		names[a.Filename] = true
		got, err := d.st.Attachment(context.Background(), a.ID, store.TeamScope(tk.TeamID))
		if err != nil || len(got.Data) == 0 {
			t.Errorf("attachment %s not readable in the ticket's team: %v", a.Filename, err)
		}
	}
	if !names["log.txt"] || !names[fullTextName] {
		t.Errorf("attachments %v", names)
	}
	whole, _ := d.st.Attachment(context.Background(), tk.Attachments[len(tk.Attachments)-1].ID, store.AllTickets)
	if string(whole.Data) != strings.TrimSpace(long) && string(whole.Data) != long {
		t.Errorf("the original text was not kept whole (%d bytes)", len(whole.Data))
	}
}

func TestIntakeEditsAndDeletions(t *testing.T) {
	d := newIntakeDesk(t, nil)
	open := d.post(slackfake.MessageSpec{Channel: intakeCh, User: guestID, Text: "Printr broken"})
	d.mustDeliver(d.f.MessageChangedEvent(intakeCh, open.MessageTS, "Printer broken\nreally"))
	tk := d.opened(intakeCh, open.MessageTS)
	if tk.Subject != "Printer broken" || tk.Description != "Printer broken\nreally" {
		t.Fatalf("edit before an answer: %q / %q", tk.Subject, tk.Description)
	}
	// An agent answers in the customer's thread; a later edit is recorded.
	d.mustDeliver(d.reply(annID, "hello"))
	d.post(slackfake.MessageSpec{Channel: intakeCh, ThreadTS: open.MessageTS, User: annID, Text: "On it"})
	d.mustDeliver(d.f.MessageChangedEvent(intakeCh, open.MessageTS, "Something else entirely"))
	more := d.post(slackfake.MessageSpec{Channel: intakeCh, ThreadTS: open.MessageTS, User: guestID, Text: "More detail"})
	d.mustDeliver(d.f.MessageDeletedEvent(intakeCh, more.MessageTS))
	tk = d.opened(intakeCh, open.MessageTS)
	if tk.Description != "Printer broken\nreally" || len(tk.Response) != 2 || tk.Response[1].Description != "More detail" {
		t.Fatalf("a late edit or a deletion changed the ticket: %q %+v", tk.Description, tk.Response)
	}
	logs, err := d.st.Logs(context.Background(), tk.ID, store.AllTickets)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range logs {
		lines = append(lines, l.ActionTaken)
	}
	all := strings.Join(lines, "\n")
	for _, want := range []string{"edited by the customer before an agent answered", "message that opened the ticket edited", "deleted by its author"} {
		if !strings.Contains(all, want) {
			t.Errorf("audit log lacks %q:\n%s", want, all)
		}
	}
}

func TestIntakeRateLimitPerWriter(t *testing.T) {
	// The store keeps the count, in clock-hour windows, by its own clock.
	var now atomic.Pointer[time.Time]
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	now.Store(&start)
	st, _ := storetest.OpenWith(t, store.OpenOptions{Now: func() time.Time { return *now.Load() }})
	d := newIntakeDesk(t, func(o *Options) { o.NewTicketsPerHour = 2; o.Store = st })
	before := d.ticketCount()
	first := d.post(slackfake.MessageSpec{Channel: intakeCh, User: guestID, Text: "ticket a"})
	for _, text := range []string{"ticket b", "ticket c"} {
		d.post(slackfake.MessageSpec{Channel: intakeCh, User: guestID, Text: text})
	}
	if n := d.ticketCount() - before; n != 2 {
		t.Fatalf("%d tickets, want 2 within the hour", n)
	}
	if eph := d.f.Ephemerals(); len(eph) != 1 || eph[0].User != guestID {
		t.Errorf("the refused writer was not told: %+v", eph)
	}
	// A redelivery of an opened message does not count; another writer
	// is not limited by the first; the next hour starts afresh.
	d.mustDeliver(first)
	d.post(slackfake.MessageSpec{Channel: intakeCh, User: memberID, Text: "mine"})
	next := start.Add(time.Hour)
	now.Store(&next)
	d.post(slackfake.MessageSpec{Channel: intakeCh, User: guestID, Text: "after the hour"})
	if n := d.ticketCount() - before; n != 4 {
		t.Errorf("%d tickets, want 4 in the next hour", n)
	}
}
