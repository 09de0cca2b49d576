package slackfake_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"

	"github.com/ticketd/ticketd/internal/slackfake"
)

func client(f *slackfake.Fake) *slack.Client {
	return slack.New(slackfake.BotToken, slack.OptionAPIURL(f.APIURL()), slack.OptionAppLevelToken(slackfake.AppToken))
}

func TestWebAPIWithRealClient(t *testing.T) {
	ctx := context.Background()
	f := slackfake.New(t)
	f.AddUser(slackfake.User{ID: "U1", RealName: "Ada Agent", Email: "ada@example.com"})
	api := client(f)

	auth, err := api.AuthTestContext(ctx)
	if err != nil || auth.UserID != slackfake.BotUserID || auth.TeamID != slackfake.TeamID || auth.BotID != slackfake.BotID {
		t.Fatalf("auth.test = %+v, %v", auth, err)
	}

	meta := slack.SlackMetadata{EventType: "ticket_posted", EventPayload: map[string]any{"ticket": "T-42"}}
	blocks := []slack.Block{slack.NewSectionBlock(slack.NewTextBlockObject("mrkdwn", "*#42* printer on fire", false, false), nil, nil)}
	ch, root, err := api.PostMessageContext(ctx, slackfake.ChannelID, slack.MsgOptionText("#42", false),
		slack.MsgOptionBlocks(blocks...), slack.MsgOptionMetadata(meta))
	if err != nil || ch != slackfake.ChannelID || root == "" {
		t.Fatalf("postMessage = %q %q %v", ch, root, err)
	}
	_, reply, err := api.PostMessageContext(ctx, slackfake.ChannelID, slack.MsgOptionText("a reply", false), slack.MsgOptionTS(root))
	if err != nil || reply <= root {
		t.Fatalf("reply ts %q after root %q: %v", reply, root, err)
	}
	_, other, err := api.PostMessageContext(ctx, slackfake.ChannelID, slack.MsgOptionText("#43", false))
	if err != nil || other <= reply {
		t.Fatalf("ts %q after %q: %v", other, reply, err)
	}
	if _, _, err := api.PostMessageContext(ctx, "C0NOWHERE", slack.MsgOptionText("x", false)); err == nil || err.Error() != "channel_not_found" {
		t.Fatalf("unknown channel: %v", err)
	}
	long := []slack.Block{slack.NewSectionBlock(slack.NewTextBlockObject("mrkdwn", strings.Repeat("é", 3001), false, false), nil, nil)}
	if _, _, err := api.PostMessageContext(ctx, slackfake.ChannelID, slack.MsgOptionBlocks(long...)); err == nil || err.Error() != "invalid_blocks" {
		t.Fatalf("3001-rune section: %v", err)
	}

	// Find the root by its metadata, as the sink does before re-posting.
	hist, err := api.GetConversationHistoryContext(ctx, &slack.GetConversationHistoryParameters{
		ChannelID: slackfake.ChannelID, IncludeAllMetadata: true, Limit: 1})
	if err != nil || len(hist.Messages) != 1 || hist.Messages[0].Timestamp != other || !hist.HasMore {
		t.Fatalf("history page 1 = %+v, %v", hist, err)
	}
	hist, err = api.GetConversationHistoryContext(ctx, &slack.GetConversationHistoryParameters{
		ChannelID: slackfake.ChannelID, IncludeAllMetadata: true, Cursor: hist.ResponseMetaData.NextCursor})
	if err != nil || len(hist.Messages) != 1 || hist.Messages[0].Timestamp != root {
		t.Fatalf("history page 2 (replies are not in history) = %+v, %v", hist, err)
	}
	got := hist.Messages[0]
	if got.Metadata.EventType != "ticket_posted" || got.Metadata.EventPayload["ticket"] != "T-42" || got.ReplyCount != 1 || len(got.Blocks.BlockSet) != 1 {
		t.Fatalf("root in history = %+v", got)
	}
	hist, err = api.GetConversationHistoryContext(ctx, &slack.GetConversationHistoryParameters{ChannelID: slackfake.ChannelID, Oldest: root})
	if err != nil || len(hist.Messages) != 1 || hist.Messages[0].Timestamp != other || hist.Messages[0].Metadata.EventType != "" {
		t.Fatalf("history after root, without metadata = %+v, %v", hist, err)
	}
	msgs, _, _, err := api.GetConversationRepliesContext(ctx, &slack.GetConversationRepliesParameters{ChannelID: slackfake.ChannelID, Timestamp: root})
	if err != nil || len(msgs) != 2 || msgs[0].Timestamp != root || msgs[1].Timestamp != reply || msgs[1].ThreadTimestamp != root {
		t.Fatalf("replies = %+v, %v", msgs, err)
	}

	if _, _, _, err := api.UpdateMessageContext(ctx, slackfake.ChannelID, root, slack.MsgOptionText("#42 resolved", false)); err != nil {
		t.Fatal(err)
	}
	if m, _ := f.Message(slackfake.ChannelID, root); m.Text != "#42 resolved" || m.Updates != 1 || m.Metadata == nil {
		t.Fatalf("updated root = %+v", m)
	}
	if _, err := api.PostEphemeralContext(ctx, slackfake.ChannelID, "U1", slack.MsgOptionText("only you", false)); err != nil {
		t.Fatal(err)
	}
	if e := f.Ephemerals(); len(e) != 1 || e[0].User != "U1" || e[0].Text != "only you" {
		t.Fatalf("ephemerals = %+v", e)
	}
	link, err := api.GetPermalinkContext(ctx, &slack.PermalinkParameters{Channel: slackfake.ChannelID, Ts: reply})
	if err != nil || !strings.Contains(link, "/archives/"+slackfake.ChannelID+"/p") || !strings.Contains(link, "thread_ts="+root) {
		t.Fatalf("permalink = %q, %v", link, err)
	}

	ref := slack.NewRefToMessage(slackfake.ChannelID, reply)
	if err := api.AddReactionContext(ctx, "email", ref); err != nil {
		t.Fatal(err)
	}
	if err := api.AddReactionContext(ctx, "email", ref); err == nil || err.Error() != "already_reacted" {
		t.Fatalf("second add: %v", err)
	}
	if m, _ := f.Message(slackfake.ChannelID, reply); len(m.Reactions) != 1 || m.Reactions[0].Name != "email" {
		t.Fatalf("reactions = %+v", m.Reactions)
	}
	if err := api.RemoveReactionContext(ctx, "email", ref); err != nil {
		t.Fatal(err)
	}
	if err := api.RemoveReactionContext(ctx, "email", ref); err == nil || err.Error() != "no_reaction" {
		t.Fatalf("second remove: %v", err)
	}

	u, err := api.GetUserInfoContext(ctx, "U1")
	if err != nil || u.RealName != "Ada Agent" || u.Profile.Email != "ada@example.com" || u.IsBot || u.TeamID != slackfake.TeamID {
		t.Fatalf("users.info = %+v, %v", u, err)
	}
	if _, err := api.GetUserInfoContext(ctx, "U404"); err == nil || err.Error() != "user_not_found" {
		t.Fatalf("unknown user: %v", err)
	}
	if bot, err := api.GetUserInfoContext(ctx, slackfake.BotUserID); err != nil || !bot.IsBot {
		t.Fatalf("bot user = %+v, %v", bot, err)
	}

	// The external-upload flow of UploadFileV2.
	sum, err := api.UploadFileContext(ctx, slack.UploadFileParameters{Filename: "log.txt", Content: "hello file",
		FileSize: len("hello file"), Channel: slackfake.ChannelID, ThreadTimestamp: root, Title: "the log"})
	if err != nil || sum.ID == "" || sum.Title != "the log" {
		t.Fatalf("upload = %+v, %v", sum, err)
	}
	fl, _ := f.File(sum.ID)
	if string(fl.Content) != "hello file" || !fl.Shared || fl.ThreadTS != root {
		t.Fatalf("file = %+v", fl)
	}
	if rs := f.Replies(slackfake.ChannelID, root); len(rs) != 2 || len(rs[1].Files) != 1 {
		t.Fatalf("thread after upload = %+v", rs)
	}

	calls := f.WaitCalls(t, "chat.postMessage", 5)
	if calls[0].Params.Get("metadata") == "" || calls[1].Params.Get("thread_ts") != root || calls[0].Token != slackfake.BotToken {
		t.Fatalf("recorded posts = %+v", calls[:2])
	}
	if ups := f.CallsTo(slackfake.UploadMethod); len(ups) != 1 || string(ups[0].Body) != "hello file" {
		t.Fatalf("upload calls = %+v", ups)
	}

	bad := slack.New("xoxb-wrong", slack.OptionAPIURL(f.APIURL()))
	if _, err := bad.AuthTestContext(ctx); err == nil || err.Error() != "invalid_auth" {
		t.Fatalf("wrong token: %v", err)
	}
}

func TestDownloadAddedFile(t *testing.T) {
	f := slackfake.New(t)
	fl := f.AddFile("photo.png", "image/png", []byte("PNG..."))
	env := f.MessageEvent(slackfake.MessageSpec{User: "U1", Text: "see attached", Files: []string{fl.ID}})
	ev, err := slackevents.ParseEvent(env.Payload, slackevents.OptionNoVerifyToken())
	if err != nil {
		t.Fatal(err)
	}
	msg := ev.InnerEvent.Data.(*slackevents.MessageEvent)
	if msg.Message == nil || len(msg.Message.Files) != 1 || msg.SubType != "file_share" {
		t.Fatalf("files in event: %+v", msg)
	}
	var b strings.Builder
	if err := client(f).GetFileContext(context.Background(), msg.Message.Files[0].URLPrivateDownload, &b); err != nil || b.String() != "PNG..." {
		t.Fatalf("download = %q, %v", b.String(), err)
	}
}

func TestKnobs(t *testing.T) {
	ctx := context.Background()
	f := slackfake.New(t)
	api := client(f)
	post := func() error {
		_, _, err := api.PostMessageContext(ctx, slackfake.ChannelID, slack.MsgOptionText("x", false))
		return err
	}

	f.FailNext("chat.postMessage", 1, "not_in_channel")
	if err := post(); err == nil || err.Error() != "not_in_channel" {
		t.Fatalf("FailNext: %v", err)
	}
	f.RateLimitNext("chat.postMessage", 1, 7)
	var rl *slack.RateLimitedError
	if err := post(); !errors.As(err, &rl) || rl.RetryAfter != 7*time.Second {
		t.Fatalf("RateLimitNext: %v", err)
	}
	f.ServerErrorNext(slackfake.AnyMethod, 1, http.StatusServiceUnavailable)
	var sc slack.StatusCodeError
	if err := post(); !errors.As(err, &sc) || sc.Code != 503 {
		t.Fatalf("ServerErrorNext: %v", err)
	}
	f.DropNext("chat.postMessage", 1)
	if err := post(); err == nil || errors.As(err, &sc) {
		t.Fatalf("DropNext: %v", err)
	}
	if err := post(); err != nil {
		t.Fatalf("after the knobs: %v", err)
	}
	if n := len(f.Roots(slackfake.ChannelID)); n != 1 {
		t.Fatalf("%d messages stored, want only the last post", n)
	}

	f.Refuse()
	// The first post may find its pooled keep-alive connection cut (EOF); the
	// next one dials and is refused.
	if err := post(); err == nil {
		t.Fatal("post through a refused port succeeded")
	}
	if err := post(); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("refused port: %v", err)
	}
	f.Restore()
	if err := post(); err != nil {
		t.Fatalf("after Restore: %v", err)
	}
	calls := f.CallsTo("chat.postMessage")
	want := []int{200, 429, 503, 0, 200, 200}
	if len(calls) != len(want) {
		t.Fatalf("%d calls recorded, want %d (a refused connection is no call)", len(calls), len(want))
	}
	for i, c := range calls {
		if c.Status != want[i] {
			t.Errorf("call %d status %d, want %d", i, c.Status, want[i])
		}
	}
}

// runSocket runs a real socketmode client that acks every envelope once it
// has been read, and hands each event to got.
func runSocket(t *testing.T, f *slackfake.Fake, got chan<- socketmode.Event) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	smc := socketmode.New(client(f))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = smc.RunContext(ctx)
	}()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case ev := <-smc.Events:
				if ev.Request != nil && ev.Request.EnvelopeID != "" {
					var payload any
					if ev.Type == socketmode.EventTypeSlashCommand {
						payload = map[string]string{"text": "answered"}
					}
					_ = smc.Ack(*ev.Request, payload)
				}
				select {
				case got <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func nextOf(t *testing.T, got <-chan socketmode.Event, typ socketmode.EventType) socketmode.Event {
	t.Helper()
	timeout := time.After(slackfake.DefaultTimeout)
	for {
		select {
		case ev := <-got:
			if ev.Type == typ {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s event", typ)
		}
	}
}

func TestSocketModeWithRealClient(t *testing.T) {
	f := slackfake.New(t)
	f.AddUser(slackfake.User{ID: "U1", RealName: "Ada Agent"})
	got := make(chan socketmode.Event, 16)
	runSocket(t, f, got)
	f.WaitConnections(t, 1)

	// A thread reply by a human.
	root := f.MessageEvent(slackfake.MessageSpec{User: "U1", Text: "root"})
	env := f.MessageEvent(slackfake.MessageSpec{User: "U1", Text: "hello from slack", ThreadTS: root.MessageTS})
	f.MustSend(t, env)
	ev := nextOf(t, got, socketmode.EventTypeEventsAPI)
	api := ev.Data.(slackevents.EventsAPIEvent)
	cb := api.Data.(*slackevents.EventsAPICallbackEvent)
	msg, ok := api.InnerEvent.Data.(*slackevents.MessageEvent)
	if !ok || msg.Text != "hello from slack" || msg.User != "U1" || msg.ThreadTimeStamp != root.MessageTS ||
		msg.Channel != slackfake.ChannelID || cb.EventID != env.EventID || msg.ChannelType != "channel" {
		t.Fatalf("message event = %+v (callback %+v)", api.InnerEvent.Data, cb)
	}
	if ack := f.WaitAck(t, env.EnvelopeID); ack.Conn != 1 {
		t.Fatalf("ack = %+v", ack)
	}

	// A reaction on the root.
	f.MustSend(t, f.ReactionAddedEvent("U1", "white_check_mark", slackfake.ChannelID, root.MessageTS))
	ev = nextOf(t, got, socketmode.EventTypeEventsAPI)
	re, ok := ev.Data.(slackevents.EventsAPIEvent).InnerEvent.Data.(*slackevents.ReactionAddedEvent)
	if !ok || re.Reaction != "white_check_mark" || re.Item.Timestamp != root.MessageTS || re.User != "U1" {
		t.Fatalf("reaction event = %+v", ev.Data)
	}

	// A button and a select on a message.
	for _, a := range []slackfake.Action{
		{ActionID: "status", BlockID: "actions", Type: "button", Value: "resolved"},
		{ActionID: "priority", BlockID: "actions", Type: "static_select", Value: "high"},
	} {
		env := f.BlockActionEnvelope("U1", slackfake.ChannelID, root.MessageTS, a)
		f.MustSend(t, env)
		ev = nextOf(t, got, socketmode.EventTypeInteractive)
		ic := ev.Data.(slack.InteractionCallback)
		if ic.Type != slack.InteractionTypeBlockActions || ic.User.ID != "U1" || len(ic.ActionCallback.BlockActions) != 1 ||
			ic.Container.MessageTs != root.MessageTS || ic.Channel.ID != slackfake.ChannelID {
			t.Fatalf("interaction = %+v", ic)
		}
		ba := ic.ActionCallback.BlockActions[0]
		if ba.ActionID != a.ActionID || (ba.Value != a.Value && ba.SelectedOption.Value != a.Value) {
			t.Fatalf("block action = %+v", ba)
		}
		f.WaitAck(t, env.EnvelopeID)
	}

	// A slash command; the ack carries the answer.
	cmdEnv := f.SlashCommandEnvelope("U1", slackfake.ChannelID, "/ticket", "42 resolved")
	f.MustSend(t, cmdEnv)
	ev = nextOf(t, got, socketmode.EventTypeSlashCommand)
	if cmd := ev.Data.(slack.SlashCommand); cmd.Command != "/ticket" || cmd.Text != "42 resolved" || cmd.UserID != "U1" {
		t.Fatalf("command = %+v", cmd)
	}
	if ack := f.WaitAck(t, cmdEnv.EnvelopeID); !strings.Contains(string(ack.Payload), "answered") {
		t.Fatalf("command ack = %+v", ack)
	}

	// Dropped: the client reconnects and gets what is sent next.
	f.DropSockets()
	f.WaitConnections(t, 2)
	again := f.MessageEvent(slackfake.MessageSpec{User: "U1", Text: "after the drop"})
	f.MustSend(t, again)
	if ack := f.WaitAck(t, again.EnvelopeID); ack.Conn != 2 {
		t.Fatalf("ack after reconnect on conn %d", ack.Conn)
	}
	// Slack's polite disconnect: a new connection too.
	f.RequestDisconnect()
	f.WaitConnections(t, 3)
	if err := f.Redeliver(again.EnvelopeID); err != nil {
		t.Fatal(err)
	}
	ev = nextOf(t, got, socketmode.EventTypeEventsAPI)
	for ev.Request.RetryAttempt != 1 {
		ev = nextOf(t, got, socketmode.EventTypeEventsAPI)
	}
	f.Until(t, "two acks of the redelivered envelope", func() bool { return len(f.AcksFor(again.EnvelopeID)) == 2 })
	if got := f.CallsTo("apps.connections.open"); len(got) != 3 || got[0].Token != slackfake.AppToken {
		t.Fatalf("connections.open calls = %+v", got)
	}
	if u := f.Unacked(); len(u) != 0 {
		t.Fatalf("unacked: %v", u)
	}
}

func TestTwoConnections(t *testing.T) {
	f := slackfake.New(t)
	got1 := make(chan socketmode.Event, 16)
	got2 := make(chan socketmode.Event, 16)
	runSocket(t, f, got1)
	f.WaitConnections(t, 1)
	runSocket(t, f, got2)
	f.WaitConnections(t, 2)
	env := f.MessageEvent(slackfake.MessageSpec{User: "U1", Text: "to the first"})
	if err := f.SendTo(1, env); err != nil {
		t.Fatal(err)
	}
	if ack := f.WaitAck(t, env.EnvelopeID); ack.Conn != 1 {
		t.Fatalf("ack on conn %d", ack.Conn)
	}
	env = f.MessageEvent(slackfake.MessageSpec{User: "U1", Text: "to the newest"})
	f.MustSend(t, env)
	if ack := f.WaitAck(t, env.EnvelopeID); ack.Conn != 2 {
		t.Fatalf("ack on conn %d", ack.Conn)
	}
	if f.OpenConnections() != 2 {
		t.Fatalf("%d open", f.OpenConnections())
	}
}

func TestSignedHTTPRequest(t *testing.T) {
	f := slackfake.New(t)
	const secret = "8f742231b10e8888abcd99yyyzzz85a5"
	var verified, form string
	srv := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		sv, err := slack.NewSecretsVerifier(r.Header, secret)
		if err == nil {
			_, _ = sv.Write(body)
			err = sv.Ensure()
		}
		if err != nil {
			verified = err.Error()
		} else {
			verified = "ok"
		}
		form = r.URL.Path + " " + r.Header.Get("X-Slack-Retry-Num")
	})
	env := f.SlashCommandEnvelope("U1", slackfake.ChannelID, "/ticket", "42")
	env.RetryAttempt, env.RetryReason = 1, "http_timeout"
	req := env.HTTPRequest("http://daemon", secret, time.Now())
	rec := &discard{header: http.Header{}}
	srv.ServeHTTP(rec, req)
	if verified != "ok" || form != "/slack/commands 1" {
		t.Fatalf("verified %q, request %q", verified, form)
	}
	srv.ServeHTTP(rec, env.HTTPRequest("http://daemon", "other-secret", time.Now()))
	if verified == "ok" {
		t.Fatal("a request signed with another secret verified")
	}
}

type discard struct{ header http.Header }

func (d *discard) Header() http.Header         { return d.header }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

// Edits, deletions and the echo of the bot's own posts arrive as Slack sends
// them, so the handlers' loop protection and audit paths can be tested.
func TestEditDeleteAndEchoEvents(t *testing.T) {
	f := slackfake.New(t)
	got := make(chan socketmode.Event, 16)
	runSocket(t, f, got)
	f.WaitConnections(t, 1)

	reply := f.MessageEvent(slackfake.MessageSpec{User: "U1", Text: "original"})
	f.MustSend(t, f.MessageChangedEvent(slackfake.ChannelID, reply.MessageTS, "edited"))
	msg := nextOf(t, got, socketmode.EventTypeEventsAPI).Data.(slackevents.EventsAPIEvent).InnerEvent.Data.(*slackevents.MessageEvent)
	if msg.SubType != "message_changed" || msg.Message == nil || msg.Message.Text != "edited" || msg.Message.Timestamp != reply.MessageTS ||
		msg.PreviousMessage == nil || msg.PreviousMessage.Text != "original" {
		t.Fatalf("message_changed = %+v", msg)
	}
	f.MustSend(t, f.MessageDeletedEvent(slackfake.ChannelID, reply.MessageTS))
	msg = nextOf(t, got, socketmode.EventTypeEventsAPI).Data.(slackevents.EventsAPIEvent).InnerEvent.Data.(*slackevents.MessageEvent)
	if msg.SubType != "message_deleted" || msg.DeletedTimeStamp != reply.MessageTS {
		t.Fatalf("message_deleted = %+v", msg)
	}
	if _, ok := f.Message(slackfake.ChannelID, reply.MessageTS); ok {
		t.Fatal("deleted message still stored")
	}

	f.EchoPosts(true)
	_, ts, err := client(f).PostMessageContext(context.Background(), slackfake.ChannelID, slack.MsgOptionText("from the bot", false))
	if err != nil {
		t.Fatal(err)
	}
	msg = nextOf(t, got, socketmode.EventTypeEventsAPI).Data.(slackevents.EventsAPIEvent).InnerEvent.Data.(*slackevents.MessageEvent)
	if msg.TimeStamp != ts || msg.BotID != slackfake.BotID || msg.User != slackfake.BotUserID || msg.Text != "from the bot" {
		t.Fatalf("echo = %+v", msg)
	}
}
