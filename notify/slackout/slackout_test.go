package slackout

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/ticketd/ticketd/internal/slackfake"
	"github.com/ticketd/ticketd/internal/slackui"
	"github.com/ticketd/ticketd/notify"
	"github.com/ticketd/ticketd/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestTicketCreatedPostsRootWithMetadataAndBindsIt(t *testing.T) {
	e := newEnv(t)
	tk := e.newTicket()
	created := e.event(tk.ID, store.EventTicketCreated)
	e.mustDeliver(created)

	roots := e.fake.Roots(slackfake.ChannelID)
	if len(roots) != 1 {
		t.Fatalf("%d root messages, want 1", len(roots))
	}
	root := roots[0]
	if root.Metadata == nil {
		t.Fatal("root message has no metadata")
	}
	tid, eid, ok := slackui.ParseMetadata(*root.Metadata)
	if !ok || tid != tk.ID.Hex() || eid != created.ID.Hex() {
		t.Errorf("metadata %+v", *root.Metadata)
	}
	text := blocksText(t, root.Blocks)
	for _, want := range []string{
		"#1 Invoice <wrong>",                   // header: plain text
		"Ann Customer &lt;ann@example.com&gt;", // customer, escaped
		"*Source*\nemail", "*Category*\nBilling", "*Priority*\nlow", "*Status*\ncreated",
		"Please fix &amp; resend.",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("root blocks lack %q:\n%s", want, text)
		}
	}
	if !bytes.Contains(root.Blocks, []byte(`"action_id":"`+slackui.StatusActionID(store.StatusResolved)+`"`)) ||
		!bytes.Contains(root.Blocks, []byte(`"action_id":"`+slackui.ActionPriority+`"`)) {
		t.Errorf("root blocks lack the status buttons or priority select: %s", root.Blocks)
	}
	if got := e.rootTS(tk.ID); got != root.TS {
		t.Fatalf("ticket bound to ts %q, root is %q", got, root.TS)
	}
	if n := len(e.fake.CallsTo("conversations.history")); n != 0 {
		t.Errorf("%d history searches before the first post of a new ticket; none can be there", n)
	}

	// Delivered again (a lost completion): the bound root is used.
	if err := e.deliver(created, 2); !done(err) {
		t.Fatal(err)
	}
	if n := len(e.fake.Roots(slackfake.ChannelID)); n != 1 {
		t.Fatalf("%d roots after a redelivery", n)
	}
}

func TestCrashAfterPostFindsTheRootInHistory(t *testing.T) {
	e := newEnv(t)
	other := e.newTicket() // another ticket's root must not be taken for this one
	e.mustDeliver(e.event(other.ID, store.EventTicketCreated))
	tk := e.newTicket()
	created := e.event(tk.ID, store.EventTicketCreated)

	e.reader.failBinds.Store(1)
	if err := e.deliver(created, 1); err == nil {
		t.Fatal("deliver succeeded although the binding failed")
	}
	if n := len(e.fake.Roots(slackfake.ChannelID)); n != 2 {
		t.Fatalf("%d roots after the first attempt, want 2", n)
	}
	if ts := e.rootTS(tk.ID); ts != "" {
		t.Fatalf("bound although the binding failed: %s", ts)
	}

	// The runner retries; the ticket's next event could come first, too.
	if err := e.deliver(created, 2); err != nil {
		t.Fatal(err)
	}
	roots := e.fake.Roots(slackfake.ChannelID)
	if len(roots) != 2 {
		t.Fatalf("%d roots after the retry, want 2 (one per ticket)", len(roots))
	}
	if got := e.rootTS(tk.ID); got != roots[1].TS {
		t.Fatalf("bound to %q, want the root posted before the crash %q", got, roots[1].TS)
	}
	if len(e.fake.CallsTo("conversations.history")) == 0 {
		t.Error("history was not searched")
	}
}

func TestRootPostedAtTheFirstEventOfAnOlderTicket(t *testing.T) {
	e := newEnv(t)
	tk := e.newTicket() // its creation was never delivered to Slack
	st := store.StatusInProgress
	if _, err := e.st.UpdateTicket(e.ctx, tk.ID, store.AllTickets, store.TicketUpdate{Status: &st},
		store.Actor{ID: e.agent.ID, Type: store.CreatorAdmin, Via: store.SourceAPI}); err != nil {
		t.Fatal(err)
	}
	e.mustDeliver(e.event(tk.ID, store.EventStatusChanged))
	ts := e.rootTS(tk.ID)
	if ts == "" {
		t.Fatal("no root bound")
	}
	root, _ := e.fake.Message(slackfake.ChannelID, ts)
	if !strings.Contains(blocksText(t, root.Blocks), "*Status*\nin-progress") {
		t.Errorf("root does not show the current status:\n%s", blocksText(t, root.Blocks))
	}
	if got := e.replies(ts); len(got) != 1 || !strings.Contains(blocksText(t, got[0].Blocks), "to *in-progress*") {
		t.Errorf("thread %+v", got)
	}
}

func TestCustomerResponseWithFilesGoesIntoTheThread(t *testing.T) {
	e := newEnv(t)
	tk, ts := e.withRoot()
	small := store.Attachment{ID: bson.NewObjectID(), Filename: "screenshot.png", ContentType: "image/png", Size: 5}
	big := store.Attachment{ID: bson.NewObjectID(), Filename: "dump.bin", ContentType: "application/octet-stream", Size: 4096}
	for _, f := range []struct {
		a    store.Attachment
		data []byte
	}{{small, []byte("\x89PNG!")}, {big, bytes.Repeat([]byte("x"), 4096)}} {
		if err := e.st.SaveAttachment(e.ctx, store.AttachmentFile{Attachment: f.a, TicketID: tk.ID, Data: f.data}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := e.st.AddResponse(e.ctx, tk.ID, store.AllTickets, store.NewResponse{
		Author:      store.Actor{ID: e.customer.ID, Type: store.CreatorCustomer, Via: store.SourceEmail},
		Description: "Here is a <screenshot>.", Source: store.SourceEmail,
		Attachments: []store.Attachment{small, big},
	}); err != nil {
		t.Fatal(err)
	}
	e.mustDeliver(e.event(tk.ID, store.EventResponseAdded))

	got := e.replies(ts)
	if len(got) != 2 {
		t.Fatalf("%d replies, want the response and its file", len(got))
	}
	text := blocksText(t, got[0].Blocks)
	for _, want := range []string{"*Ann Customer* (customer) wrote via email", "Here is a &lt;screenshot&gt;.",
		"dump.bin (4 kB) is too large", "https://tickets.example.com/api/ticket/attachment?id=" + big.ID.Hex()} {
		if !strings.Contains(text, want) {
			t.Errorf("response lacks %q:\n%s", want, text)
		}
	}
	if len(got[1].Files) != 1 {
		t.Fatalf("file message %+v", got[1])
	}
	f, _ := e.fake.File(got[1].Files[0])
	if f.Name != "screenshot.png" || string(f.Content) != "\x89PNG!" || !f.Shared || f.ThreadTS != ts {
		t.Errorf("uploaded file %+v", f)
	}
	if n := len(e.fake.CallsTo("files.getUploadURLExternal")); n != 1 {
		t.Errorf("%d uploads, want 1 (the large file is linked)", n)
	}
}

func TestRetriedResponseIsNotPostedTwice(t *testing.T) {
	e := newEnv(t)
	tk, ts := e.withRoot()
	att := store.Attachment{ID: bson.NewObjectID(), Filename: "a.txt", ContentType: "text/plain", Size: 2}
	if err := e.st.SaveAttachment(e.ctx, store.AttachmentFile{Attachment: att, TicketID: tk.ID, Data: []byte("hi")}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.st.AddResponse(e.ctx, tk.ID, store.AllTickets, store.NewResponse{
		Author: store.Actor{ID: e.customer.ID, Type: store.CreatorCustomer}, Description: "again",
		Source: store.SourceEmail, Attachments: []store.Attachment{att},
	}); err != nil {
		t.Fatal(err)
	}
	ev := e.event(tk.ID, store.EventResponseAdded)
	// The first attempt posted the text, then the upload failed.
	e.fake.ServerErrorNext("files.completeUploadExternal", 1, 502)
	if err := e.deliver(ev, 1); err == nil {
		t.Fatal("first attempt succeeded")
	}
	if err := e.deliver(ev, 2); err != nil {
		t.Fatal(err)
	}
	if err := e.deliver(ev, 3); !done(err) { // and once more after a lost completion
		t.Fatal(err)
	}
	got := e.replies(ts)
	if len(got) != 2 || len(got[1].Files) != 1 {
		t.Fatalf("thread after retries: %+v", got)
	}
}

func TestAgentResponsesMadeElsewhereAreMarked(t *testing.T) {
	e := newEnv(t)
	tk, ts := e.withRoot()
	by := store.Actor{ID: e.agent.ID, Type: store.CreatorAdmin, Via: store.SourceAPI}
	for _, r := range []store.NewResponse{
		{Author: by, Description: "We are on it.", Source: store.SourceAPI},
		{Author: by, Description: "Customer is a VIP.", Source: store.SourceAPI, Internal: true},
	} {
		if _, _, err := e.st.AddResponse(e.ctx, tk.ID, store.AllTickets, r); err != nil {
			t.Fatal(err)
		}
		e.mustDeliver(e.event(tk.ID, store.EventResponseAdded))
	}
	got := e.replies(ts)
	if len(got) != 2 {
		t.Fatalf("%d replies", len(got))
	}
	if s := blocksText(t, got[0].Blocks); !strings.Contains(s, "*<@U0BOB>* (agent) replied to the customer via API") || !strings.Contains(s, "We are on it.") {
		t.Errorf("agent reply:\n%s", s)
	}
	if s := blocksText(t, got[1].Blocks); !strings.Contains(s, ":lock: *Internal note* by *<@U0BOB>* via API") {
		t.Errorf("internal note:\n%s", s)
	}
}

func TestSlackAgentReplyIsNotPostedAgain(t *testing.T) {
	e := newEnv(t)
	tk, ts := e.withRoot()
	msg := e.fake.MessageEvent(slackfake.MessageSpec{ThreadTS: ts, User: "U0BOB", Text: "Fixed it."})
	if _, _, err := e.st.AddResponse(e.ctx, tk.ID, store.AllTickets, store.NewResponse{
		Author:      store.Actor{ID: e.agent.ID, Type: store.CreatorAdmin, Via: store.SourceSlack},
		Description: "Fixed it.", Source: store.SourceSlack, SourceKey: slackui.SourceKey(slackfake.ChannelID, msg.MessageTS),
	}); err != nil {
		t.Fatal(err)
	}
	posts := len(e.fake.CallsTo("chat.postMessage"))
	e.mustDeliver(e.event(tk.ID, store.EventResponseAdded))
	if n := len(e.fake.CallsTo("chat.postMessage")); n != posts {
		t.Fatalf("the agent's own Slack reply was posted again (%d posts, was %d)", n, posts)
	}
	if got := e.replies(ts); len(got) != 1 {
		t.Fatalf("thread %+v", got)
	}
}

func TestStatusChangeUpdatesRootAndAddsOneLine(t *testing.T) {
	e := newEnv(t)
	tk, ts := e.withRoot()
	st := store.StatusResolved
	if _, err := e.st.UpdateTicket(e.ctx, tk.ID, store.AllTickets, store.TicketUpdate{Status: &st},
		store.Actor{ID: e.agent.ID, Type: store.CreatorAdmin, Via: store.SourceAPI}); err != nil {
		t.Fatal(err)
	}
	ev := e.event(tk.ID, store.EventStatusChanged)
	e.mustDeliver(ev)
	root, _ := e.fake.Message(slackfake.ChannelID, ts)
	if root.Updates != 1 || !strings.Contains(blocksText(t, root.Blocks), "*Status*\nresolved") {
		t.Errorf("root after the change (%d updates):\n%s", root.Updates, blocksText(t, root.Blocks))
	}
	got := e.replies(ts)
	if len(got) != 1 || blocksText(t, got[0].Blocks) != "Status changed from *created* to *resolved* by *<@U0BOB>* via API" {
		t.Fatalf("thread %+v", got)
	}
	// A retry after a lost completion adds no second line.
	if err := e.deliver(ev, 2); err != nil {
		t.Fatal(err)
	}
	if n := len(e.replies(ts)); n != 1 {
		t.Fatalf("%d lines after a retry", n)
	}
}

func TestDeliveryOutcomesReactOnTheAgentsMessage(t *testing.T) {
	e := newEnv(t)
	tk, ts := e.withRoot()
	var resp [2]*store.Response
	var msgTS [2]string
	for i, text := range []string{"first", "second"} {
		msgTS[i] = e.fake.MessageEvent(slackfake.MessageSpec{ThreadTS: ts, User: "U0BOB", Text: text}).MessageTS
		got, _, err := e.st.AddResponse(e.ctx, tk.ID, store.AllTickets, store.NewResponse{
			Author: store.Actor{ID: e.agent.ID, Type: store.CreatorAdmin, Via: store.SourceSlack}, Description: text,
			Source: store.SourceSlack, SourceKey: slackui.SourceKey(slackfake.ChannelID, msgTS[i]),
		})
		if err != nil {
			t.Fatal(err)
		}
		resp[i] = &got.Response[len(got.Response)-1]
	}
	outcome := func(kind store.EventKind, r *store.Response, note string) store.Event {
		return store.Event{ID: bson.NewObjectID(), Kind: kind, TicketID: tk.ID, ResponseID: &r.ID,
			ActorType: store.CreatorSystem, Origin: store.SourceEmail, Note: note, At: time.Now()}
	}
	// The Slack sink's own outcome (a post into a customer's thread) is
	// not a mail to the customer: no reaction.
	slackOwn := outcome(store.EventResponseDelivered, resp[0], "")
	slackOwn.Origin = store.SourceSlack
	e.mustDeliver(slackOwn)
	if m, _ := e.fake.Message(slackfake.ChannelID, msgTS[0]); len(m.Reactions) != 0 {
		t.Fatalf("reacted on the Slack sink's own outcome: %+v", m.Reactions)
	}
	delivered := outcome(store.EventResponseDelivered, resp[0], "")
	e.mustDeliver(delivered)
	if err := e.deliver(delivered, 2); !done(err) { // already_reacted is success
		t.Fatal(err)
	}
	e.mustDeliver(outcome(store.EventResponseUndelivered, resp[1], "550 mailbox unavailable"))

	reactions := func(ts string) []string {
		m, _ := e.fake.Message(slackfake.ChannelID, ts)
		var out []string
		for _, r := range m.Reactions {
			out = append(out, r.Name)
		}
		return out
	}
	if got := reactions(msgTS[0]); len(got) != 1 || got[0] != ReactionDelivered {
		t.Errorf("delivered reply reactions %v", got)
	}
	if got := reactions(msgTS[1]); len(got) != 1 || got[0] != ReactionUndelivered {
		t.Errorf("undelivered reply reactions %v", got)
	}
	replies := e.replies(ts)
	last := blocksText(t, replies[len(replies)-1].Blocks)
	if !strings.Contains(last, "did not reach the customer: 550 mailbox unavailable") {
		t.Errorf("no failure line; last reply:\n%s", last)
	}
}

func TestRateLimitWaitsRetryAfter(t *testing.T) {
	e := newEnv(t)
	tk := e.newTicket()
	e.fake.RateLimitNext("chat.postMessage", 1, 7)
	err := e.deliver(e.event(tk.ID, store.EventTicketCreated), 1)
	var rl *slack.RateLimitedError
	if !errors.As(err, &rl) || rl.RetryAfter != 7*time.Second || notify.IsPermanent(err) {
		t.Fatalf("err %v, want the rate limit of 7s", err)
	}
}

func TestErrorsAreClassified(t *testing.T) {
	e := newEnv(t)
	tk := e.newTicket()
	ev := e.event(tk.ID, store.EventTicketCreated)
	for _, c := range []struct {
		name      string
		knob      func()
		attempt   int
		permanent bool
	}{
		{"not_in_channel", func() { e.fake.FailNext("chat.postMessage", 1, "not_in_channel") }, 1, true},
		{"invalid_auth", func() { e.fake.FailNext("chat.postMessage", 1, "invalid_auth") }, 1, true},
		{"history token_revoked", func() { e.fake.FailNext("conversations.history", 1, "token_revoked") }, 2, true},
		{"502", func() { e.fake.ServerErrorNext("chat.postMessage", 1, 502) }, 1, false},
		{"history 503", func() { e.fake.ServerErrorNext("conversations.history", 1, 503) }, 2, false},
		{"dropped", func() { e.fake.DropNext("chat.postMessage", 1) }, 1, false},
		{"unknown answer", func() { e.fake.FailNext("chat.postMessage", 1, "internal_error") }, 1, false},
	} {
		c.knob()
		err := e.deliver(ev, c.attempt)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		if got := notify.IsPermanent(err); got != c.permanent {
			t.Errorf("%s: permanent=%v, want %v (%v)", c.name, got, c.permanent, err)
		}
	}
	if n := len(e.fake.Roots(slackfake.ChannelID)); n != 0 {
		t.Fatalf("%d roots posted by failed attempts", n)
	}
}

func TestUnknownChannelIsPermanent(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Channel = "C0GONE" })
	tk := e.newTicket()
	err := e.deliver(e.event(tk.ID, store.EventTicketCreated), 1)
	if !notify.IsPermanent(err) || !strings.Contains(err.Error(), "channel_not_found") {
		t.Fatalf("err %v, want a permanent channel_not_found", err)
	}
}

func TestRootLinksTheCustomersSlackThread(t *testing.T) {
	for _, c := range []struct{ channel, want, not string }{
		{"C0HELP", "|their thread in <#C0HELP>>", ""},
		{"D0CUST", "|a direct message to the app>", "<#D0CUST>"}, // a DM is no channel to name
	} {
		e := newEnv(t)
		tk := e.newTicket()
		opening := e.fake.MessageEvent(slackfake.MessageSpec{Channel: c.channel, User: "U0ANN", Text: "help"})
		if err := e.st.BindThread(e.ctx, tk.ID, store.ThreadSlackCustomer, slackui.MessageKey(c.channel, opening.MessageTS)); err != nil {
			t.Fatal(err)
		}
		e.mustDeliver(e.event(tk.ID, store.EventTicketCreated))
		root, _ := e.fake.Message(slackfake.ChannelID, e.rootTS(tk.ID))
		text := blocksText(t, root.Blocks)
		if !strings.Contains(text, "https://fake.slack.com/archives/"+c.channel+"/p") || !strings.Contains(text, c.want) || (c.not != "" && strings.Contains(text, c.not)) {
			t.Errorf("root lacks the link to the customer's thread in %s:\n%s", c.channel, text)
		}
	}
}

func TestAssigneeChangeUpdatesRootAndAddsOneLine(t *testing.T) {
	e := newEnv(t)
	tk, ts := e.withRoot()
	by := store.Actor{ID: e.agent.ID, Type: store.CreatorAdmin, Via: store.SourceSlack}
	if _, err := e.st.UpdateTicket(e.ctx, tk.ID, store.AllTickets, store.TicketUpdate{AssigneeID: &e.agent.ID}, by); err != nil {
		t.Fatal(err)
	}
	e.mustDeliver(e.event(tk.ID, store.EventAssigneeChanged))
	root, _ := e.fake.Message(slackfake.ChannelID, ts)
	if root.Updates != 1 || !strings.Contains(blocksText(t, root.Blocks), "*Assignee*\n<@U0BOB>") {
		t.Errorf("root after the assignment (%d updates):\n%s", root.Updates, blocksText(t, root.Blocks))
	}
	none := bson.NilObjectID
	if _, err := e.st.UpdateTicket(e.ctx, tk.ID, store.AllTickets, store.TicketUpdate{AssigneeID: &none}, by); err != nil {
		t.Fatal(err)
	}
	e.mustDeliver(e.event(tk.ID, store.EventAssigneeChanged))
	var lines []string
	for _, m := range e.replies(ts) {
		lines = append(lines, blocksText(t, m.Blocks))
	}
	if strings.Join(lines, "\n") != "Assigned to *<@U0BOB>* by *<@U0BOB>* via Slack\nUnassigned by *<@U0BOB>* via Slack" {
		t.Errorf("thread lines %q", lines)
	}
	root, _ = e.fake.Message(slackfake.ChannelID, ts)
	if !strings.Contains(blocksText(t, root.Blocks), "*Assignee*\nunassigned") {
		t.Errorf("root after unassigning:\n%s", blocksText(t, root.Blocks))
	}
}
