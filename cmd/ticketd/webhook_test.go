package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/internal/testwait"
	"github.com/ticketd/ticketd/notify/webhook"
	"github.com/ticketd/ticketd/store"
	"github.com/ticketd/ticketd/store/storetest"
)

const testWebhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// received is one POST a test receiver got, checked as a receiver would.
type received struct {
	header http.Header
	body   []byte
	// at is when it was received and verified; verify and schema are what
	// webhook.Verify and the OpenAPI document said of it (nil: fine).
	at             time.Time
	verify, schema error
	payload        webhook.Payload
}

// webhookReceiver is an httptest server that verifies each POST with the
// secret and checks it against the OpenAPI document, answering with code.
func webhookReceiver(t testing.TB, code int) (*httptest.Server, chan received) {
	t.Helper()
	schemas := loadOpenAPI(t)
	got := make(chan received, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc := received{header: r.Header.Clone(), body: body}
		rc.verify = webhook.Verify(testWebhookSecret, r.Header, body, time.Now(), webhook.DefaultTolerance)
		rc.at = time.Now() // got and verified: what a benchmark measures to
		rc.schema = schemas.checkWebhook(body)
		json.Unmarshal(body, &rc.payload)
		w.WriteHeader(code)
		got <- rc
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func webhookYAML(dir, url string) string {
	return fmt.Sprintf(`
dataDir: %s
http: {listen: "127.0.0.1:0"}
log: {level: warn}
webhooks:
  enabled: true
  endpoints:
    - name: crm
      url: %s
      secret: %s
`, filepath.Join(dir, "data"), url, testWebhookSecret)
}

func nextPOST(t testing.TB, got chan received) received {
	t.Helper()
	select {
	case rc := <-got:
		if rc.verify != nil {
			t.Fatalf("POST %s does not verify: %v", rc.body, rc.verify)
		}
		if rc.schema != nil {
			t.Fatalf("POST %s does not match the OpenAPI document: %v", rc.body, rc.schema)
		}
		return rc
	case <-time.After(testwait.Timeout):
		t.Fatalf("no webhook after %s", testwait.Timeout)
	}
	return received{}
}

// End to end through the store's outbox, with the configuration, relay and
// runner as serve wires them: every announced change of a ticket made with
// the store reaches the receiver as a verified POST that matches the
// OpenAPI document, in order; the internal note does not.
func TestWebhooksThroughTheOutbox(t *testing.T) {
	srv, got := webhookReceiver(t, http.StatusNoContent)
	cfg, err := loadConfig(writeFile(t, webhookYAML(t.TempDir(), srv.URL+"/hooks")), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	st := storetest.Open(t)
	if _, err := st.JoinDeployment(ctx, cfg.sinks()); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	log := cfg.logger(testLog{t})
	if err := startWebhooks(ctx, &wg, cfg.Webhooks, st, log, prometheus.NewRegistry()); err != nil {
		t.Fatal(err)
	}
	runWorker(ctx, &wg, log, "outbox-relay", func(ctx context.Context) error { return st.RunRelay(ctx, time.Hour) })

	cust, _, err := st.FindOrCreateCustomer(ctx, "ann@example.com", "Ann", "acme")
	if err != nil {
		t.Fatal(err)
	}
	agent, err := st.FindOrCreateAgent(ctx, "bob@support.example", "Bob", "")
	if err != nil {
		t.Fatal(err)
	}
	tk, _, err := st.CreateTicket(ctx, store.NewTicket{Creator: store.Actor{ID: cust.ID, Type: store.CreatorCustomer, Via: store.SourceEmail},
		TeamID: "acme", Category: "Billing", Subject: "Invoice wrong", Description: "Please fix.", Source: store.SourceEmail})
	if err != nil {
		t.Fatal(err)
	}
	by := store.Actor{ID: agent.ID, Type: store.CreatorAdmin, Via: store.SourceAPI}
	for _, r := range []store.NewResponse{
		{Author: by, Description: "We are on it.", Source: store.SourceAPI},
		{Author: by, Description: "internal: check the billing run", Source: store.SourceAPI, Internal: true},
	} {
		if _, _, err := st.AddResponse(ctx, tk.ID, store.AllTickets, r); err != nil {
			t.Fatal(err)
		}
	}
	status, prio := store.StatusInProgress, store.PriorityHigh
	if _, err := st.UpdateTicket(ctx, tk.ID, store.AllTickets, store.TicketUpdate{Status: &status, Priority: &prio, AssigneeID: &agent.ID}, by); err != nil {
		t.Fatal(err)
	}

	var kinds []string
	ids := map[string]bool{}
	for range 5 {
		rc := nextPOST(t, got)
		p := rc.payload
		kinds = append(kinds, p.Type)
		ids[rc.header.Get(webhook.HeaderID)] = true
		if p.Data.TicketID != tk.ID.Hex() || p.Data.RefID != tk.RefID || p.Data.Ticket.Subject != "Invoice wrong" {
			t.Errorf("%s: data %+v", p.Type, p.Data)
		}
		switch p.Type {
		case "response.added":
			if p.Data.Response == nil || p.Data.Response.Description != "We are on it." || p.Data.Ticket.Responses != 1 {
				t.Errorf("response.added: %s", rc.body)
			}
		case "status.changed":
			if *p.Data.From != "created" || *p.Data.To != "in-progress" || p.Data.Actor.ID != agent.ID.Hex() || p.Data.Origin != "api" {
				t.Errorf("status.changed: %s", rc.body)
			}
		}
	}
	want := []string{"ticket.created", "response.added", "status.changed", "priority.changed", "assignee.changed"}
	if !slices.Equal(kinds, want) {
		t.Fatalf("received %v, want %v (the internal note not among them)", kinds, want)
	}
	if len(ids) != 5 {
		t.Fatalf("webhook-ids %v: want one per delivery", ids)
	}
	select {
	case rc := <-got:
		t.Fatalf("a sixth POST: %s", rc.body)
	default:
	}
}

// Through the daemon: a ticket created over the API reaches an endpoint
// that answers 410 Gone, which makes it a dead letter listed by
// /api/ticket/admin-deliveries with the endpoint's sink at once.
func TestWebhookDeadLetterIsListedByTheAPI(t *testing.T) {
	srv, got := webhookReceiver(t, http.StatusGone)
	dir := t.TempDir()
	base := serveConfig(t, dir, webhookYAML(dir, srv.URL))
	post(t, base+"/api/ticket/create", mint(t, dir, "-role", "customer", "-team", "acme"), `{"subject":"Hook me","description":"please"}`)
	if rc := nextPOST(t, got); rc.payload.Type != "ticket.created" {
		t.Fatalf("got %s", rc.body)
	}
	adm := apiClient{t: t, base: base, auth: mint(t, dir, "-role", "admin")}
	var dead []any
	testwait.For(t, "the dead letter", func() bool {
		dead, _ = adm.do("GET", "/api/ticket/admin-deliveries?state=dead", "")["data"].([]any)
		return len(dead) > 0
	})
	d := dead[0].(map[string]any)
	if d["sink"] != "webhook:crm" || !strings.Contains(fmt.Sprint(d["lastError"]), "410") {
		t.Fatalf("dead letter %v", d)
	}
	// The runner counts the outcome after the store has it: wait for it.
	const counted = `ticketd_webhook_deliveries_total{endpoint="crm",outcome="dead"} 1`
	testwait.For(t, "the dead letter counted in /metrics", func() bool {
		return strings.Contains(string(scrape(t, base)), counted)
	})
}

func TestWebhookConfig(t *testing.T) {
	dir := t.TempDir()
	// The example's section, switched on, is valid as it stands.
	raw, err := os.ReadFile("../../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	example := strings.Replace(string(raw), "webhooks:\n  enabled: false", "webhooks:\n  enabled: true", 1)
	if example == string(raw) {
		t.Fatal("the example has no webhooks.enabled: false")
	}
	cfg, err := loadConfig(writeFile(t, example), noEnv)
	if err != nil {
		t.Fatalf("example with webhooks on: %v", err)
	}
	if !slices.Contains(cfg.sinks(), "webhook:crm") {
		t.Errorf("sinks %v lack webhook:crm", cfg.sinks())
	}
	cfg.Webhooks.Enabled = false
	if slices.Contains(cfg.sinks(), "webhook:crm") {
		t.Errorf("webhooks off: sinks %v", cfg.sinks())
	}

	// Every bad value, with its key.
	_, err = loadConfig(writeFile(t, `
webhooks:
  enabled: true
  timeout: -1s
  endpoints:
    - {name: crm, url: "ftp://crm.example.com", secret: "whsec_c2hvcnQ=", events: [ticket.edited]}
    - {name: crm, url: "https://user:pw@crm.example.com/", secret: ""}
    - {name: "Bad Name", url: "https://x.example.com/", secret: "`+testWebhookSecret+`"}
  delivery: {maxAttempts: -1}
`), noEnv)
	for _, want := range []string{
		"webhooks.timeout:", "webhooks.endpoints[0].url:", "webhooks.endpoints[0].secret:", "webhooks.endpoints[0].events[0]:",
		"webhooks.endpoints[1].name: \"crm\" is used", "webhooks.endpoints[1].url: must not carry credentials",
		"webhooks.endpoints[1].secret: webhook secret: must start with whsec_ (or TICKETD_WEBHOOK_CRM_SECRET)",
		"webhooks.endpoints[2].name:", "webhooks.delivery.maxAttempts:",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in:\n%v", want, err)
		}
	}
	// Switched on, it needs an endpoint.
	if _, err := loadConfig(writeFile(t, "webhooks: {enabled: true}\n"), noEnv); err == nil || !strings.Contains(err.Error(), "webhooks.endpoints: must list") {
		t.Errorf("no endpoints: %v", err)
	}

	// The secret from the environment, as TICKETD_WEBHOOK_<NAME>_SECRET(_FILE).
	secretFile := filepath.Join(dir, "s")
	os.WriteFile(secretFile, []byte(testWebhookSecret+"\n"), 0o600)
	env := map[string]string{"TICKETD_WEBHOOK_CRM_EU_SECRET_FILE": secretFile}
	cfg, err = loadConfig(writeFile(t, "webhooks:\n  enabled: true\n  endpoints: [{name: crm-eu, url: \"https://crm.example.com/h\"}]\n"),
		func(k string) string { return env[k] })
	if err != nil || cfg.Webhooks.Endpoints[0].Secret != testWebhookSecret {
		t.Fatalf("secret from the environment: %v %+v", err, cfg.Webhooks.Endpoints)
	}
}

// The receiver's side of a real POST: `ticketd webhook-verify` says valid
// for it as received, and invalid for a tampered body, a wrong secret and
// an old timestamp.
func TestWebhookVerifyCommand(t *testing.T) {
	srv, got := webhookReceiver(t, http.StatusOK)
	key, _ := webhook.DecodeSecret(testWebhookSecret)
	// A real request, signed as the sink signs it.
	a, err := webhook.New(webhook.Options{Name: "crm", URL: srv.URL, Secret: testWebhookSecret, Store: oneTicket{}, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Deliver(context.Background(), &store.Delivery{ID: "e/webhook:crm", Event: store.Event{ID: bson.NewObjectID(),
		Kind: store.EventTicketCreated, TicketID: bson.NewObjectID(), ActorID: bson.NewObjectID(), ActorType: store.CreatorCustomer, At: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	rc := nextPOST(t, got)
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	os.WriteFile(secretFile, []byte(testWebhookSecret+"\n"), 0o600)
	headerFile := filepath.Join(dir, "headers")
	var hb strings.Builder
	hb.WriteString("POST /hooks HTTP/1.1\r\n")
	rc.header.Write(&hb)
	os.WriteFile(headerFile, []byte(hb.String()), 0o600)

	verify := func(body []byte, env map[string]string, args ...string) (string, error) {
		var out, errb bytes.Buffer
		err := cmdWebhookVerify(args, bytes.NewReader(body), &out, &errb, func(k string) string { return env[k] })
		return out.String() + errb.String(), err
	}
	h := func(name string) string { return rc.header.Get(name) }
	old := time.Now().Add(-10 * time.Minute)
	oldSig := webhook.Sign(key, h(webhook.HeaderID), old, rc.body)
	tampered := bytes.Replace(rc.body, []byte(`"ticket.created"`), []byte(`"ticket.deleted"`), 1)
	cases := []struct {
		name  string
		body  []byte
		env   map[string]string
		args  []string
		valid bool
	}{
		{"headers file and secret file", rc.body, nil, []string{"-secret-file", secretFile, "-headers", headerFile}, true},
		{"header flags and secret from the environment", rc.body, map[string]string{"TICKETD_WEBHOOK_SECRET": testWebhookSecret},
			[]string{"-id", h(webhook.HeaderID), "-timestamp", h(webhook.HeaderTimestamp), "-signature", h(webhook.HeaderSignature)}, true},
		{"tampered body", tampered, nil, []string{"-secret-file", secretFile, "-headers", headerFile}, false},
		{"wrong secret", rc.body, nil, []string{"-secret", "whsec_" + strings.Repeat("QUJD", 8), "-headers", headerFile}, false},
		{"old timestamp", rc.body, nil, []string{"-secret-file", secretFile, "-id", h(webhook.HeaderID),
			"-timestamp", fmt.Sprint(old.Unix()), "-signature", oldSig}, false},
		{"old timestamp, larger tolerance", rc.body, nil, []string{"-secret-file", secretFile, "-id", h(webhook.HeaderID),
			"-timestamp", fmt.Sprint(old.Unix()), "-signature", oldSig, "-tolerance", "1h"}, true},
	}
	for _, c := range cases {
		out, err := verify(c.body, c.env, c.args...)
		switch {
		case c.valid && (err != nil || strings.TrimSpace(out) != "valid"):
			t.Errorf("%s: %v %q, want valid", c.name, err, out)
		case !c.valid && (exitCode(err) != 1 || !strings.HasPrefix(out, "invalid:")):
			t.Errorf("%s: %v %q, want invalid and exit 1", c.name, err, out)
		}
	}
	if _, err := verify(rc.body, nil, "-headers", headerFile); err != errUsage {
		t.Errorf("no secret: %v, want a usage error", err)
	}
}

// oneTicket is a store holding any ticket asked for.
type oneTicket struct{}

func (oneTicket) Ticket(_ context.Context, id bson.ObjectID, _ store.Scope) (*store.Ticket, error) {
	now := time.Now()
	return &store.Ticket{ID: id, CreatorID: bson.NewObjectID(), CreatorType: store.CreatorCustomer, Category: "Support",
		Subject: "Hello", Description: "d", Priority: store.PriorityLow, Status: store.StatusCreated,
		CreatedAt: now, UpdatedAt: now, V: 1, RefID: 1, TeamID: "acme", Source: store.SourceAPI}, nil
}
