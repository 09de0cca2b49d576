package slackout

import (
	"strconv"
	"strings"
	"testing"

	"github.com/slack-go/slack"
	"github.com/ticketd/ticketd/notify"

	"github.com/ticketd/ticketd/internal/slackfake"
	"github.com/ticketd/ticketd/internal/slackui"
	"github.com/ticketd/ticketd/store"
)

const custCh = "C0HELP"

// slackTicket opens a ticket as intake does: from a customer's message in
// custCh, bound to it as the customer thread. It returns the message's ts.
func (e *env) slackTicket() (*store.Ticket, string) {
	e.t.Helper()
	opening := e.fake.MessageEvent(slackfake.MessageSpec{Channel: custCh, User: "U0CUST", Text: "help"})
	key := slackui.MessageKey(custCh, opening.MessageTS)
	tk, _, err := e.st.CreateTicket(e.ctx, store.NewTicket{
		Creator: store.Actor{ID: e.customer.ID, Type: store.CreatorCustomer, Via: store.SourceSlack},
		TeamID:  "acme", Subject: "help", Description: "help", Source: store.SourceSlack,
		SourceKey: slackui.SourceKeyPrefix + key, Threads: []store.ThreadRef{{Kind: store.ThreadSlackCustomer, Key: key}},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return tk, opening.MessageTS
}

// botReplies are the bot's messages in the customer's thread, text and blocks.
func (e *env) botReplies(t *testing.T, ts string) []string {
	var out []string
	for _, m := range e.fake.Replies(custCh, ts) {
		if m.User == slackfake.BotUserID {
			out = append(out, m.Text+"\n"+blocksText(t, m.Blocks))
		}
	}
	return out
}

func TestCustomerThreadShowsAckRepliesAndStatusOnce(t *testing.T) {
	e := newEnv(t)
	tk, ts := e.slackTicket()
	created := e.event(tk.ID, store.EventTicketCreated)
	e.mustDeliver(created)
	// A crash after Slack took the posts: the retry finds them.
	if err := e.deliver(created, 2); !done(err) {
		t.Fatal(err)
	}
	agent := store.Actor{ID: e.agent.ID, Type: store.CreatorAdmin, Via: store.SourceAPI}
	for _, r := range []store.NewResponse{
		{Author: agent, Description: "Reply by API", Source: store.SourceAPI},
		{Author: agent, Description: "Secret note", Source: store.SourceAPI, Internal: true},
		{Author: store.Actor{ID: e.customer.ID, Type: store.CreatorCustomer, Via: store.SourceSlack}, Description: "Customer in thread",
			Source: store.SourceSlack, SourceKey: slackui.SourceKey(custCh, "9.000001")},
		{Author: agent, Description: "Agent in the customer's thread", Source: store.SourceSlack, SourceKey: slackui.SourceKey(custCh, "9.000002")},
	} {
		if _, _, err := e.st.AddResponse(e.ctx, tk.ID, store.AllTickets, r); err != nil {
			t.Fatal(err)
		}
		ev := e.event(tk.ID, store.EventResponseAdded)
		e.mustDeliver(ev)
		if err := e.deliver(ev, 2); !done(err) {
			t.Fatal(err)
		}
	}
	high, resolved := store.PriorityHigh, store.StatusResolved
	if _, err := e.st.UpdateTicket(e.ctx, tk.ID, store.AllTickets, store.TicketUpdate{Priority: &high, Status: &resolved}, agent); err != nil {
		t.Fatal(err)
	}
	e.mustDeliver(e.event(tk.ID, store.EventPriorityChanged))
	e.mustDeliver(e.event(tk.ID, store.EventStatusChanged))

	got := e.botReplies(t, ts)
	want := []string{"#" + strconv.FormatInt(tk.RefID, 10), "Reply by API", "*resolved*"}
	if len(got) != len(want) {
		t.Fatalf("customer's thread: %d posts, want %d:\n%s", len(got), len(want), strings.Join(got, "\n---\n"))
	}
	for i, w := range want {
		if !strings.Contains(got[i], w) {
			t.Errorf("post %d lacks %q: %s", i, w, got[i])
		}
	}
	if !strings.Contains(got[1], "Bob Agent") || strings.Contains(got[1], "bob@support.example") {
		t.Errorf("reply not signed by the agent's name alone: %s", got[1])
	}
	// The agents' thread has everything but the agents' own Slack replies.
	root := e.rootTS(tk.ID)
	all := strings.Join(func() []string {
		var out []string
		for _, m := range e.replies(root) {
			out = append(out, blocksText(t, m.Blocks))
		}
		return out
	}(), "\n")
	for _, w := range []string{"Reply by API", "Secret note", "Customer in thread", "Agent in the customer's thread"} {
		if strings.Count(all, w) != 1 {
			t.Errorf("agents' thread shows %q %d times", w, strings.Count(all, w))
		}
	}
}

func TestCustomerAckSurvivesASlackOutage(t *testing.T) {
	e := newEnv(t)
	tk, ts := e.slackTicket()
	created := e.event(tk.ID, store.EventTicketCreated)
	// The root is out already (an earlier attempt); the acknowledgement
	// meets a 5xx, then Slack refuses connections.
	_, rootTS, err := e.a.api.PostMessageContext(e.ctx, slackfake.ChannelID, slack.MsgOptionText("root", false))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.BindThread(e.ctx, tk.ID, store.ThreadSlackAgents, slackui.MessageKey(slackfake.ChannelID, rootTS)); err != nil {
		t.Fatal(err)
	}
	e.fake.ServerErrorNext("chat.postMessage", 1, 503)
	if err := e.deliver(created, 1); err == nil || done(err) || notify.IsPermanent(err) {
		t.Fatalf("a 5xx on the acknowledgement: %v, want a retry", err)
	}
	e.fake.Refuse()
	if err := e.deliver(created, 2); err == nil || done(err) || notify.IsPermanent(err) {
		t.Fatalf("delivery during an outage: %v, want a retry", err)
	}
	e.fake.Restore()
	for attempt := 3; attempt <= 4; attempt++ {
		if err := e.deliver(created, attempt); !done(err) {
			t.Fatalf("attempt %d after the outage: %v", attempt, err)
		}
	}
	if got := e.botReplies(t, ts); len(got) != 1 || !strings.Contains(got[0], "#"+strconv.FormatInt(tk.RefID, 10)) {
		t.Errorf("after the outage: %q", got)
	}
	if n := len(e.fake.Roots(slackfake.ChannelID)); n != 1 {
		t.Errorf("%d root messages, want one", n)
	}
}

// A ticket opened by mail has no customer thread: nothing is posted for
// the customer in Slack.
func TestMailTicketPostsNothingForTheCustomer(t *testing.T) {
	e := newEnv(t)
	tk, _ := e.withRoot()
	if _, _, err := e.st.AddResponse(e.ctx, tk.ID, store.AllTickets, store.NewResponse{
		Author: store.Actor{ID: e.agent.ID, Type: store.CreatorAdmin}, Description: "By API", Source: store.SourceAPI}); err != nil {
		t.Fatal(err)
	}
	e.mustDeliver(e.event(tk.ID, store.EventResponseAdded))
	for _, c := range e.fake.CallsTo("chat.postMessage") {
		if ch := c.Params.Get("channel"); ch != slackfake.ChannelID {
			t.Errorf("posted in %s", ch)
		}
	}
}

// The sink's own outcome for an agent's Slack reply that it posted into
// the customer's thread marks the agent's message; for a ticket answered by
// mail it says nothing (the email sink's outcome does).
func TestSlackOutcomeMarksTheAgentsMessage(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct {
		slack     bool
		delivered bool
		want      []string
	}{
		{true, true, []string{ReactionDeliveredInSlack}},
		{true, false, []string{ReactionUndelivered}},
		{false, true, nil},
	} {
		tk := e.newTicket()
		if c.slack {
			tk, _ = e.slackTicket()
		}
		msg := e.fake.MessageEvent(slackfake.MessageSpec{Channel: slackfake.ChannelID, User: "U0BOB", Text: "Fixed"})
		if _, _, err := e.st.AddResponse(e.ctx, tk.ID, store.AllTickets, store.NewResponse{
			Author: store.Actor{ID: e.agent.ID, Type: store.CreatorAdmin, Via: store.SourceSlack}, Description: "Fixed",
			Source: store.SourceSlack, SourceKey: slackui.SourceKey(slackfake.ChannelID, msg.MessageTS)}); err != nil {
			t.Fatal(err)
		}
		added := e.event(tk.ID, store.EventResponseAdded)
		if err := e.st.RecordDeliveryOutcome(e.ctx, &store.Delivery{ID: added.ID.Hex() + "/" + Sink, Sink: Sink, Event: added}, c.delivered, "channel_not_found"); err != nil {
			t.Fatal(err)
		}
		kind := store.EventResponseDelivered
		if !c.delivered {
			kind = store.EventResponseUndelivered
		}
		e.mustDeliver(e.event(tk.ID, kind))
		m, _ := e.fake.Message(slackfake.ChannelID, msg.MessageTS)
		var got []string
		for _, r := range m.Reactions {
			got = append(got, r.Name)
		}
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("slack ticket %v, delivered %v: reactions %v, want %v", c.slack, c.delivered, got, c.want)
		}
	}
}

// The customer's edit before an answer shows in the agents' root, with one
// line in their thread; the customer is told nothing.
func TestEditedOpeningUpdatesTheRoot(t *testing.T) {
	e := newEnv(t)
	tk, ts := e.slackTicket()
	e.mustDeliver(e.event(tk.ID, store.EventTicketCreated))
	by := store.Actor{ID: e.customer.ID, Type: store.CreatorCustomer, Via: store.SourceSlack}
	if _, edited, err := e.st.EditOpening(e.ctx, tk.ID, store.AllTickets, "Printer smokes", "Printer smokes, badly", by); err != nil || !edited {
		t.Fatal(edited, err)
	}
	ev := e.event(tk.ID, store.EventTicketEdited)
	e.mustDeliver(ev)
	if err := e.deliver(ev, 2); !done(err) {
		t.Fatal(err)
	}
	rootTS := e.rootTS(tk.ID)
	root, _ := e.fake.Message(slackfake.ChannelID, rootTS)
	if text := blocksText(t, root.Blocks); !strings.Contains(text, "Printer smokes, badly") {
		t.Errorf("root not updated:\n%s", text)
	}
	var lines int
	for _, m := range e.replies(rootTS) {
		if strings.Contains(blocksText(t, m.Blocks), "edited the message that opened the ticket") {
			lines++
		}
	}
	if lines != 1 {
		t.Errorf("%d edit lines in the agents' thread, want 1", lines)
	}
	if n := len(e.botReplies(t, ts)); n != 1 { // the acknowledgement only
		t.Errorf("%d posts in the customer's thread", n)
	}
}
