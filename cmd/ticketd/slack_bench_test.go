package main

// Issue 7's figures, measured against the real daemon (serve, with the email
// and Slack bridges configured as an operator would) talking to the fake
// Slack and a local SMTP server, each with a baseline measured in the same
// run. BENCHMARKS.md quotes them; no timing is asserted anywhere.
//
//	go test ./cmd/ticketd/ -run '^$' -bench SlackRootFromAPI -benchtime 100x
//	go test ./cmd/ticketd/ -run '^$' -bench SlackReplyToSMTP -benchtime 100x
//	go test ./cmd/ticketd/ -run '^$' -bench SlackBurst -benchtime 1x

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/internal/slackfake"
	"github.com/ticketd/ticketd/internal/slackui"
	"github.com/ticketd/ticketd/notify/email/smtptest"
	"github.com/ticketd/ticketd/store"
)

// The agent who answers from Slack in the benchmarks: a full member of the
// fake workspace with an email address, so the bridge makes them an agent.
const benchAgentID = "U0ALEX"

// benchDesk is a running daemon with both bridges, its fake Slack, its SMTP
// server, and tokens for its API.
type benchDesk struct {
	tb       testing.TB
	ctx      context.Context
	fake     *slackfake.Fake
	smtp     *smtptest.Server
	base     string
	customer string // token of a customer with an email address
	admin    string // token of an agent
	cfgPath  string
	limits   store.Limits
}

// benchTicket is a ticket with its thread in the agents' channel.
type benchTicket struct {
	id     string
	rootTS string
}

// startBenchDesk starts the daemon through serve, as `ticketd serve` does, and
// waits for its Socket Mode connection. The customer is put in the store
// before the daemon opens it (the API's tokens carry no address, and the
// mail needs one).
func startBenchDesk(tb testing.TB) *benchDesk {
	tb.Helper()
	ctx := context.Background()
	fake := slackfake.New(tb)
	fake.Timeout = 5 * time.Minute // a burst of a thousand events on two shared cores
	fake.AddUser(slackfake.User{ID: benchAgentID, RealName: "Alex Agent", Email: "alex@support.test"})
	mail := smtptest.Start(tb)
	imapPort, _ := startIMAP(tb) // the mailbox stays empty: replies go out, none come in
	dir := tb.TempDir()
	cfgPath := filepath.Join(dir, "ticketd.yaml")
	// The Slack keys as an operator writes them: the delivery defaults, so
	// only the relay's signal wakes the runners.
	cfgText := emailYAML(dir, imapPort, mail.Port()) + fmt.Sprintf(`
slack:
  enabled: true
  mode: socket
  botToken: %s
  appToken: %s
  apiURL: %s
  channel: %s
`, slackfake.BotToken, slackfake.AppToken, fake.APIURL(), slackfake.ChannelID)
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		tb.Fatal(err)
	}
	cfg, err := loadConfig(cfgPath, noEnv)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Log.Level = "warn" // debug lines for every delivery would be measured too
	limits := store.Limits{MaxSubject: cfg.Tickets.MaxSubject, MaxDescription: cfg.Tickets.MaxDescription}
	st, err := store.Open(ctx, store.OpenOptions{DataDir: cfg.DataDir, Database: cfg.Store.Database, Limits: limits, Logger: quietLog()})
	if err != nil {
		tb.Fatal(err)
	}
	cust, _, err := st.FindOrCreateCustomer(ctx, "ann@customer.test", "Ann Example", "acme")
	if cerr := st.Close(ctx); err == nil {
		err = cerr
	}
	if err != nil {
		tb.Fatal(err)
	}

	d := &benchDesk{tb: tb, ctx: ctx, fake: fake, smtp: mail, cfgPath: cfgPath, limits: limits}
	var stop func()
	d.base, stop = serveInProcess(tb, ctx, cfg, nil)
	tb.Cleanup(stop)
	d.customer = d.token("-role", "customer", "-sub", cust.ID.Hex(), "-team", "acme")
	d.admin = d.token("-role", "admin")
	fake.WaitConnections(tb, 1)
	return d
}

// quietLog drops the embedded store's log while it is seeded.
func quietLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// token mints an API token with `ticketd token`.
func (d *benchDesk) token(args ...string) string {
	d.tb.Helper()
	var out, errb bytes.Buffer
	if err := run(d.ctx, append([]string{"token", "-config", d.cfgPath}, args...), &out, &errb, noEnv); err != nil {
		d.tb.Fatalf("token: %v %s", err, errb.String())
	}
	return strings.TrimSpace(out.String())
}

// request calls the API and returns the envelope's data.
func (d *benchDesk) request(method, path, token, body string) map[string]any {
	d.tb.Helper()
	req, err := http.NewRequestWithContext(d.ctx, method, d.base+path, strings.NewReader(body))
	if err != nil {
		d.tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		d.tb.Fatal(err)
	}
	defer res.Body.Close()
	var env struct {
		Data    map[string]any `json:"data"`
		Message string         `json:"message"`
	}
	if err := json.NewDecoder(res.Body).Decode(&env); err != nil || res.StatusCode >= 300 {
		d.tb.Fatalf("%s %s: %d %s %v", method, path, res.StatusCode, env.Message, err)
	}
	return env.Data
}

// createTicket opens a ticket as the customer through the API and returns
// its id.
func (d *benchDesk) createTicket(subject string) string {
	d.tb.Helper()
	data := d.request("POST", "/api/ticket/create", d.customer,
		fmt.Sprintf(`{"subject":%q,"description":"The printer on the second floor prints only blank pages since this morning."}`, subject))
	return data["_id"].(string)
}

// rootPost waits for the chat.postMessage that posted a ticket's root
// message (its metadata names the ticket) and returns when the fake got it
// and the message's ts.
func (d *benchDesk) rootPost(ticketID string) (time.Time, string) {
	d.tb.Helper()
	var at time.Time
	var ts string
	d.fake.Until(d.tb, "the root message of ticket "+ticketID, func() bool {
		for _, m := range d.fake.Roots(slackfake.ChannelID) {
			if m.Metadata == nil {
				continue
			}
			if id, _, ok := slackui.ParseMetadata(*m.Metadata); ok && id == ticketID {
				ts = m.TS
			}
		}
		if ts == "" {
			return false
		}
		for _, c := range d.fake.CallsTo("chat.postMessage") {
			if strings.Contains(c.Params.Get("metadata"), ticketID) && c.Error == "" {
				at = c.At
			}
		}
		return !at.IsZero()
	})
	return at, ts
}

// openTickets opens n tickets and waits for their threads and their
// acknowledgement mails.
func (d *benchDesk) openTickets(n int) []benchTicket {
	d.tb.Helper()
	mails := len(d.smtp.Messages())
	ts := make([]benchTicket, n)
	for i := range ts {
		ts[i].id = d.createTicket(fmt.Sprintf("Printer %d", i))
	}
	for i := range ts {
		_, ts[i].rootTS = d.rootPost(ts[i].id)
	}
	d.waitMails(mails + n)
	d.idle()
	return ts
}

// waitMails waits until the SMTP server accepted n messages; and returns
// the n-th.
func (d *benchDesk) waitMails(n int) smtptest.Message {
	d.tb.Helper()
	return d.smtp.WaitFor(d.tb, n, 5*time.Minute)[n-1]
}

// idle waits until the daemon's outbox has nothing left to deliver, so the
// next measurement does not share the machine with the last one's tail.
func (d *benchDesk) idle() {
	d.tb.Helper()
	d.fake.Until(d.tb, "an empty outbox", func() bool {
		res, err := http.Get(d.base + "/metrics")
		if err != nil {
			return false
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		m := string(b)
		return strings.Contains(m, `ticketd_outbox_deliveries{state="pending"} 0`) &&
			strings.Contains(m, `ticketd_outbox_deliveries{state="waiting"} 0`)
	})
}

// slackReply makes the agent's reply in a ticket's thread in the fake
// (before any clock starts) and returns its Socket Mode envelope.
func (d *benchDesk) slackReply(t benchTicket, text string) slackfake.Envelope {
	return d.fake.MessageEvent(slackfake.MessageSpec{ThreadTS: t.rootTS, User: benchAgentID, Text: text})
}

// waitReaction waits until the bot put a reaction on a message.
func (d *benchDesk) waitReaction(ts, name string) {
	d.tb.Helper()
	d.fake.Until(d.tb, name+" on "+ts, func() bool {
		m, ok := d.fake.Message(slackfake.ChannelID, ts)
		return ok && slices.ContainsFunc(m.Reactions, func(r slackfake.Reaction) bool { return r.Name == name })
	})
}

// latencies collects durations and reports their quantiles.
type latencies []time.Duration

func (l latencies) quantile(q float64) time.Duration {
	s := slices.Clone(l)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*q))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkSlackRootFromAPI: a customer's ticket created through the
// daemon's API (HTTP POST /api/ticket/create) until the fake Slack received
// its root message (chat.postMessage with the ticket's metadata): the
// store write, the relay, the runner's claim, the Slack sink's load and
// render, and the post. Baseline, in the same iteration: a bare
// chat.postMessage to the same fake, round trip through slack-go.
func BenchmarkSlackRootFromAPI(b *testing.B) {
	d := startBenchDesk(b)
	client := slack.New(slackfake.BotToken, slack.OptionAPIURL(d.fake.APIURL()))
	d.openTickets(1) // warm-up: first connections, first templates
	var bare, root latencies
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, _, err := client.PostMessageContext(d.ctx, slackfake.ChannelID, slack.MsgOptionText("baseline", false)); err != nil {
			b.Fatal(err)
		}
		bare = append(bare, time.Since(start))

		start = time.Now()
		id := d.createTicket(fmt.Sprintf("Bench %d", i))
		at, _ := d.rootPost(id)
		root = append(root, at.Sub(start))

		b.StopTimer()
		d.waitMails(2 + i) // the warm-up's and this ticket's acknowledgements
		d.idle()
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(ms(bare.quantile(0.5)), "bare-p50-ms")
	b.ReportMetric(ms(bare.quantile(0.99)), "bare-p99-ms")
	b.ReportMetric(ms(root.quantile(0.5)), "root-p50-ms")
	b.ReportMetric(ms(root.quantile(0.99)), "root-p99-ms")
	b.ReportMetric(float64(root.quantile(0.5))/float64(bare.quantile(0.5)), "p50-ratio")
}

// BenchmarkSlackReplyToSMTP: an agent's reply in a ticket's thread, pushed
// by the fake over Socket Mode, until the SMTP server accepted the mail to
// the customer. Baseline, in the same iteration on another ticket: the
// email path's own figure, an agent's reply through the API
// (POST /api/ticket/admin-create-reply) until the SMTP server accepted the
// mail. The two alternate which goes first. Between measurements the
// daemon finishes what each reply caused (the email reaction on the Slack
// reply, the API reply's post in its thread), so each is measured alone.
func BenchmarkSlackReplyToSMTP(b *testing.B) {
	d := startBenchDesk(b)
	tickets := d.openTickets(10)
	mails := len(d.smtp.Messages())

	viaSlack := func(t benchTicket, text string) time.Duration {
		env := d.slackReply(t, text)
		start := time.Now()
		d.fake.MustSend(b, env)
		mails++
		m := d.waitMails(mails)
		if !bytes.Contains(m.Data, []byte(text)) {
			b.Fatalf("mail %d is not the reply %q", mails, text)
		}
		b.StopTimer()
		d.waitReaction(env.MessageTS, "email")
		d.idle()
		b.StartTimer()
		return m.ReceivedAt.Sub(start)
	}
	viaAPI := func(t benchTicket, text string) time.Duration {
		start := time.Now()
		d.request("POST", "/api/ticket/admin-create-reply?id="+t.id, d.admin, fmt.Sprintf(`{"description":%q}`, text))
		mails++
		m := d.waitMails(mails)
		if !bytes.Contains(m.Data, []byte(text)) {
			b.Fatalf("mail %d is not the reply %q", mails, text)
		}
		b.StopTimer()
		d.idle()
		b.StartTimer()
		return m.ReceivedAt.Sub(start)
	}
	// Warm-up: the agent is created from users.info on their first reply.
	viaSlack(tickets[0], "warm-up-slack")
	viaAPI(tickets[1], "warm-up-api")

	var fromSlack, fromAPI latencies
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s, a := tickets[i%len(tickets)], tickets[(i+5)%len(tickets)]
		sText, aText := fmt.Sprintf("slack-reply-%d", i), fmt.Sprintf("api-reply-%d", i)
		if i%2 == 0 {
			fromSlack = append(fromSlack, viaSlack(s, sText))
			fromAPI = append(fromAPI, viaAPI(a, aText))
		} else {
			fromAPI = append(fromAPI, viaAPI(a, aText))
			fromSlack = append(fromSlack, viaSlack(s, sText))
		}
	}
	b.StopTimer()
	b.ReportMetric(ms(fromSlack.quantile(0.5)), "slack-p50-ms")
	b.ReportMetric(ms(fromSlack.quantile(0.99)), "slack-p99-ms")
	b.ReportMetric(ms(fromSlack.quantile(1)), "slack-max-ms")
	b.ReportMetric(ms(fromAPI.quantile(0.5)), "api-p50-ms")
	b.ReportMetric(ms(fromAPI.quantile(0.99)), "api-p99-ms")
	b.ReportMetric(float64(fromSlack.quantile(0.5))/float64(fromAPI.quantile(0.5)), "p50-ratio")
	b.ReportMetric(float64(fromSlack.quantile(0.99))/float64(fromAPI.quantile(0.99)), "p99-ratio")
}

// The burst: this many agent replies over Socket Mode, across burstTickets
// tickets, all pushed at once.
const (
	burstEvents  = 1000
	burstTickets = 50
	// rawWriters is how many goroutines write the baseline's responses in
	// its concurrent form: as many as the Socket Mode connection handles at
	// once (slackin.DefaultMaxInFlight).
	rawWriters = 8
)

// BenchmarkSlackBurst: 1,000 Socket Mode envelopes of agents' thread
// replies across 50 tickets, pushed at once, until the last was
// acknowledged (the bridge acks an envelope only after its response is
// stored), checked afterwards through the API. Baseline, in the same
// iteration while the daemon is idle: the same 1,000 responses written with
// store.AddResponse straight into a fresh embedded store holding 50 such
// tickets, once by one goroutine and once (on a store of its own) by
// rawWriters; the faster is the baseline.
func BenchmarkSlackBurst(b *testing.B) {
	d := startBenchDesk(b)
	tickets := d.openTickets(burstTickets)
	// Warm-up: the agent is created from users.info on their first reply;
	// the burst measures an agent the daemon knows.
	warm := d.slackReply(tickets[0], "warm-up")
	d.fake.MustSend(b, warm)
	d.waitMails(len(d.smtp.Messages()) + 1)
	d.waitReaction(warm.MessageTS, "email")
	d.idle()
	serial, parallel := newRawDesk(b, d.limits), newRawDesk(b, d.limits)
	var burst, passes, raw1, rawN latencies
	retried := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if i > 0 { // the last burst's mails and reactions
			d.idle()
		}
		envs := make([]slackfake.Envelope, burstEvents)
		for j := range envs {
			envs[j] = d.slackReply(tickets[j%burstTickets], burstText(i, j))
		}
		raw1 = append(raw1, serial.write(i, burstEvents, 1))
		rawN = append(rawN, parallel.write(i, burstEvents, rawWriters))
		b.StartTimer()

		start := time.Now()
		for _, env := range envs {
			d.fake.MustSend(b, env)
		}
		last, firstPass, redelivered := d.awaitAcks(envs, start)
		burst = append(burst, last.Sub(start))
		passes = append(passes, firstPass.Sub(start))
		retried += redelivered

		b.StopTimer()
		d.checkStored(tickets, envs, i)
		b.StartTimer()
	}
	b.StopTimer()
	med := burst.quantile(0.5)
	base := min(raw1.quantile(0.5), rawN.quantile(0.5))
	b.ReportMetric(ms(med), "burst-ms")
	b.ReportMetric(ms(raw1.quantile(0.5)), "raw-1-ms")
	b.ReportMetric(ms(rawN.quantile(0.5)), fmt.Sprintf("raw-%d-ms", rawWriters))
	b.ReportMetric(burstEvents/med.Seconds(), "events/s")
	b.ReportMetric(burstEvents/base.Seconds(), "raw-writes/s")
	b.ReportMetric(base.Seconds()/med.Seconds(), "throughput-ratio")
	b.ReportMetric(ms(passes.quantile(0.5)), "first-pass-ms")
	b.ReportMetric(float64(retried)/float64(b.N), "redelivered/op")
}

// checkStored reads back every reply of burst round through the API and
// fails naming the envelopes whose replies are missing, or any reply stored
// twice. Every envelope was acked, and the bridge acks only what it stored,
// so there is nothing to wait for: a missing reply is a lost one.
func (d *benchDesk) checkStored(tickets []benchTicket, envs []slackfake.Envelope, round int) {
	d.tb.Helper()
	have := map[string]int{}
	for _, t := range tickets {
		for _, r := range d.request("GET", "/api/ticket/admin-fetch-one?id="+t.id, d.admin, "")["response"].([]any) {
			have[r.(map[string]any)["description"].(string)]++
		}
	}
	var missing []string
	for j, env := range envs {
		switch n := have[burstText(round, j)]; {
		case n == 0:
			missing = append(missing, fmt.Sprintf("%d (%s, %s)", j, env.EnvelopeID, env.EventID))
		case n > 1:
			d.tb.Fatalf("burst %d: reply %d (%s) stored %d times", round, j, env.EnvelopeID, n)
		}
	}
	if len(missing) > 0 {
		d.tb.Fatalf("burst %d: %d replies acked but not stored: %v", round, len(missing), missing)
	}
}

func burstText(round, j int) string {
	return fmt.Sprintf("Burst %d reply %d: please try the other tray.", round, j)
}

// redeliverAfter is how long the burst waits without any new ack before it
// redelivers what is still unacked, as Slack does (retry_attempt 1, reason
// timeout): the bridge acks nothing whose handler failed or ran past its
// deadline (2.5 s), and leaves it to Slack's redelivery.
const redeliverAfter = 3 * time.Second

// awaitAcks waits until every envelope was acked, redelivering the unacked
// ones whenever acks stopped coming for redeliverAfter. It returns when the
// last was acked, when the last ack of the first pass came (before any
// redelivery), and how many envelopes were redelivered.
func (d *benchDesk) awaitAcks(envs []slackfake.Envelope, start time.Time) (last, firstPass time.Time, redelivered int) {
	d.tb.Helper()
	progress := start
	d.fake.Until(d.tb, "every envelope of the burst acknowledged", func() bool {
		acked := map[string]time.Time{}
		for _, a := range d.fake.Acks() {
			if _, dup := acked[a.EnvelopeID]; !dup {
				acked[a.EnvelopeID] = a.At
			}
		}
		last = time.Time{}
		var missing []string
		for _, env := range envs {
			at, ok := acked[env.EnvelopeID]
			if !ok {
				missing = append(missing, env.EnvelopeID)
				continue
			}
			if at.After(last) {
				last = at
			}
		}
		if last.After(progress) {
			progress = last
		}
		if len(missing) == 0 {
			if firstPass.IsZero() {
				firstPass = last
			}
			return true
		}
		if time.Since(progress) < redeliverAfter {
			return false
		}
		if firstPass.IsZero() {
			firstPass = last
		}
		for _, id := range missing {
			if err := d.fake.Redeliver(id); err != nil {
				d.tb.Fatal(err)
			}
		}
		redelivered += len(missing)
		progress = time.Now()
		return false
	})
	return last, firstPass, redelivered
}

// rawDesk is the burst's baseline: a fresh embedded store with the same
// limits as the daemon's, burstTickets customer tickets and an agent.
type rawDesk struct {
	tb      testing.TB
	st      *store.Store
	tickets []bson.ObjectID
	agent   store.Actor
}

func newRawDesk(tb testing.TB, limits store.Limits) *rawDesk {
	tb.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, store.OpenOptions{DataDir: filepath.Join(tb.TempDir(), "raw"), Database: "ticketd", Limits: limits, Logger: quietLog()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close(context.WithoutCancel(ctx)) })
	cust, _, err := st.FindOrCreateCustomer(ctx, "ann@customer.test", "Ann Example", "acme")
	if err != nil {
		tb.Fatal(err)
	}
	agent, err := st.FindOrCreateAgent(ctx, "alex@support.test", "Alex Agent", benchAgentID)
	if err != nil {
		tb.Fatal(err)
	}
	r := &rawDesk{tb: tb, st: st, agent: store.Actor{ID: agent.ID, Type: store.CreatorAdmin, Via: store.SourceSlack}}
	for i := 0; i < burstTickets; i++ {
		t, _, err := st.CreateTicket(ctx, store.NewTicket{
			Creator: store.Actor{ID: cust.ID, Type: store.CreatorCustomer, Via: store.SourceAPI},
			TeamID:  "acme", Category: "Support", Subject: fmt.Sprintf("Printer %d", i),
			Description: "The printer on the second floor prints only blank pages since this morning.",
			Source:      store.SourceAPI,
		})
		if err != nil {
			tb.Fatal(err)
		}
		r.tickets = append(r.tickets, t.ID)
	}
	return r
}

// write stores round's burstEvents responses as the bridge does (an agent's
// reply from Slack, with its message key) and returns how long it took.
func (r *rawDesk) write(round, n, writers int) time.Duration {
	ctx := context.Background()
	return timeWriters(r.tb, n, writers, func(j int) error {
		_, _, err := r.st.AddResponse(ctx, r.tickets[j%burstTickets], store.AllTickets, store.NewResponse{
			Author:      r.agent,
			Description: burstText(round, j),
			Source:      store.SourceSlack,
			SourceKey:   slackui.SourceKey(slackfake.ChannelID, fmt.Sprintf("%d.%06d", round, j)),
		})
		return err
	})
}

// timeWriters calls write(j) for j from 0 to n-1 from writers goroutines
// and returns how long they took; a failed write fails tb.
func timeWriters(tb testing.TB, n, writers int, write func(j int) error) time.Duration {
	tb.Helper()
	next := make(chan int)
	var mu sync.Mutex
	var failed error
	var wg sync.WaitGroup
	start := time.Now()
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				if err := write(j); err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
				}
			}
		}()
	}
	for j := 0; j < n; j++ {
		next <- j
	}
	close(next)
	wg.Wait()
	took := time.Since(start)
	if failed != nil {
		tb.Fatal(failed)
	}
	return took
}
