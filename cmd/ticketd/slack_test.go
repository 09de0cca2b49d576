package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ticketd/ticketd/internal/slackfake"
	"github.com/ticketd/ticketd/internal/slackui"
	"github.com/ticketd/ticketd/internal/testwait"
	"github.com/ticketd/ticketd/notify/email/smtptest"
	"github.com/ticketd/ticketd/notify/slackout"
	"github.com/ticketd/ticketd/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// The agent in the fake workspace.
const agentID = "U0ANN"

// plainYAML is the configuration of a daemon in dir without bridges.
func plainYAML(dir string) string {
	return fmt.Sprintf("dataDir: %s\nhttp: {listen: 127.0.0.1:0}\nlog: {level: warn}\n", filepath.Join(dir, "data"))
}

// slackYAML is the slack: section for a daemon against the fake, in mode
// (socket or events), with extra keys indented under slack:.
func slackYAML(f *slackfake.Fake, mode, botToken, extra string) string {
	return fmt.Sprintf(`
slack:
  enabled: true
  mode: %s
  botToken: %s
  appToken: %s
  signingSecret: %s
  apiURL: %s
  channel: %s
  delivery: {backoffBase: 100ms, backoffMax: 1s, pollInterval: 1s}
%s`, mode, botToken, slackfake.AppToken, testSigningSecret, f.APIURL(), slackfake.ChannelID, extra)
}

const testSigningSecret = "0123456789abcdef0123456789abcdef"

func newSlackFake(t *testing.T) *slackfake.Fake {
	f := slackfake.New(t)
	f.AddUser(slackfake.User{ID: agentID, RealName: "Ann Agent", Email: "ann@support.test"})
	return f
}

// rootOf waits for the one root message of the ticket with refID in the
// agents' channel, and for the daemon to have bound it to the ticket (the
// queue drained: Slack shows the message before its ts is stored, and a
// reply in a thread not yet bound is not a ticket's), and returns it.
func rootOf(t *testing.T, f *slackfake.Fake, base string, refID any) slackfake.Message {
	t.Helper()
	defer drained(t, base)
	var root slackfake.Message
	f.Until(t, fmt.Sprintf("the root message of #%v", refID), func() bool {
		for _, m := range f.Roots(slackfake.ChannelID) {
			if strings.Contains(m.Text, fmt.Sprintf("#%v", refID)) {
				root = m
				return true
			}
		}
		return false
	})
	return root
}

// drained waits until every queued delivery is done and returns /metrics.
func drained(t *testing.T, base string) string {
	t.Helper()
	var metrics string
	testwait.For(t, "the queue drained", func() bool {
		metrics = string(scrape(t, base))
		return strings.Contains(metrics, `ticketd_outbox_deliveries{state="pending"} 0`) &&
			strings.Contains(metrics, `ticketd_outbox_deliveries{state="waiting"} 0`)
	})
	return metrics
}

// readyz returns /readyz's status and envelope.
func readyz(t *testing.T, base string) (int, map[string]any) {
	t.Helper()
	res, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(res.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, m
}

// TestSlackFullLoop runs the daemon with both bridges against real IMAP and
// SMTP servers and the fake Slack over Socket Mode: a customer's mail gets a
// root message in the agents' channel; an agent's thread reply is mailed to
// the customer, threaded, and marked with the email reaction once the SMTP
// server took it; a note stays internal; a status button updates the root
// message and mails the customer; a redelivered envelope changes nothing.
func TestSlackFullLoop(t *testing.T) {
	imapPort, mailbox := startIMAP(t)
	smtp := smtptest.Start(t)
	f := newSlackFake(t)
	dir := t.TempDir()
	base := serveConfig(t, dir, emailYAML(dir, imapPort, smtp.Port())+slackYAML(f, "socket", slackfake.BotToken, ""))
	adm := apiClient{t: t, base: base, auth: mint(t, dir, "-role", "admin")}
	f.WaitConnections(t, 1)
	testwait.For(t, "/readyz naming slack connected", func() bool {
		code, m := readyz(t, base)
		return code == 200 && m["message"] == "ready" && strings.Contains(fmt.Sprint(m["data"]), "connected")
	})

	// 1. A customer's mail opens a ticket; its root message appears.
	ticket := firstMailTicket(t, mailbox, adm)
	id := ticket["_id"].(string)
	root := rootOf(t, f, base, ticket["refId"])
	if root.User != slackfake.BotUserID || !bytes.Contains(root.Blocks, []byte("Printer on fire")) ||
		!bytes.Contains(root.Blocks, []byte("ann@customer.test")) || root.Metadata == nil {
		t.Errorf("root message: user %s, blocks %s, metadata %+v", root.User, root.Blocks, root.Metadata)
	}
	ack := smtp.WaitFor(t, 1, 30*time.Second)[0]

	// 2. The agent answers in the thread over Socket Mode; the customer gets
	// it threaded, and the agent's message gets the email reaction once the
	// SMTP server accepted it.
	reply := f.MessageEvent(slackfake.MessageSpec{ThreadTS: root.TS, User: agentID, Text: "We are on it. Please step away from the printer."})
	f.MustSend(t, reply)
	f.WaitAck(t, reply.EnvelopeID)
	mail := smtp.WaitFor(t, 2, 30*time.Second)[1]
	switch {
	case mail.To[0] != "ann@customer.test":
		t.Errorf("reply mailed to %v", mail.To)
	case mail.Header("In-Reply-To") != ack.Header("Message-ID"):
		t.Errorf("reply In-Reply-To %q, want the ack's %q", mail.Header("In-Reply-To"), ack.Header("Message-ID"))
	case !strings.Contains(mail.Header("References"), "<m1@customer.test>"):
		t.Errorf("reply References %q lacks the customer's first mail", mail.Header("References"))
	case !bytes.Contains(mail.Data, []byte("step away from the printer")):
		t.Errorf("reply body lacks the agent's text")
	}
	f.Until(t, "the email reaction on the agent's reply", func() bool {
		m, _ := f.Message(slackfake.ChannelID, reply.MessageTS)
		return hasReaction(m, slackout.ReactionDelivered)
	})
	tk := adm.do("GET", "/api/ticket/admin-fetch-one?id="+id, "")["data"].(map[string]any)
	resp := tk["response"].([]any)
	if len(resp) != 1 || resp[0].(map[string]any)["creatorType"] != "admin" {
		t.Fatalf("responses after the agent's reply: %v", resp)
	}

	// 3. An internal note: the lock reaction, and no mail.
	note := f.MessageEvent(slackfake.MessageSpec{ThreadTS: root.TS, User: agentID, Text: "// the customer sounds calm"})
	f.MustSend(t, note)
	f.WaitAck(t, note.EnvelopeID)
	f.Until(t, "the lock reaction on the note", func() bool {
		m, _ := f.Message(slackfake.ChannelID, note.MessageTS)
		return hasReaction(m, "lock")
	})

	// 4. The agent resolves the ticket with the root message's button: the
	// root message is updated in place and the customer is told.
	button := f.BlockActionEnvelope(agentID, slackfake.ChannelID, root.TS, slackfake.Action{
		ActionID: slackui.StatusActionID(store.StatusResolved), BlockID: slackui.BlockActions, Type: "button",
		Value: slackui.Value(mustOID(t, id), string(store.StatusResolved))})
	f.MustSend(t, button)
	f.WaitAck(t, button.EnvelopeID)
	status := smtp.WaitFor(t, 3, 30*time.Second)[2]
	if !bytes.Contains(bytes.ToLower(status.Data), []byte("resolved")) {
		t.Errorf("status mail lacks the new status")
	}
	f.Until(t, "the root message updated to resolved", func() bool {
		m, _ := f.Message(slackfake.ChannelID, root.TS)
		return m.Updates > 0 && bytes.Contains(bytes.ToLower(m.Blocks), []byte("resolved"))
	})

	// 5. Slack delivers the reply's envelope again: nothing changes.
	if err := f.Redeliver(reply.EnvelopeID); err != nil {
		t.Fatal(err)
	}
	f.Until(t, "the redelivered envelope acked", func() bool { return len(f.AcksFor(reply.EnvelopeID)) == 2 })
	metrics := drained(t, base)
	tk = adm.do("GET", "/api/ticket/admin-fetch-one?id="+id, "")["data"].(map[string]any)
	if n := len(tk["response"].([]any)); n != 2 {
		t.Errorf("%d responses after the redelivery, want 2 (reply, note)", n)
	}
	if n := len(smtp.Messages()); n != 3 {
		t.Errorf("%d mails, want 3 (ack, reply, status): the note must not be mailed, the redelivery not mailed again", n)
	}
	if n := len(f.Roots(slackfake.ChannelID)); n != 1 {
		t.Errorf("%d root messages, want 1", n)
	}
	wantMetrics(t, metrics,
		`ticketd_slack_connected 1`,
		`ticketd_slack_payloads_total{outcome="received"} 4`,
		`ticketd_slack_payloads_total{outcome="acked"} 4`,
		`ticketd_slack_handled_total{outcome="deduplicated"} 1`,
		`ticketd_slack_deliveries_total{outcome="dead"} 0`,
		`ticketd_slack_deliveries_total{outcome="ratelimited"} 0`,
		`ticketd_outbox_deliveries{state="dead"} 0`,
	)
	if !strings.Contains(metrics, `ticketd_slack_deliveries_total{outcome="sent"}`) {
		t.Errorf("/metrics lacks the slack posts")
	}
}

func hasReaction(m slackfake.Message, name string) bool {
	for _, r := range m.Reactions {
		if r.Name == name {
			return true
		}
	}
	return false
}

func mustOID(t *testing.T, hex string) bson.ObjectID {
	t.Helper()
	id, err := bson.ObjectIDFromHex(hex)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// A bad bot token never stops the daemon: the API works, /readyz stays 200
// naming Slack degraded with what to fix, /metrics shows it; once the token
// is good (here: Slack accepts it again) the bridge runs.
func TestSlackDegradedStart(t *testing.T) {
	f := newSlackFake(t)
	dir := t.TempDir()
	base := serveConfig(t, dir, plainYAML(dir)+slackYAML(f, "socket", "xoxb-revoked-token", ""))
	var body map[string]any
	testwait.For(t, "/readyz naming slack degraded", func() bool {
		var code int
		code, body = readyz(t, base)
		if code != 200 {
			t.Fatalf("/readyz %d with Slack degraded, want 200", code)
		}
		return strings.Contains(fmt.Sprint(body["message"]), "degraded")
	})
	if msg := fmt.Sprint(body["message"]); !strings.Contains(msg, "slack") || !strings.Contains(msg, "slack.botToken") || !strings.Contains(msg, "invalid_auth") {
		t.Errorf("/readyz message %q does not say what to fix", msg)
	}
	tok := mint(t, dir, "-role", "customer", "-team", "acme")
	created := post(t, base+"/api/ticket/create", tok, `{"subject":"still works","description":"the API without Slack"}`)
	if created["success"] != true {
		t.Errorf("create with Slack degraded: %v", created)
	}
	metrics := string(scrape(t, base))
	if !strings.Contains(metrics, "ticketd_slack_connected 0") {
		t.Errorf("/metrics does not show Slack disconnected")
	}
	if n := len(f.CallsTo("chat.postMessage")); n != 0 {
		t.Errorf("%d posts with a refused token", n)
	}
}

// An unreachable Slack at start: degraded with the reason; tickets made
// meanwhile wait in the outbox; once Slack answers, the bridge identifies
// itself, connects, and the waiting ticket gets its thread.
func TestSlackUnreachableThenBack(t *testing.T) {
	f := newSlackFake(t)
	f.Refuse()
	dir := t.TempDir()
	base := serveConfig(t, dir, plainYAML(dir)+slackYAML(f, "socket", slackfake.BotToken, ""))
	testwait.For(t, "/readyz naming Slack unreachable", func() bool {
		code, m := readyz(t, base)
		return code == 200 && strings.Contains(fmt.Sprint(m["message"]), "degraded: slack: cannot reach Slack")
	})
	tok := mint(t, dir, "-role", "customer", "-team", "acme")
	created := post(t, base+"/api/ticket/create", tok, `{"subject":"during the outage","description":"queued"}`)["data"].(map[string]any)
	f.Restore()
	rootOf(t, f, base, created["refId"])
	f.WaitConnections(t, 1)
	testwait.For(t, "/readyz ready again", func() bool {
		_, m := readyz(t, base)
		return m["message"] == "ready"
	})
}

// Events mode: Slack's requests arrive on the API listener, outside JWT
// auth; good ones are applied, and bad, stale or unsigned ones are 401 and
// change nothing; a replay (Slack's retry) is applied once.
func TestSlackEventsModeOnTheAPIListener(t *testing.T) {
	f := newSlackFake(t)
	dir := t.TempDir()
	base := serveConfig(t, dir, plainYAML(dir)+slackYAML(f, "events", slackfake.BotToken, ""))
	adm := apiClient{t: t, base: base, auth: mint(t, dir, "-role", "admin")}
	testwait.For(t, "the bridge identified", func() bool {
		_, m := readyz(t, base)
		return m["message"] == "ready" && strings.Contains(fmt.Sprint(m["data"]), "connected")
	})
	tok := mint(t, dir, "-role", "customer", "-team", "acme")
	created := post(t, base+"/api/ticket/create", tok, `{"subject":"Printer on fire","description":"second floor"}`)["data"].(map[string]any)
	id := created["_id"].(string)
	root := rootOf(t, f, base, created["refId"])

	send := func(req *http.Request) (int, string) {
		t.Helper()
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(res.Body)
		return res.StatusCode, b.String()
	}
	ticket := func() map[string]any {
		return adm.do("GET", "/api/ticket/admin-fetch-one?id="+id, "")["data"].(map[string]any)
	}
	now := time.Now()

	if code, body := send(slackfake.SignedRequest(base+"/slack/events", "application/json", slackfake.URLVerificationBody("chal-42"), testSigningSecret, now, 0, "")); code != 200 || !strings.Contains(body, "chal-42") {
		t.Errorf("url_verification: %d %s", code, body)
	}

	// Refused: a wrong secret, a stale timestamp, no signature at all.
	bad := f.MessageEvent(slackfake.MessageSpec{ThreadTS: root.TS, User: agentID, Text: "forged"})
	stale := f.MessageEvent(slackfake.MessageSpec{ThreadTS: root.TS, User: agentID, Text: "stale"})
	forgedButton := f.BlockActionEnvelope(agentID, slackfake.ChannelID, root.TS, slackfake.Action{
		ActionID: slackui.StatusActionID(store.StatusResolved), BlockID: slackui.BlockActions, Type: "button",
		Value: slackui.Value(mustOID(t, id), string(store.StatusResolved))})
	unsigned, _ := http.NewRequest("POST", base+"/slack/commands", strings.NewReader("command=%2Fticket&text=1+resolved&user_id="+agentID))
	unsigned.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for name, req := range map[string]*http.Request{
		"wrong secret":     bad.HTTPRequest(base, "not-the-secret-0123456789abcdef", now),
		"stale":            stale.HTTPRequest(base, testSigningSecret, now.Add(-10*time.Minute)),
		"forged button":    forgedButton.HTTPRequest(base, "not-the-secret-0123456789abcdef", now),
		"unsigned /ticket": unsigned,
	} {
		if code, body := send(req); code != http.StatusUnauthorized {
			t.Errorf("%s: %d %s, want 401", name, code, body)
		}
	}
	if tk := ticket(); len(tk["response"].([]any)) != 0 || tk["status"] != "created" {
		t.Fatalf("refused requests changed the ticket: %v", tk)
	}

	// A good reply, then Slack's retry of it.
	good := f.MessageEvent(slackfake.MessageSpec{ThreadTS: root.TS, User: agentID, Text: "We are on it."})
	if code, body := send(good.HTTPRequest(base, testSigningSecret, time.Now())); code != 200 {
		t.Fatalf("signed reply: %d %s", code, body)
	}
	good.RetryAttempt, good.RetryReason = 1, "http_timeout"
	if code, body := send(good.HTTPRequest(base, testSigningSecret, time.Now())); code != 200 {
		t.Fatalf("Slack's retry: %d %s", code, body)
	}
	button := f.BlockActionEnvelope(agentID, slackfake.ChannelID, root.TS, slackfake.Action{
		ActionID: slackui.StatusActionID(store.StatusResolved), BlockID: slackui.BlockActions, Type: "button",
		Value: slackui.Value(mustOID(t, id), string(store.StatusResolved))})
	if code, body := send(button.HTTPRequest(base, testSigningSecret, time.Now())); code != 200 {
		t.Fatalf("signed button: %d %s", code, body)
	}
	tk := ticket()
	resp := tk["response"].([]any)
	if len(resp) != 1 || !strings.Contains(fmt.Sprint(resp[0].(map[string]any)["description"]), "We are on it.") || tk["status"] != "resolved" {
		t.Errorf("after the good requests: status %v, responses %v", tk["status"], resp)
	}
	metrics := string(scrape(t, base))
	wantMetrics(t, metrics,
		`ticketd_slack_payloads_total{outcome="rejected"} 4`,
		`ticketd_slack_handled_total{outcome="deduplicated"} 1`,
	)
}

// startBinary runs the built daemon with cfg (log level info or lower, for
// the listen line) and returns its base URL and the process.
func startBinary(t *testing.T, bin, cfg string) (string, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command(bin, "serve", "-config", cfg)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// No listen line in time: kill it, which ends the scan below.
	stall := time.AfterFunc(testwait.Timeout, func() { cmd.Process.Kill() })
	defer stall.Stop()
	lines := bufio.NewScanner(stderr)
	listen := regexp.MustCompile(`listen=(\S+)`)
	for lines.Scan() {
		t.Log(lines.Text())
		if m := listen.FindStringSubmatch(lines.Text()); m != nil {
			go func() {
				for lines.Scan() {
				}
			}()
			return "http://" + m[1], cmd
		}
	}
	t.Fatal("the daemon exited without a listen line")
	return "", nil
}

// A crash after Slack accepted a ticket's root message but before its ts
// was stored must not make a second thread. The real daemon runs as a
// process behind a proxy to the fake Slack that passes its root post to
// Slack (which stores it) and then holds the answer back; the test kills
// the process there with SIGKILL, restarts the daemon on the same data
// directory, and the ticket still has exactly one root message, bound to it.
func TestSlackKillBetweenPostAndTSWriteMakesOneThread(t *testing.T) {
	f := newSlackFake(t)
	accepted := make(chan struct{}, 1)
	var holding atomic.Bool
	holding.Store(true)
	target, _ := url.Parse(f.URL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(res *http.Response) error {
		if holding.Load() && strings.HasSuffix(res.Request.URL.Path, "/chat.postMessage") {
			accepted <- struct{}{}
			<-res.Request.Context().Done() // the daemon's connection dies with it
			return res.Request.Context().Err()
		}
		return nil
	}
	front := httptest.NewServer(proxy)
	t.Cleanup(front.Close)

	dir := t.TempDir()
	bin := filepath.Join(dir, "ticketd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cfgPath := filepath.Join(dir, "ticketd.yaml")
	yaml := strings.Replace(plainYAML(dir), "level: warn", "level: info", 1) + strings.Replace(slackYAML(f, "events", slackfake.BotToken, ""), f.APIURL(), front.URL+"/api/", 1)
	// The killed daemon's claim on the delivery runs out soon.
	yaml = strings.Replace(yaml, "delivery: {", "delivery: {lease: 3s, ", 1)
	os.WriteFile(cfgPath, []byte(yaml), 0o600)

	base, proc := startBinary(t, bin, cfgPath)
	tok := mint(t, dir, "-role", "customer", "-team", "acme")
	created := post(t, base+"/api/ticket/create", tok, `{"subject":"Printer on fire","description":"second floor"}`)["data"].(map[string]any)
	select {
	case <-accepted:
	case <-time.After(slackfake.DefaultTimeout):
		t.Fatal("the root message never reached Slack")
	}
	if err := proc.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	proc.Wait()
	if n := len(f.Roots(slackfake.ChannelID)); n != 1 {
		t.Fatalf("%d root messages in Slack at the kill, want the one accepted", n)
	}

	holding.Store(false)
	base = serveConfig(t, dir, yaml)
	metrics := drained(t, base)
	if !strings.Contains(metrics, `ticketd_outbox_deliveries{state="dead"} 0`) {
		t.Errorf("a dead letter after the restart")
	}
	roots := f.Roots(slackfake.ChannelID)
	if len(roots) != 1 || len(f.CallsTo("chat.postMessage")) != 1 {
		t.Fatalf("%d root messages, %d posts after the restart, want 1 and 1", len(roots), len(f.CallsTo("chat.postMessage")))
	}
	// The one root is bound to the ticket: an agent's reply in it lands there.
	reply := f.MessageEvent(slackfake.MessageSpec{ThreadTS: roots[0].TS, User: agentID, Text: "On it."})
	req := reply.HTTPRequest(base, testSigningSecret, time.Now())
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("reply in the thread: %v %v", res, err)
	}
	res.Body.Close()
	adm := apiClient{t: t, base: base, auth: mint(t, dir, "-role", "admin")}
	tk := adm.do("GET", "/api/ticket/admin-fetch-one?id="+created["_id"].(string), "")["data"].(map[string]any)
	if n := len(tk["response"].([]any)); n != 1 {
		t.Errorf("the reply in the one thread did not reach the ticket: %d responses", n)
	}
}
