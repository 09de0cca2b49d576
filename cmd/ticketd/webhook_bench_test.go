package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ticketd/ticketd/internal/testwait"
	"github.com/ticketd/ticketd/notify/email/smtptest"
	"github.com/ticketd/ticketd/store"
)

// BenchmarkWebhookFromAPI: an agent's reply through the daemon's API
// (POST /api/ticket/admin-create-reply) until the webhook receiver got the
// response.added POST and verified its signature: the store write, the
// relay, the webhook runner's claim, the ticket's load, the rendering, the
// signing and the POST. Baseline, from the same start (the same reply, in
// the same daemon): until the SMTP server accepted the reply's mail to the
// customer, the email notifier's figure. Both sinks are woken by the same
// relay and work at once, as in production. BENCHMARKS.md quotes it.
//
//	go test ./cmd/ticketd/ -run '^$' -bench WebhookFromAPI -benchtime 200x -count 3
func BenchmarkWebhookFromAPI(b *testing.B) {
	ctx := context.Background()
	mail := smtptest.Start(b)
	imapPort, _ := startIMAP(b) // the mailbox stays empty: replies go out, none come in
	hooks, got := webhookReceiver(b, http.StatusNoContent)
	dir := b.TempDir()
	cfgPath := filepath.Join(dir, "ticketd.yaml")
	// The webhook keys as an operator writes them: the delivery defaults,
	// so only the relay's signal wakes the runners.
	cfgText := emailYAML(dir, imapPort, mail.Port()) + fmt.Sprintf(`
webhooks:
  enabled: true
  endpoints:
    - {name: crm, url: %q, secret: %s}
`, hooks.URL+"/hooks", testWebhookSecret)
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg, err := loadConfig(cfgPath, noEnv)
	if err != nil {
		b.Fatal(err)
	}
	cfg.Log.Level = "warn" // debug lines for every delivery would be measured too
	// The customer needs an address for the mail: put them in the store
	// before the daemon opens it.
	st, err := store.Open(ctx, store.OpenOptions{DataDir: cfg.DataDir, Database: cfg.Store.Database, Logger: quietLog()})
	if err != nil {
		b.Fatal(err)
	}
	cust, _, err := st.FindOrCreateCustomer(ctx, "ann@customer.test", "Ann Example", "acme")
	if cerr := st.Close(ctx); err == nil {
		err = cerr
	}
	if err != nil {
		b.Fatal(err)
	}
	base, stop := serveInProcess(b, ctx, cfg, nil)
	defer stop()
	token := func(args ...string) string {
		var out, errb bytes.Buffer
		if err := run(ctx, append([]string{"token", "-config", cfgPath}, args...), &out, &errb, noEnv); err != nil {
			b.Fatalf("token: %v %s", err, errb.String())
		}
		return strings.TrimSpace(out.String())
	}
	customer := token("-role", "customer", "-sub", cust.ID.Hex(), "-team", "acme")
	admin := token("-role", "admin")

	// Ten tickets, each acknowledged by mail and announced by webhook.
	tickets := make([]string, 10)
	for i := range tickets {
		data := benchPost(b, base, customer, "/api/ticket/create",
			fmt.Sprintf(`{"subject":"Printer %d","description":"The printer prints only blank pages."}`, i))
		tickets[i] = data["_id"].(string)
	}
	mails := len(tickets)
	mail.WaitFor(b, mails, 5*time.Minute)
	for range tickets {
		nextPOST(b, got)
	}
	idleOutbox(b, base)

	reply := func(i int) (webhookLat, mailLat time.Duration) {
		text := fmt.Sprintf("reply-%d", i)
		start := time.Now()
		benchPost(b, base, admin, "/api/ticket/admin-create-reply?id="+tickets[i%len(tickets)], fmt.Sprintf(`{"description":%q}`, text))
		rc := nextPOST(b, got)
		if rc.payload.Type != "response.added" || rc.payload.Data.Response == nil || rc.payload.Data.Response.Description != text {
			b.Fatalf("webhook %s is not the reply %q", rc.body, text)
		}
		mails++
		m := mail.WaitFor(b, mails, 5*time.Minute)[mails-1]
		if !bytes.Contains(m.Data, []byte(text)) {
			b.Fatalf("mail %d is not the reply %q", mails, text)
		}
		b.StopTimer()
		idleOutbox(b, base)
		b.StartTimer()
		return rc.at.Sub(start), m.ReceivedAt.Sub(start)
	}
	reply(len(tickets) - 1) // warm-up
	var viaWebhook, viaMail latencies
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w, m := reply(i)
		viaWebhook = append(viaWebhook, w)
		viaMail = append(viaMail, m)
	}
	b.StopTimer()
	b.ReportMetric(ms(viaWebhook.quantile(0.5)), "webhook-p50-ms")
	b.ReportMetric(ms(viaWebhook.quantile(0.99)), "webhook-p99-ms")
	b.ReportMetric(ms(viaMail.quantile(0.5)), "email-p50-ms")
	b.ReportMetric(ms(viaMail.quantile(0.99)), "email-p99-ms")
	b.ReportMetric(float64(viaWebhook.quantile(0.5))/float64(viaMail.quantile(0.5)), "p50-ratio")
	b.ReportMetric(float64(viaWebhook.quantile(0.99))/float64(viaMail.quantile(0.99)), "p99-ratio")
}

// benchPost calls the API and returns the envelope's data.
func benchPost(tb testing.TB, base, token, path, body string) map[string]any {
	tb.Helper()
	req, err := http.NewRequest("POST", base+path, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	var env struct {
		Data map[string]any `json:"data"`
	}
	if err := json.NewDecoder(res.Body).Decode(&env); err != nil || res.StatusCode >= 300 {
		tb.Fatalf("POST %s: %d %v", path, res.StatusCode, err)
	}
	return env.Data
}

// idleOutbox waits until the daemon has nothing left to deliver, so the
// next measurement does not share the machine with the last one's tail.
func idleOutbox(tb testing.TB, base string) {
	testwait.For(tb, "an empty outbox", func() bool {
		res, err := http.Get(base + "/metrics")
		if err != nil {
			return false
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		m := string(raw)
		return strings.Contains(m, `ticketd_outbox_deliveries{state="pending"} 0`) &&
			strings.Contains(m, `ticketd_outbox_deliveries{state="waiting"} 0`)
	})
}
