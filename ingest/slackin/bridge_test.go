package slackin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"unicode/utf8"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"

	"github.com/ticketd/ticketd/internal/slackfake"
	"github.com/ticketd/ticketd/internal/slackui"
	"github.com/ticketd/ticketd/store"
	"github.com/ticketd/ticketd/store/storetest"
)

// Members of the fake workspace used by the tests.
const (
	annID      = "U0ANN"   // an agent
	guestID    = "U0GUEST" // a Slack Connect user of another workspace
	otherBotID = "U0OTHERBOT"
)

// desk is a ticket with its root message in the fake's agents' channel, and
// a Bridge on the real store and the fake.
type desk struct {
	t      *testing.T
	f      *slackfake.Fake
	st     *store.Store
	api    *slack.Client
	b      *Bridge
	ticket *store.Ticket
	rootTS string
}

func newDesk(t *testing.T, configure func(*Options)) *desk {
	t.Helper()
	ctx := context.Background()
	f := slackfake.New(t)
	f.AddUser(slackfake.User{ID: annID, RealName: "Ann Agent", Email: "ann@support.test"})
	f.AddUser(slackfake.User{ID: guestID, TeamID: "T0CUSTOMER", RealName: "Gus Guest", Email: "gus@customer.test"})
	f.AddUser(slackfake.User{ID: otherBotID, RealName: "Other bot", IsBot: true, BotID: "B0OTHER"})
	st := storetest.Open(t)
	api := slack.New(slackfake.BotToken, slack.OptionAPIURL(f.APIURL()))
	id, err := Identify(ctx, api)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Store: st, Slack: api, Channel: slackfake.ChannelID, BotUserID: id.BotUserID, BotID: id.BotID, TeamID: id.TeamID,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if configure != nil {
		configure(&o)
	}
	if own, ok := o.Store.(*store.Store); ok { // configure may bring its own (with a clock)
		st = own
	}
	b, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	customer, _, err := st.FindOrCreateCustomer(ctx, "carl@customer.test", "Carl", "acme")
	if err != nil {
		t.Fatal(err)
	}
	tk, _, err := st.CreateTicket(ctx, store.NewTicket{
		Creator: store.Actor{ID: customer.ID, Type: store.CreatorCustomer}, TeamID: customer.TeamID,
		Category: "Support", Subject: "Printer on fire", Description: "It smokes.", Source: store.SourceEmail,
	})
	if err != nil {
		t.Fatal(err)
	}
	// The root message, as the sink posts it.
	_, ts, err := api.PostMessageContext(ctx, slackfake.ChannelID, slack.MsgOptionText(slackui.RootText(tk), false))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.BindThread(ctx, tk.ID, store.ThreadSlackAgents, slackui.MessageKey(slackfake.ChannelID, ts)); err != nil {
		t.Fatal(err)
	}
	return &desk{t: t, f: f, st: st, api: api, b: b, ticket: tk, rootTS: ts}
}

// deliver hands an envelope's payload to the bridge as the connection does,
// decoded as slack-go's socketmode client decodes it.
func (d *desk) deliver(env slackfake.Envelope) (*slack.Msg, error) {
	d.t.Helper()
	ctx := context.Background()
	switch env.Type {
	case slackfake.TypeEventsAPI:
		ev, err := slackevents.ParseEvent(env.Payload, slackevents.OptionNoVerifyToken())
		if err != nil {
			d.t.Fatalf("parse event: %v", err)
		}
		return nil, d.b.HandleEvent(ctx, ev, eventID(ev))
	case slackfake.TypeInteractive:
		var cb slack.InteractionCallback
		if err := json.Unmarshal(env.Payload, &cb); err != nil {
			d.t.Fatalf("parse interaction: %v", err)
		}
		return nil, d.b.HandleInteraction(ctx, cb)
	case slackfake.TypeSlashCommands:
		var cmd slack.SlashCommand
		if err := json.Unmarshal(env.Payload, &cmd); err != nil {
			d.t.Fatalf("parse command: %v", err)
		}
		return d.b.HandleCommand(ctx, cmd)
	}
	d.t.Fatalf("envelope type %q", env.Type)
	return nil, nil
}

func (d *desk) mustDeliver(env slackfake.Envelope) *slack.Msg {
	d.t.Helper()
	msg, err := d.deliver(env)
	if err != nil {
		d.t.Fatalf("deliver %s: %v", env.Type, err)
	}
	return msg
}

// reply is a thread reply in the ticket's thread.
func (d *desk) reply(user, text string, files ...string) slackfake.Envelope {
	return d.f.MessageEvent(slackfake.MessageSpec{ThreadTS: d.rootTS, User: user, Text: text, Files: files})
}

func (d *desk) load() *store.Ticket {
	d.t.Helper()
	tk, err := d.st.Ticket(context.Background(), d.ticket.ID, store.AllTickets)
	if err != nil {
		d.t.Fatal(err)
	}
	return tk
}

func (d *desk) agentBySlack(id string) *store.Agent {
	d.t.Helper()
	a, err := d.st.AgentBySlackUser(context.Background(), id)
	if err != nil {
		d.t.Fatalf("agent for %s: %v", id, err)
	}
	return a
}

func reactions(m slackfake.Message) []string {
	var out []string
	for _, r := range m.Reactions {
		out = append(out, r.Name)
	}
	return out
}

func TestThreadReplyBecomesAgentResponse(t *testing.T) {
	d := newDesk(t, nil)
	env := d.reply(annID, "We are on it &amp; a fix is <https://status.test|on the way>.")
	d.mustDeliver(env)

	tk := d.load()
	if len(tk.Response) != 1 {
		t.Fatalf("responses: %+v", tk.Response)
	}
	r := tk.Response[0]
	ann := d.agentBySlack(annID)
	want := "slack:" + slackfake.ChannelID + "/" + env.MessageTS
	if r.CreatorType != store.CreatorAdmin || r.CreatorID != ann.ID || r.Source != store.SourceSlack || r.SourceKey != want || r.Internal {
		t.Errorf("response: %+v (want admin %s, source slack, key %s)", r, ann.ID.Hex(), want)
	}
	if r.Description != "We are on it & a fix is on the way (https://status.test)." {
		t.Errorf("text: %q", r.Description)
	}
	if ann.Name != "Ann Agent" || ann.Email != "ann@support.test" || ann.SlackUserID != annID {
		t.Errorf("agent from users.info: %+v", ann)
	}
	if n := d.b.Counts.Applied.Load(); n != 1 {
		t.Errorf("applied count %d", n)
	}
	if m, _ := d.f.Message(slackfake.ChannelID, env.MessageTS); len(m.Reactions) != 0 {
		t.Errorf("a customer reply got reactions at once: %v", reactions(m))
	}
}

func TestRedeliveredEventAppliedOnce(t *testing.T) {
	d := newDesk(t, nil)
	env := d.reply(annID, "Once only")
	for range 3 {
		d.mustDeliver(env)
	}
	if tk := d.load(); len(tk.Response) != 1 {
		t.Fatalf("responses after redelivery: %d", len(tk.Response))
	}
	if n := d.b.Counts.Deduplicated.Load(); n != 2 {
		t.Errorf("deduplicated count %d, want 2", n)
	}
	// The same message under another event id (a crash before the id was
	// recorded): the response's SourceKey still keeps it single.
	ev, _ := slackevents.ParseEvent(env.Payload, slackevents.OptionNoVerifyToken())
	if err := d.b.HandleEvent(context.Background(), ev, "EvOTHER"); err != nil {
		t.Fatal(err)
	}
	if tk := d.load(); len(tk.Response) != 1 {
		t.Errorf("responses after a new event id: %d", len(tk.Response))
	}
}

func TestNotePrefixMakesInternalNoteWithLock(t *testing.T) {
	d := newDesk(t, nil)
	env := d.reply(annID, "  // customer is on the old firmware")
	d.mustDeliver(env)
	r := d.load().Response[0]
	if !r.Internal || r.Description != "customer is on the old firmware" {
		t.Errorf("note: %+v", r)
	}
	if m, _ := d.f.Message(slackfake.ChannelID, env.MessageTS); !slices.Equal(reactions(m), []string{"lock"}) {
		t.Errorf("reactions on the note: %v", reactions(m))
	}
	// Redelivered under a new event id: no second note, the lock is not an error.
	ev, _ := slackevents.ParseEvent(env.Payload, slackevents.OptionNoVerifyToken())
	if err := d.b.HandleEvent(context.Background(), ev, "EvAGAIN"); err != nil {
		t.Fatal(err)
	}
	if n := len(d.load().Response); n != 1 {
		t.Errorf("responses %d", n)
	}
}

func TestReplyDefaultInternal(t *testing.T) {
	d := newDesk(t, func(o *Options) { o.ReplyDefault = ReplyInternal })
	d.mustDeliver(d.reply(annID, "checking logs"))
	d.mustDeliver(d.reply(annID, "!REPLY Fixed, please retry."))
	d.mustDeliver(d.reply(annID, "!replying is not the prefix"))
	rs := d.load().Response
	if len(rs) != 3 || !rs[0].Internal || rs[1].Internal || rs[1].Description != "Fixed, please retry." || !rs[2].Internal {
		t.Errorf("responses: %+v", rs)
	}
}

func TestBotsAndOtherMessagesIgnored(t *testing.T) {
	d := newDesk(t, nil)
	d.f.AddChannel("C0ELSE", "random")
	for name, env := range map[string]slackfake.Envelope{
		"bot's own":       d.f.MessageEvent(slackfake.MessageSpec{ThreadTS: d.rootTS, User: slackfake.BotUserID, BotID: slackfake.BotID, Text: "posted by us"}),
		"other app":       d.f.MessageEvent(slackfake.MessageSpec{ThreadTS: d.rootTS, User: otherBotID, BotID: "B0OTHER", Text: "beep"}),
		"bot_message":     d.f.MessageEvent(slackfake.MessageSpec{ThreadTS: d.rootTS, SubType: "bot_message", Text: "webhook"}),
		"channel_join":    d.f.MessageEvent(slackfake.MessageSpec{User: annID, SubType: "channel_join", Text: "joined"}),
		"top level":       d.f.MessageEvent(slackfake.MessageSpec{User: annID, Text: "lunch?"}),
		"other channel":   d.f.MessageEvent(slackfake.MessageSpec{Channel: "C0ELSE", User: annID, Text: "hi"}),
		"not a ticket's":  d.f.MessageEvent(slackfake.MessageSpec{ThreadTS: "1700000000.000001", User: annID, Text: "thread"}),
		"bare note mark":  d.reply(annID, "//"),
		"reaction on it":  d.f.ReactionAddedEvent(annID, "tada", slackfake.ChannelID, d.rootTS),
		"reaction (bot)":  d.f.ReactionAddedEvent(slackfake.BotUserID, "white_check_mark", slackfake.ChannelID, d.rootTS),
		"unknown payload": d.f.EventEnvelope(map[string]any{"type": "app_mention", "user": annID, "text": "hi", "channel": slackfake.ChannelID, "ts": "1.2"}),
	} {
		if _, err := d.deliver(env); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	tk := d.load()
	if len(tk.Response) != 0 || tk.Status != store.StatusCreated {
		t.Errorf("ticket changed: status %s, responses %+v", tk.Status, tk.Response)
	}
	if _, err := d.st.AgentBySlackUser(context.Background(), otherBotID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a bot became an agent: %v", err)
	}
	if n := d.b.Counts.Ignored.Load(); n != 11 {
		t.Errorf("ignored count %d, want 11", n)
	}
	if e := d.f.Ephemerals(); len(e) != 0 {
		t.Errorf("ephemerals: %+v", e)
	}
}

func TestNonAgentRefused(t *testing.T) {
	d := newDesk(t, nil)
	before := d.load()
	envs := []slackfake.Envelope{
		d.reply(guestID, "I am not an agent"),
		d.f.BlockActionEnvelope(guestID, slackfake.ChannelID, d.rootTS, slackfake.Action{
			ActionID: slackui.StatusActionID(store.StatusResolved), BlockID: slackui.BlockActions, Type: "button",
			Value: slackui.Value(d.ticket.ID, string(store.StatusResolved))}),
		d.f.ReactionAddedEvent(guestID, "white_check_mark", slackfake.ChannelID, d.rootTS),
		d.f.BlockActionEnvelope(otherBotID, slackfake.ChannelID, d.rootTS, slackfake.Action{
			ActionID: slackui.ActionPriority, BlockID: slackui.BlockActions, Type: "static_select",
			Value: slackui.Value(d.ticket.ID, string(store.PriorityUrgent))}),
	}
	for _, env := range envs {
		d.mustDeliver(env)
	}
	msg := d.mustDeliver(d.f.SlashCommandEnvelope(guestID, slackfake.ChannelID, "/ticket", fmt.Sprintf("%d resolved", d.ticket.RefID)))
	if msg == nil || msg.ResponseType != slack.ResponseTypeEphemeral || !strings.Contains(msg.Text, "Only members") {
		t.Errorf("command refusal: %+v", msg)
	}
	after := d.load()
	if after.V != before.V || after.Status != before.Status || after.Priority != before.Priority || len(after.Response) != 0 {
		t.Errorf("ticket changed: %+v", after)
	}
	eph := d.f.Ephemerals()
	if len(eph) != len(envs) {
		t.Fatalf("ephemerals: %+v", eph)
	}
	if eph[0].User != guestID || eph[0].ThreadTS != d.rootTS || !strings.Contains(eph[0].Text, "Nothing was changed") {
		t.Errorf("reply refusal: %+v", eph[0])
	}
	if eph[3].User != otherBotID || !strings.Contains(eph[3].Text, "bots") {
		t.Errorf("bot refusal: %+v", eph[3])
	}
	if n := d.b.Counts.Refused.Load(); n != int64(len(envs)+1) {
		t.Errorf("refused count %d", n)
	}
	for _, id := range []string{guestID, otherBotID} {
		if _, err := d.st.AgentBySlackUser(context.Background(), id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s became an agent: %v", id, err)
		}
	}
}

// adminLine is the audit line of a change, which must name the agent.
func adminLine(t *testing.T, st *store.Store, tk *store.Ticket, what string, agent *store.Agent) {
	t.Helper()
	logs, err := st.Logs(context.Background(), tk.ID, store.AllTickets)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range logs {
		if l.ActionTaken == what && l.ActionByType == store.CreatorAdmin && l.ActionBy == agent.ID.Hex() {
			return
		}
	}
	t.Errorf("no audit line %q by admin %s in %+v", what, agent.ID.Hex(), logs)
}

func TestButtonsAndSelectChangeTicket(t *testing.T) {
	d := newDesk(t, nil)
	d.mustDeliver(d.f.BlockActionEnvelope(annID, slackfake.ChannelID, d.rootTS, slackfake.Action{
		ActionID: slackui.StatusActionID(store.StatusInProgress), BlockID: slackui.BlockActions, Type: "button",
		Value: slackui.Value(d.ticket.ID, string(store.StatusInProgress))}))
	d.mustDeliver(d.f.BlockActionEnvelope(annID, slackfake.ChannelID, d.rootTS, slackfake.Action{
		ActionID: slackui.ActionPriority, BlockID: slackui.BlockActions, Type: "static_select",
		Value: slackui.Value(d.ticket.ID, string(store.PriorityHigh))}))
	tk := d.load()
	if tk.Status != store.StatusInProgress || tk.Priority != store.PriorityHigh {
		t.Fatalf("ticket: status %s priority %s", tk.Status, tk.Priority)
	}
	ann := d.agentBySlack(annID)
	adminLine(t, d.st, tk, "Status changed from created to in-progress", ann)
	adminLine(t, d.st, tk, "Priority changed from low to high", ann)
	var origins []store.Source
	for _, e := range tk.Outbox {
		if e.Kind == store.EventStatusChanged || e.Kind == store.EventPriorityChanged {
			origins = append(origins, e.Origin)
		}
	}
	if !slices.Equal(origins, []store.Source{store.SourceSlack, store.SourceSlack}) {
		t.Errorf("events' origins: %v (the sink skips echoes by it)", origins)
	}
	// A value naming another ticket than the root's is not applied.
	other := newTicketLike(t, d)
	d.mustDeliver(d.f.BlockActionEnvelope(annID, slackfake.ChannelID, d.rootTS, slackfake.Action{
		ActionID: slackui.StatusActionID(store.StatusClosed), BlockID: slackui.BlockActions, Type: "button",
		Value: slackui.Value(other.ID, string(store.StatusClosed))}))
	if got, _ := d.st.Ticket(context.Background(), other.ID, store.AllTickets); got.Status != store.StatusCreated {
		t.Errorf("forged value changed ticket #%d: %s", got.RefID, got.Status)
	}
	if got := d.load(); got.Status != store.StatusInProgress {
		t.Errorf("forged value changed the root's ticket: %s", got.Status)
	}
}

func newTicketLike(t *testing.T, d *desk) *store.Ticket {
	t.Helper()
	tk, _, err := d.st.CreateTicket(context.Background(), store.NewTicket{
		Creator: store.Actor{ID: d.ticket.CreatorID, Type: store.CreatorCustomer}, TeamID: d.ticket.TeamID,
		Category: "Support", Subject: "Another", Description: "x", Source: store.SourceAPI,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func TestSlashCommand(t *testing.T) {
	d := newDesk(t, nil)
	ref := d.ticket.RefID
	cmd := func(text string) string {
		t.Helper()
		msg := d.mustDeliver(d.f.SlashCommandEnvelope(annID, slackfake.ChannelID, "/ticket", text))
		if msg == nil || msg.ResponseType != slack.ResponseTypeEphemeral {
			t.Fatalf("/ticket %s: answer %+v", text, msg)
		}
		return msg.Text
	}
	if got := cmd(fmt.Sprint(ref)); !strings.Contains(got, "Printer on fire") || !strings.Contains(got, "Status: created") {
		t.Errorf("summary: %q", got)
	}
	if got := cmd(fmt.Sprintf("#%d resolved", ref)); !strings.Contains(got, "Status: resolved") {
		t.Errorf("status: %q", got)
	}
	if got := cmd(fmt.Sprintf("%d priority HIGH", ref)); !strings.Contains(got, "Priority: high") {
		t.Errorf("priority: %q", got)
	}
	if got := cmd(fmt.Sprintf("%d assign me", ref)); !strings.Contains(got, "assigned to you") {
		t.Errorf("assign: %q", got)
	}
	for _, bad := range []string{"", "help", "42x", fmt.Sprintf("%d priority extreme", ref), fmt.Sprintf("%d assign bob", ref), fmt.Sprintf("%d frobnicate", ref)} {
		if got := cmd(bad); got != commandHelp {
			t.Errorf("/ticket %q: %q, want the help", bad, got)
		}
	}
	if got := cmd("99999"); !strings.Contains(got, "no ticket #99999") {
		t.Errorf("unknown ticket: %q", got)
	}
	tk := d.load()
	ann := d.agentBySlack(annID)
	if tk.Status != store.StatusResolved || tk.Priority != store.PriorityHigh || tk.AssigneeID == nil || *tk.AssigneeID != ann.ID {
		t.Errorf("ticket: %s %s %v", tk.Status, tk.Priority, tk.AssigneeID)
	}
	adminLine(t, d.st, tk, "Status changed from created to resolved", ann)
	adminLine(t, d.st, tk, "Assigned to "+ann.ID.Hex(), ann)
}

// Slash commands reach the app from any channel: outside the agents'
// channel a workspace member who is not yet an agent (a customer in a help
// channel) learns nothing and changes nothing, and is not made an agent.
func TestSlashCommandOutsideTheAgentsChannel(t *testing.T) {
	const memberID, helpChannel = "U0MEMBER", "C0HELP"
	d := newDesk(t, nil)
	d.f.AddUser(slackfake.User{ID: memberID, RealName: "Mia Member", Email: "mia@support.test"})
	ref := d.ticket.RefID
	run := func(user, channel, text string) string {
		t.Helper()
		msg := d.mustDeliver(d.f.SlashCommandEnvelope(user, channel, "/ticket", text))
		if msg == nil {
			t.Fatalf("/ticket %s: no answer", text)
		}
		return msg.Text
	}
	if got := run(memberID, helpChannel, fmt.Sprintf("%d resolved", ref)); got != refuseOutside {
		t.Fatalf("member outside the agents' channel: %q", got)
	}
	if got := run(memberID, helpChannel, fmt.Sprint(ref)); strings.Contains(got, "Printer on fire") {
		t.Fatalf("the summary leaked outside the agents' channel: %q", got)
	}
	if tk := d.load(); tk.Status != store.StatusCreated {
		t.Fatalf("status %s after a refused command", tk.Status)
	}
	if _, err := d.st.AgentBySlackUser(context.Background(), memberID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused member was made an agent: %v", err)
	}
	// In the agents' channel the same member acts; afterwards they are a
	// known agent, and may use the command anywhere.
	if got := run(memberID, slackfake.ChannelID, fmt.Sprintf("%d in-progress", ref)); !strings.Contains(got, "Status: in-progress") {
		t.Fatalf("member in the agents' channel: %q", got)
	}
	if got := run(memberID, helpChannel, fmt.Sprintf("%d resolved", ref)); !strings.Contains(got, "Status: resolved") {
		t.Fatalf("known agent outside the agents' channel: %q", got)
	}
}

func TestReactionShortcuts(t *testing.T) {
	d := newDesk(t, nil)
	d.mustDeliver(d.f.ReactionAddedEvent(annID, "eyes", slackfake.ChannelID, d.rootTS))
	tk := d.load()
	ann := d.agentBySlack(annID)
	if tk.Status != store.StatusInProgress || tk.AssigneeID == nil || *tk.AssigneeID != ann.ID {
		t.Fatalf("after :eyes: status %s assignee %v", tk.Status, tk.AssigneeID)
	}
	adminLine(t, d.st, tk, "Status changed from created to in-progress", ann)

	// Someone else's :eyes: keeps the assignee.
	d.f.AddUser(slackfake.User{ID: "U0BEN", RealName: "Ben", Email: "ben@support.test"})
	d.mustDeliver(d.f.ReactionAddedEvent("U0BEN", "eyes", slackfake.ChannelID, d.rootTS))
	if tk := d.load(); *tk.AssigneeID != ann.ID {
		t.Errorf("assignee taken over: %v", tk.AssigneeID)
	}

	d.mustDeliver(d.f.ReactionAddedEvent(annID, "white_check_mark", slackfake.ChannelID, d.rootTS))
	if tk := d.load(); tk.Status != store.StatusResolved {
		t.Errorf("after :white_check_mark: %s", tk.Status)
	}

	// On a reply rather than the root message, nothing happens.
	reply := d.reply(annID, "a reply")
	d.mustDeliver(reply)
	d.mustDeliver(d.f.ReactionAddedEvent(annID, "eyes", slackfake.ChannelID, reply.MessageTS))
	if tk := d.load(); tk.Status != store.StatusResolved {
		t.Errorf("reaction on a reply changed status: %s", tk.Status)
	}
}

func TestEditAndDeleteAfterReplyAreAudited(t *testing.T) {
	d := newDesk(t, nil)
	reply := d.reply(annID, "The fix ships Monday.")
	d.mustDeliver(reply)
	note := d.reply(annID, "// check with QA")
	d.mustDeliver(note)

	edit := d.f.MessageChangedEvent(slackfake.ChannelID, reply.MessageTS, "The fix ships Tuesday.")
	d.mustDeliver(edit)
	d.mustDeliver(edit) // redelivered: the event id was recorded, nothing twice
	d.mustDeliver(d.f.MessageDeletedEvent(slackfake.ChannelID, note.MessageTS))

	tk := d.load()
	if tk.Response[0].Description != "The fix ships Monday." || len(tk.Response) != 2 {
		t.Errorf("stored responses changed: %+v", tk.Response)
	}
	logs, _ := d.st.Logs(context.Background(), tk.ID, store.AllTickets)
	var edited, deleted bool
	for _, l := range logs {
		edited = edited || (strings.Contains(l.ActionTaken, "reply "+tk.Response[0].ID.Hex()+" edited") && l.ActionByType == store.CreatorAdmin)
		deleted = deleted || strings.Contains(l.ActionTaken, "internal note "+tk.Response[1].ID.Hex()+" deleted")
	}
	if !edited || !deleted {
		t.Errorf("audit lines (edited %v, deleted %v): %+v", edited, deleted, logs)
	}
	var notices []string
	for _, m := range d.f.Replies(slackfake.ChannelID, d.rootTS) {
		if m.User == slackfake.BotUserID {
			notices = append(notices, m.Text)
		}
	}
	if len(notices) != 2 || !strings.Contains(notices[0], "edited a reply") || !strings.Contains(notices[0], "The customer has the original") ||
		!strings.Contains(notices[1], "deleted an internal note") {
		t.Errorf("thread notices: %q", notices)
	}

	// A change that is not an edit (same text), and the edit of a message
	// never stored, say nothing.
	unstored := d.reply(guestID, "refused one")
	d.mustDeliver(unstored)
	d.mustDeliver(d.f.MessageChangedEvent(slackfake.ChannelID, unstored.MessageTS, "refused, edited"))
	d.mustDeliver(d.f.MessageChangedEvent(slackfake.ChannelID, reply.MessageTS, "The fix ships Tuesday."))
	if after, _ := d.st.Logs(context.Background(), tk.ID, store.AllTickets); len(after) != len(logs) {
		t.Errorf("more audit lines: %d, want %d", len(after), len(logs))
	}
}

func TestAgentLinkedByEmail(t *testing.T) {
	d := newDesk(t, nil)
	ctx := context.Background()
	existing, err := d.st.FindOrCreateAgent(ctx, "ANN@support.test", "Ann (API)", "")
	if err != nil {
		t.Fatal(err)
	}
	d.mustDeliver(d.reply(annID, "hello"))
	r := d.load().Response[0]
	if r.CreatorID != existing.ID {
		t.Errorf("response by %s, want the existing agent %s", r.CreatorID.Hex(), existing.ID.Hex())
	}
	if a := d.agentBySlack(annID); a.ID != existing.ID {
		t.Errorf("slack user not linked: %+v", a)
	}
	// Known now: no more users.info for this user.
	before := len(d.f.CallsTo("users.info"))
	d.mustDeliver(d.reply(annID, "again"))
	if after := len(d.f.CallsTo("users.info")); after != before {
		t.Errorf("users.info called %d more times", after-before)
	}
}

func TestAttachmentsStoredAndLimited(t *testing.T) {
	d := newDesk(t, func(o *Options) { o.MaxAttachmentBytes = 64 })
	small := d.f.AddFile("log.txt", "text/plain", []byte("kernel: printer on fire"))
	big := d.f.AddFile("dump.bin", "application/octet-stream", make([]byte, 65))
	env := d.reply(annID, "See attached.", small.ID, big.ID)
	d.mustDeliver(env)
	r := d.load().Response[0]
	if len(r.Attachments) != 1 || r.Attachments[0].Filename != "log.txt" || r.Attachments[0].ContentType != "text/plain" {
		t.Fatalf("attachments: %+v", r.Attachments)
	}
	f, err := d.st.Attachment(context.Background(), r.Attachments[0].ID, store.AllTickets)
	if err != nil || string(f.Data) != "kernel: printer on fire" || f.TicketID != d.ticket.ID {
		t.Errorf("stored file: %+v %v", f, err)
	}
	if !strings.Contains(r.Description, `[attachment "dump.bin" not stored: 65 bytes, over the 64-byte limit]`) {
		t.Errorf("text: %q", r.Description)
	}
	// Redelivered: the same file id, nothing stored twice.
	ev, _ := slackevents.ParseEvent(env.Payload, slackevents.OptionNoVerifyToken())
	if err := d.b.HandleEvent(context.Background(), ev, "EvAGAIN"); err != nil {
		t.Fatal(err)
	}
	if r2 := d.load().Response; len(r2) != 1 {
		t.Errorf("responses %d", len(r2))
	}
}

func TestLongReplyCutWithWholeTextKept(t *testing.T) {
	d := newDesk(t, func(o *Options) { o.Limits = store.Limits{MaxDescription: 100} })
	long := strings.Repeat("é", 150) + " tail"
	d.mustDeliver(d.reply(annID, long))
	r := d.load().Response[0]
	if n := utf8.RuneCountInString(r.Description); n > 100 || !strings.HasPrefix(r.Description, "éééé") ||
		!strings.HasSuffix(r.Description, "[message cut; the whole text is attached as "+fullTextName+"]") {
		t.Errorf("text (%d characters): %q", n, r.Description)
	}
	if len(r.Attachments) != 1 || r.Attachments[0].Filename != fullTextName {
		t.Fatalf("attachments: %+v", r.Attachments)
	}
	f, err := d.st.Attachment(context.Background(), r.Attachments[0].ID, store.AllTickets)
	if err != nil || string(f.Data) != long {
		t.Errorf("whole text: %q %v", f.Data, err)
	}
}

// A failure to reach Slack leaves the event unapplied (an error: not acked),
// and Slack's redelivery applies it once.
func TestSlackOutageRetriedByRedelivery(t *testing.T) {
	d := newDesk(t, nil)
	env := d.reply(annID, "after the outage")
	d.f.ServerErrorNext("users.info", 1, 503)
	if _, err := d.deliver(env); err == nil {
		t.Fatal("no error while users.info failed")
	}
	if tk := d.load(); len(tk.Response) != 0 {
		t.Fatalf("stored without its agent: %+v", tk.Response)
	}
	d.mustDeliver(env)
	if tk := d.load(); len(tk.Response) != 1 {
		t.Errorf("responses after redelivery: %d", len(tk.Response))
	}
}

func TestDeletedTicketIgnored(t *testing.T) {
	d := newDesk(t, nil)
	ann, err := d.st.FindOrCreateAgent(context.Background(), "ann@support.test", "Ann", annID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.st.DeleteTicket(context.Background(), d.ticket.ID, store.AllTickets, agentActor(ann)); err != nil {
		t.Fatal(err)
	}
	d.mustDeliver(d.reply(annID, "too late"))
	d.mustDeliver(d.f.ReactionAddedEvent(annID, "white_check_mark", slackfake.ChannelID, d.rootTS))
	d.mustDeliver(d.f.BlockActionEnvelope(annID, slackfake.ChannelID, d.rootTS, slackfake.Action{
		ActionID: slackui.StatusActionID(store.StatusClosed), BlockID: slackui.BlockActions, Type: "button",
		Value: slackui.Value(d.ticket.ID, string(store.StatusClosed))}))
	if n := d.b.Counts.Ignored.Load(); n != 3 {
		t.Errorf("ignored %d, want 3", n)
	}
}

// Through the real connection: a thread reply over Socket Mode is stored,
// then acked; the same envelope delivered again is acked and changes
// nothing.
func TestSocketModeReplyOnceAndAcked(t *testing.T) {
	d := newDesk(t, nil)
	startSocket(t, d.f, d.b)
	d.f.WaitConnections(t, 1)
	env := d.reply(annID, "over the socket")
	d.f.MustSend(t, env)
	d.f.WaitAck(t, env.EnvelopeID)
	if tk := d.load(); len(tk.Response) != 1 || tk.Response[0].Description != "over the socket" {
		t.Fatalf("responses: %+v", tk.Response)
	}
	if err := d.f.Redeliver(env.EnvelopeID); err != nil {
		t.Fatal(err)
	}
	d.f.Until(t, "the redelivered envelope acked", func() bool { return len(d.f.AcksFor(env.EnvelopeID)) == 2 })
	if tk := d.load(); len(tk.Response) != 1 {
		t.Errorf("responses after redelivery: %d", len(tk.Response))
	}
	if n := d.b.Counts.Deduplicated.Load(); n != 1 {
		t.Errorf("deduplicated %d", n)
	}
}

func TestPlainText(t *testing.T) {
	d := newDesk(t, nil)
	for in, want := range map[string]string{
		"no markup":                                   "no markup",
		"a &lt;b&gt; &amp;amp;":                       "a <b> &amp;",
		"ask <@" + annID + "> about it":               "ask @Ann Agent about it",
		"ask <@U0NOBODY>":                             "ask @U0NOBODY",
		"ask <@U0NOBODY|nobody>":                      "ask @nobody",
		"see <#C0AGENTS|support-agents> and <#C0X>":   "see #support-agents and #C0X",
		"<!here> <!subteam^S1|@oncall> <!channel>":    "@here @oncall @channel",
		"<https://x.test/a?b=1&amp;c=2|the docs>":     "the docs (https://x.test/a?b=1&c=2)",
		"<https://x.test> <mailto:a@b.test|a@b.test>": "https://x.test a@b.test",
		"unclosed <https://x.test":                    "unclosed <https://x.test",
	} {
		if got := d.b.plainText(context.Background(), in); got != want {
			t.Errorf("plainText(%q) = %q, want %q", in, got, want)
		}
	}
}

// slowDownloads holds file downloads until released, counting them.
type slowDownloads struct {
	SlackAPI
	started chan struct{}
	release chan struct{}
	calls   atomic.Int32
}

func (s *slowDownloads) GetFileContext(ctx context.Context, url string, w io.Writer) error {
	if s.calls.Add(1) == 1 {
		close(s.started)
	}
	select {
	case <-s.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.SlackAPI.GetFileContext(ctx, url, w)
}

// A reply whose files take longer than the connection's deadline is still
// stored (unacked), and the redelivery finds it without downloading again.
func TestSlowDownloadOutlastsTheDeadline(t *testing.T) {
	slow := &slowDownloads{started: make(chan struct{}), release: make(chan struct{})}
	d := newDesk(t, func(o *Options) {
		slow.SlackAPI = o.Slack
		o.Slack = slow
	})
	file := d.f.AddFile("trace.txt", "text/plain", []byte("trace"))
	env := d.reply(annID, "// trace attached", file.ID)
	ev, err := slackevents.ParseEvent(env.Payload, slackevents.OptionNoVerifyToken())
	if err != nil {
		t.Fatal(err)
	}
	hctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.b.HandleEvent(hctx, ev, eventID(ev)) }()
	<-slow.started
	cancel() // the connection's deadline passes during the download
	close(slow.release)
	if err := <-done; err == nil {
		t.Error("HandleEvent reported success past its deadline: the event would be acked")
	}
	r := d.load().Response
	if len(r) != 1 || len(r[0].Attachments) != 1 || r[0].Attachments[0].Filename != "trace.txt" {
		t.Fatalf("responses: %+v", r)
	}
	d.mustDeliver(env) // Slack's redelivery
	if n := slow.calls.Load(); n != 1 {
		t.Errorf("%d downloads, want 1", n)
	}
	if len(d.load().Response) != 1 {
		t.Error("stored twice")
	}
	if m, _ := d.f.Message(slackfake.ChannelID, env.MessageTS); !slices.Equal(reactions(m), []string{"lock"}) {
		t.Errorf("reactions on the note: %v", reactions(m))
	}
}
