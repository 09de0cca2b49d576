package slackloop

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/api"
	"github.com/ticketd/ticketd/ingest/slackin"
	"github.com/ticketd/ticketd/internal/slackfake"
	"github.com/ticketd/ticketd/internal/slackui"
	"github.com/ticketd/ticketd/notify"
	"github.com/ticketd/ticketd/notify/slackout"
	"github.com/ticketd/ticketd/store"
	"github.com/ticketd/ticketd/store/storetest"
)

// The people and channels of the tests.
const (
	annID    = "U0ANN"  // an agent of the app's workspace
	caraID   = "U0CARA" // a customer of Acme, over Slack Connect
	danID    = "U0DAN"  // a customer of Beta, over Slack Connect
	acmeTeam = "T0ACME"
	betaTeam = "T0BETA"
	acmeCh   = "C0ACME" // shared with Acme
	betaCh   = "C0BETA" // shared with Beta
	caraDM   = "D0CARA" // Cara's direct messages with the app
)

// loop is the daemon's Slack side on the real store and the fake Slack:
// the bridge applies envelopes, the relay and the sink's runner post.
type loop struct {
	t   testing.TB
	ctx context.Context
	f   *slackfake.Fake
	st  *store.Store
	b   *slackin.Bridge
	api *slack.Client
}

func newLoop(t testing.TB, configure func(*slackin.Options)) *loop {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := slackfake.New(t)
	f.AddUser(slackfake.User{ID: annID, RealName: "Ann Agent", Email: "ann@support.test"})
	f.AddUser(slackfake.User{ID: caraID, TeamID: acmeTeam, RealName: "Cara Customer", Email: "cara@acme.test"})
	f.AddUser(slackfake.User{ID: danID, TeamID: betaTeam, RealName: "Dan Beta", Email: "dan@beta.test"})
	f.AddChannel(acmeCh, "acme-support")
	f.AddChannel(betaCh, "beta-support")
	f.AddChannel(caraDM, "cara-dm")
	st := storetest.Open(t)
	if _, err := st.JoinDeployment(ctx, []string{slackout.Sink}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.FindOrCreateAgent(ctx, "ann@support.test", "Ann Agent", ""); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	api := slack.New(slackfake.BotToken, slack.OptionAPIURL(f.APIURL()))
	id, err := slackin.Identify(ctx, api)
	if err != nil {
		t.Fatal(err)
	}
	o := slackin.Options{Store: st, Slack: api, Channel: slackfake.ChannelID, BotUserID: id.BotUserID, BotID: id.BotID,
		TeamID: id.TeamID, IntakeChannels: []string{acmeCh, betaCh}, DirectMessages: true, Logger: log}
	if configure != nil {
		configure(&o)
	}
	b, err := slackin.New(o)
	if err != nil {
		t.Fatal(err)
	}
	sink, err := slackout.New(slackout.Options{Client: api, Channel: slackfake.ChannelID, BotUserID: id.BotUserID, Store: st, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	r, err := notify.NewRunner(notify.Options{Sink: slackout.Sink, PollInterval: time.Second, BackoffBase: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
		Outcome: func(ctx context.Context, d *store.Delivery, delivered bool, reason string) {
			if err := st.RecordDeliveryOutcome(ctx, d, delivered, reason); err != nil {
				t.Errorf("record outcome: %v", err)
			}
		}}, st, sink, log)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 2)
	go func() { _ = st.RunRelay(ctx, time.Second); done <- struct{}{} }()
	go func() { _ = r.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	return &loop{t: t, ctx: ctx, f: f, st: st, b: b, api: api}
}

// deliver hands an envelope to the bridge as the connection does.
func (l *loop) deliver(env slackfake.Envelope) {
	l.t.Helper()
	var err error
	switch env.Type {
	case slackfake.TypeEventsAPI:
		ev, perr := slackevents.ParseEvent(env.Payload, slackevents.OptionNoVerifyToken())
		if perr != nil {
			l.t.Fatal(perr)
		}
		cb := ev.Data.(*slackevents.EventsAPICallbackEvent)
		err = l.b.HandleEvent(l.ctx, ev, cb.EventID)
	case slackfake.TypeInteractive:
		var cb slack.InteractionCallback
		if err := json.Unmarshal(env.Payload, &cb); err != nil {
			l.t.Fatal(err)
		}
		err = l.b.HandleInteraction(l.ctx, cb)
	default:
		l.t.Fatalf("envelope type %s", env.Type)
	}
	if err != nil {
		l.t.Fatalf("deliver %s: %v", env.Type, err)
	}
}

// say is a message by user in channel (thread: under that ts).
func (l *loop) say(channel, thread, user, text string) slackfake.Envelope {
	env := l.f.MessageEvent(slackfake.MessageSpec{Channel: channel, ThreadTS: thread, User: user, Text: text})
	l.deliver(env)
	return env
}

// ticketOf is the ticket a customer's message opened.
func (l *loop) ticketOf(channel, ts string) *store.Ticket {
	l.t.Helper()
	id, err := l.st.TicketIDByThread(l.ctx, store.ThreadSlackCustomer, slackui.MessageKey(channel, ts))
	if err != nil {
		l.t.Fatalf("no ticket for %s/%s: %v", channel, ts, err)
	}
	tk, err := l.st.Ticket(l.ctx, id, store.AllTickets)
	if err != nil {
		l.t.Fatal(err)
	}
	return tk
}

// botPosts are the bot's messages in a thread: text and blocks.
func (l *loop) botPosts(channel, ts string) []string {
	var out []string
	for _, m := range l.f.Replies(channel, ts) {
		if m.User == slackfake.BotUserID {
			out = append(out, m.Text+"\n"+string(m.Blocks))
		}
	}
	return out
}

// waitPosts waits until the bot has posted n messages in a thread, the
// last one containing want, and returns them.
func (l *loop) waitPosts(channel, ts string, n int, want string) []string {
	l.t.Helper()
	l.f.Until(l.t, want+" in "+channel+"/"+ts, func() bool {
		p := l.botPosts(channel, ts)
		return len(p) >= n && strings.Contains(p[n-1], want)
	})
	return l.botPosts(channel, ts)
}

// idle waits until the sink's queue is empty.
func (l *loop) idle() {
	l.t.Helper()
	l.f.Until(l.t, "an empty outbox", func() bool {
		if _, err := l.st.RelayAll(l.ctx); err != nil {
			return false
		}
		n, err := l.st.CountDeliveries(l.ctx, store.DeliveryPending)
		return err == nil && n == 0
	})
}

// rootTS is the ticket's root message in the agents' channel.
func (l *loop) rootTS(tk *store.Ticket) string {
	l.t.Helper()
	var ts string
	l.f.Until(l.t, "the root message bound", func() bool {
		got, err := l.st.Ticket(l.ctx, tk.ID, store.AllTickets)
		if err == nil {
			_, ts, _ = slackui.ParseMessageKey(got.Thread(store.ThreadSlackAgents))
		}
		return ts != ""
	})
	return ts
}

// conversation runs a whole ticket in a customer's channel: opened, acked,
// answered by an agent from the agents' thread, answered by the customer
// in their thread, resolved with a button, and reopened by the customer.
// Each step shows once in the customer's thread.
func conversation(t *testing.T, channel string) {
	l := newLoop(t, nil)
	open := l.say(channel, "", caraID, "Printer on fire\nIt smokes since <@"+annID+"> looked at it, see <https://status.test|status>.")
	tk := l.ticketOf(channel, open.MessageTS)
	if tk.CreatorType != store.CreatorCustomer || tk.Source != store.SourceSlack || tk.Subject != "Printer on fire" ||
		tk.Category != slackin.DefaultIntakeCategory || tk.TeamID != "slack:"+acmeTeam || tk.SourceKey != slackui.SourceKey(channel, open.MessageTS) {
		t.Fatalf("ticket: %+v", tk)
	}
	if want := "Printer on fire\nIt smokes since @Ann Agent looked at it, see status (https://status.test)."; tk.Description != want {
		t.Errorf("description %q, want %q", tk.Description, want)
	}
	cara, err := l.st.Customer(l.ctx, tk.CreatorID)
	if err != nil || cara.Email != "cara@acme.test" || cara.Name != "Cara Customer" || cara.SlackUserID != caraID || cara.SlackTeamID != acmeTeam {
		t.Fatalf("customer: %+v %v", cara, err)
	}

	// The acknowledgement in the customer's thread, and the agents' root
	// linking that thread.
	l.waitPosts(channel, open.MessageTS, 1, "#"+itoa(tk.RefID))
	root := l.rootTS(tk)
	if m, _ := l.f.Message(slackfake.ChannelID, root); !strings.Contains(string(m.Blocks), "archives/"+channel+"/p"+strings.ReplaceAll(open.MessageTS, ".", "")) {
		t.Errorf("the root does not link the customer's thread: %s", m.Blocks)
	}

	// An agent answers from the agents' thread.
	reply := l.say(slackfake.ChannelID, root, annID, "Please unplug it.")
	posts := l.waitPosts(channel, open.MessageTS, 2, "Please unplug it.")
	if !strings.Contains(posts[1], "Ann Agent") {
		t.Errorf("the reply is not signed by the agent: %q", posts[1])
	}
	// The agent sees that the customer got it.
	l.f.Until(t, "the delivered reaction on the agent's reply", func() bool {
		m, _ := l.f.Message(slackfake.ChannelID, reply.MessageTS)
		return len(m.Reactions) == 1 && m.Reactions[0].Name == slackout.ReactionDeliveredInSlack
	})

	// The customer answers in their thread: a customer response, shown to
	// the agents.
	l.say(channel, open.MessageTS, caraID, "Unplugged, thanks")
	l.f.Until(t, "the customer's answer in the agents' thread", func() bool {
		for _, p := range l.botPosts(slackfake.ChannelID, root) {
			if strings.Contains(p, "Unplugged, thanks") {
				return true
			}
		}
		return false
	})

	// The agent resolves with the root's button.
	l.deliver(l.f.BlockActionEnvelope(annID, slackfake.ChannelID, root, slackfake.Action{
		ActionID: slackui.StatusActionID(store.StatusResolved), BlockID: slackui.BlockActions, Type: "button",
		Value: slackui.Value(tk.ID, string(store.StatusResolved))}))
	l.waitPosts(channel, open.MessageTS, 3, "resolved")

	// The customer writes again: the ticket reopens, and nothing more is
	// said in their thread (they know).
	l.say(channel, open.MessageTS, caraID, "It smokes again")
	l.f.Until(t, "the ticket reopened", func() bool {
		got, err := l.st.Ticket(l.ctx, tk.ID, store.AllTickets)
		return err == nil && got.Status == store.StatusOpen
	})
	l.idle()
	got := l.botPosts(channel, open.MessageTS)
	if len(got) != 3 || !strings.Contains(got[0], "#"+itoa(tk.RefID)) || !strings.Contains(got[1], "Please unplug it.") || !strings.Contains(got[2], "resolved") {
		t.Fatalf("the customer's thread shows %d posts, want ack, reply, status once each: %q", len(got), got)
	}
	final, _ := l.st.Ticket(l.ctx, tk.ID, store.AllTickets)
	var kinds []string
	for _, r := range final.Response {
		kinds = append(kinds, string(r.CreatorType)+":"+r.Description)
	}
	if strings.Join(kinds, "|") != "admin:Please unplug it.|customer:Unplugged, thanks|customer:It smokes again" {
		t.Errorf("responses: %q", kinds)
	}
	if n, _ := l.st.CountDeliveries(l.ctx, store.DeliveryDead); n != 0 {
		t.Errorf("%d dead letters", n)
	}
}

func TestSharedChannelConversation(t *testing.T) { conversation(t, acmeCh) }

func TestDirectMessageConversation(t *testing.T) { conversation(t, caraDM) }

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// A redelivered message, under its event id or another (a crash before the
// id was recorded), opens one ticket and is acknowledged once.
func TestRedeliveredMessageOpensOneTicket(t *testing.T) {
	l := newLoop(t, nil)
	env := l.say(acmeCh, "", caraID, "Once only")
	l.deliver(env)
	again := env
	var payload map[string]any
	if err := json.Unmarshal(env.Payload, &payload); err != nil {
		t.Fatal(err)
	}
	payload["event_id"] = "EvOTHER"
	again.Payload, _ = json.Marshal(payload)
	l.deliver(again)
	tk := l.ticketOf(acmeCh, env.MessageTS)
	l.waitPosts(acmeCh, env.MessageTS, 1, "#"+itoa(tk.RefID))
	l.idle()
	if _, n, err := l.st.ListTickets(l.ctx, store.AllTickets, store.ListQuery{}); err != nil || n != 1 {
		t.Fatalf("%d tickets (%v), want 1", n, err)
	}
	if p := l.botPosts(acmeCh, env.MessageTS); len(p) != 1 {
		t.Errorf("%d acknowledgements: %q", len(p), p)
	}
	if roots := l.f.Roots(slackfake.ChannelID); len(roots) != 1 {
		t.Errorf("%d root messages in the agents' channel", len(roots))
	}
}

// Two companies in two shared channels: each team sees its own tickets
// only, in the store and through the API.
func TestTwoOrganisationsSeeOnlyTheirOwnTickets(t *testing.T) {
	l := newLoop(t, nil)
	a := l.say(acmeCh, "", caraID, "Acme's problem")
	b := l.say(betaCh, "", danID, "Beta's problem")
	acme, beta := l.ticketOf(acmeCh, a.MessageTS), l.ticketOf(betaCh, b.MessageTS)
	for _, c := range []struct {
		team string
		want *store.Ticket
	}{{"slack:" + acmeTeam, acme}, {"slack:" + betaTeam, beta}} {
		list, n, err := l.st.ListTickets(l.ctx, store.TeamScope(c.team), store.ListQuery{})
		if err != nil || n != 1 || list[0].ID != c.want.ID {
			t.Errorf("team %s sees %d tickets (%v): %+v", c.team, n, err, list)
		}
		other := acme
		if c.want == acme {
			other = beta
		}
		if _, err := l.st.Ticket(l.ctx, other.ID, store.TeamScope(c.team)); err == nil {
			t.Errorf("team %s reads the other company's ticket", c.team)
		}
	}
	// The same through the API, with each customer's token.
	srv, err := api.New(l.st, api.Options{JWTSecret: []byte("a secret of at least 16 bytes")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	get := func(team string, who bson.ObjectID, path string) (int, string) {
		t.Helper()
		tok, err := api.NewToken([]byte("a secret of at least 16 bytes"), who, api.RoleCustomer, team, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest("GET", hs.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for _, c := range []struct {
		team        string
		mine, other *store.Ticket
	}{{"slack:" + acmeTeam, acme, beta}, {"slack:" + betaTeam, beta, acme}} {
		code, body := get(c.team, c.mine.CreatorID, "/api/ticket/fetch")
		if code != http.StatusOK || !strings.Contains(body, c.mine.ID.Hex()) || strings.Contains(body, c.other.ID.Hex()) {
			t.Errorf("team %s lists (%d): %s", c.team, code, body)
		}
		if code, body := get(c.team, c.mine.CreatorID, "/api/ticket/fetch-one?id="+c.other.ID.Hex()); code != http.StatusNotFound {
			t.Errorf("team %s fetches the other company's ticket: %d %s", c.team, code, body)
		}
	}
	// Someone of Beta writing in Acme's customer thread (a channel shared
	// with several companies) attaches nothing to Acme's ticket.
	l.f.AddUser(slackfake.User{ID: "U0EVE", TeamID: betaTeam, RealName: "Eve Beta"})
	l.say(acmeCh, a.MessageTS, "U0EVE", "Let me in")
	if got := l.ticketOf(acmeCh, a.MessageTS); len(got.Response) != 0 {
		t.Errorf("a writer of another team added to Acme's ticket: %+v", got.Response)
	}
}

// channelTeams names the team of a channel's tickets.
func TestChannelTeamsNameTheTeam(t *testing.T) {
	l := newLoop(t, func(o *slackin.Options) { o.ChannelTeams = map[string]string{acmeCh: "acme-corp"} })
	env := l.say(acmeCh, "", caraID, "Mapped")
	if tk := l.ticketOf(acmeCh, env.MessageTS); tk.TeamID != "acme-corp" {
		t.Errorf("team %q, want acme-corp", tk.TeamID)
	}
}
