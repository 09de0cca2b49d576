package slackin

import (
	"context"
	"errors"
	"testing"

	"github.com/slack-go/slack"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/internal/slackfake"
	"github.com/ticketd/ticketd/internal/slackui"
	"github.com/ticketd/ticketd/store"
)

// unboundRoot posts a root message for a new ticket as the sink does
// (metadata included when withMetadata) but does not bind it: the window
// between the sink's post and its bind, or a crash in it.
func unboundRoot(t *testing.T, d *desk, withMetadata bool) (*store.Ticket, string) {
	t.Helper()
	tk := newTicketLike(t, d)
	opts := []slack.MsgOption{slack.MsgOptionText(slackui.RootText(tk), false)}
	if withMetadata {
		opts = append(opts, slack.MsgOptionMetadata(slackui.Metadata(tk.ID, bson.NewObjectID())))
	}
	_, ts, err := d.api.PostMessageContext(context.Background(), slackfake.ChannelID, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return tk, ts
}

// boundTo returns the ticket the agents' thread channel/ts is bound to,
// NilObjectID when none.
func boundTo(t *testing.T, d *desk, ts string) bson.ObjectID {
	t.Helper()
	id, err := d.st.TicketIDByThread(context.Background(), store.ThreadSlackAgents, slackui.MessageKey(slackfake.ChannelID, ts))
	if errors.Is(err, store.ErrNotFound) {
		return bson.NilObjectID
	}
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// historyLookups counts the conversations.history calls for the message at ts.
func historyLookups(d *desk, ts string) int {
	n := 0
	for _, c := range d.f.CallsTo("conversations.history") {
		if c.Params.Get("oldest") == ts && c.Params.Get("latest") == ts {
			n++
		}
	}
	return n
}

func (d *desk) replyIn(rootTS, user, text string) slackfake.Envelope {
	return d.f.MessageEvent(slackfake.MessageSpec{ThreadTS: rootTS, User: user, Text: text})
}

func responsesOf(t *testing.T, d *desk, id bson.ObjectID) []store.Response {
	t.Helper()
	tk, err := d.st.Ticket(context.Background(), id, store.AllTickets)
	if err != nil {
		t.Fatal(err)
	}
	return tk.Response
}

// A reply in the thread of a root the sink posted but has not bound yet is
// the agent's response all the same, and binds the root.
func TestReplyInUnboundRootBindsIt(t *testing.T) {
	d := newDesk(t, nil)
	tk, ts := unboundRoot(t, d, true)

	env := d.replyIn(ts, annID, "On it.")
	d.mustDeliver(env)
	rs := responsesOf(t, d, tk.ID)
	if len(rs) != 1 || rs[0].CreatorType != store.CreatorAdmin || rs[0].Source != store.SourceSlack ||
		rs[0].Description != "On it." || rs[0].SourceKey != slackui.SourceKey(slackfake.ChannelID, env.MessageTS) {
		t.Fatalf("responses: %+v", rs)
	}
	if got := boundTo(t, d, ts); got != tk.ID {
		t.Fatalf("root bound to %s, want ticket %s", got.Hex(), tk.ID.Hex())
	}
	// The sink's own bind afterwards is no conflict.
	if err := d.st.BindThread(context.Background(), tk.ID, store.ThreadSlackAgents, slackui.MessageKey(slackfake.ChannelID, ts)); err != nil {
		t.Errorf("sink's bind after ours: %v", err)
	}
	// Bound now: the next reply costs no lookup.
	d.mustDeliver(d.replyIn(ts, annID, "Fixed."))
	if n := len(responsesOf(t, d, tk.ID)); n != 2 {
		t.Errorf("responses after a second reply: %d", n)
	}
	if n := historyLookups(d, ts); n != 1 {
		t.Errorf("history lookups for the root: %d, want 1", n)
	}
}

// Reactions and buttons on an unbound root act on its ticket too.
func TestReactionAndButtonOnUnboundRoot(t *testing.T) {
	d := newDesk(t, nil)
	tk, ts := unboundRoot(t, d, true)
	d.mustDeliver(d.f.ReactionAddedEvent(annID, "eyes", slackfake.ChannelID, ts))
	got, err := d.st.Ticket(context.Background(), tk.ID, store.AllTickets)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != store.StatusInProgress {
		t.Fatalf("after :eyes: on an unbound root: %s", got.Status)
	}

	tk2, ts2 := unboundRoot(t, d, true)
	d.mustDeliver(d.f.BlockActionEnvelope(annID, slackfake.ChannelID, ts2, slackfake.Action{
		ActionID: slackui.ActionPriority, BlockID: slackui.BlockActions, Type: "static_select",
		Value: slackui.Value(tk2.ID, string(store.PriorityHigh))}))
	if got, _ := d.st.Ticket(context.Background(), tk2.ID, store.AllTickets); got.Priority != store.PriorityHigh {
		t.Errorf("after the select on an unbound root: %s", got.Priority)
	}
	if boundTo(t, d, ts) != tk.ID || boundTo(t, d, ts2) != tk2.ID {
		t.Errorf("roots not bound")
	}
}

// A root of the bot's without ticket metadata is no ticket's thread: asked
// about once, then remembered.
func TestUnboundRootWithoutMetadataIgnored(t *testing.T) {
	d := newDesk(t, nil)
	tk, ts := unboundRoot(t, d, false)
	d.mustDeliver(d.replyIn(ts, annID, "hello?"))
	d.mustDeliver(d.replyIn(ts, annID, "anyone?"))
	if rs := responsesOf(t, d, tk.ID); len(rs) != 0 {
		t.Errorf("stored: %+v", rs)
	}
	if got := boundTo(t, d, ts); !got.IsZero() {
		t.Errorf("bound to %s", got.Hex())
	}
	if n := historyLookups(d, ts); n != 1 {
		t.Errorf("history lookups for the thread: %d, want 1 (then remembered)", n)
	}
}

// Metadata naming a ticket on a message someone else posted never binds.
func TestForgedMetadataNeverBinds(t *testing.T) {
	d := newDesk(t, nil)
	tk := newTicketLike(t, d)
	md := slackui.Metadata(tk.ID, bson.NewObjectID())
	for name, spec := range map[string]slackfake.MessageSpec{
		"human":     {User: annID, Text: "looks like a root", Metadata: &md},
		"other app": {User: otherBotID, BotID: "B0OTHER", Text: "looks like a root", Metadata: &md},
	} {
		root := d.f.MessageEvent(spec).MessageTS
		d.mustDeliver(d.replyIn(root, annID, "reply to "+name))
		d.mustDeliver(d.f.ReactionAddedEvent(annID, "white_check_mark", slackfake.ChannelID, root))
		if n := historyLookups(d, root); n != 1 {
			t.Errorf("%s: history lookups %d, want 1", name, n)
		}
		if got := boundTo(t, d, root); !got.IsZero() {
			t.Errorf("%s: forged root bound to %s", name, got.Hex())
		}
	}
	got, err := d.st.Ticket(context.Background(), tk.ID, store.AllTickets)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Response) != 0 || got.Status != store.StatusCreated {
		t.Errorf("forged root changed the ticket: %d responses, status %s", len(got.Response), got.Status)
	}
}

// Slack failing the lookup leaves the event unacknowledged; redelivered,
// it is applied.
func TestRootLookupFailureIsNotAcked(t *testing.T) {
	d := newDesk(t, nil)
	tk, ts := unboundRoot(t, d, true)
	env := d.replyIn(ts, annID, "Do not lose me.")
	d.f.ServerErrorNext("conversations.history", 1, 503)
	if _, err := d.deliver(env); err == nil {
		t.Fatal("a failed lookup was acknowledged")
	}
	if rs := responsesOf(t, d, tk.ID); len(rs) != 0 {
		t.Fatalf("stored despite the failure: %+v", rs)
	}
	d.mustDeliver(env) // Slack's redelivery
	if rs := responsesOf(t, d, tk.ID); len(rs) != 1 {
		t.Errorf("responses after redelivery: %d", len(rs))
	}
	if got := boundTo(t, d, ts); got != tk.ID {
		t.Errorf("bound to %s", got.Hex())
	}
}

func TestKeySetForgetsTheOldestPastItsSize(t *testing.T) {
	s := newKeySet(2)
	s.add("a")
	s.add("b")
	s.add("b")
	s.add("c")
	if s.has("a") || !s.has("b") || !s.has("c") || len(s.keys) != 2 {
		t.Errorf("after a, b, b, c in a set of 2: %v", s.keys)
	}
	s.add("d")
	if s.has("b") || !s.has("c") || !s.has("d") || len(s.keys) != 2 {
		t.Errorf("after d: %v", s.keys)
	}
}
