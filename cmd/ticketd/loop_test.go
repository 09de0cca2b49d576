package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/ticketd/ticketd/internal/testwait"
	"github.com/ticketd/ticketd/notify/email/smtptest"
)

// startIMAP runs an in-memory IMAP server (with IDLE) on loopback and
// returns its port and the mailbox owner, to append mail as it arrives.
func startIMAP(t testing.TB) (int, *imapmemserver.User) {
	t.Helper()
	mem := imapmemserver.New()
	user := imapmemserver.NewUser("support", "secret")
	if err := user.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	mem.AddUser(user)
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIdle: {}, imap.CapUIDPlus: {}, imap.CapMove: {}},
		InsecureAuth: true,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port, user
}

// emailYAML is the configuration of a daemon in dir with the email bridge
// against the local IMAP and SMTP servers.
func emailYAML(dir string, imapPort, smtpPort int) string {
	return fmt.Sprintf(`
dataDir: %s
http: {listen: "127.0.0.1:0"}
log: {level: debug}
email:
  enabled: true
  address: support@example.com
  inbound:
    accounts:
      - {host: 127.0.0.1, port: %d, tls: plain, username: support, password: secret}
    pollSchedule: "@every 1h"
  outbound:
    from: "Example Support <support@example.com>"
    smtp: {host: 127.0.0.1, port: %d, security: plain}
    backoffBase: 100ms
`, filepath.Join(dir, "data"), imapPort, smtpPort)
}

// serveConfig writes cfg as dir's configuration and runs the daemon on it
// until the test ends, failing the test if serve returns an error.
func serveConfig(t *testing.T, dir, cfg string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "ticketd.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	base, stop := startServe(t, dir)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return base
}

// firstMailTicket has Ann mail in about her printer on fire and returns
// the ticket it opens, the only one.
func firstMailTicket(t *testing.T, mailbox *imapmemserver.User, adm apiClient) map[string]any {
	t.Helper()
	deliver(t, mailbox, `
From: Ann Example <ann@customer.test>
To: support@example.com
Subject: Printer on fire
Message-ID: <m1@customer.test>
Date: Tue, 24 Nov 2026 10:00:00 +0000
Content-Type: text/plain; charset=utf-8

The printer on the second floor is on fire.
`)
	var ticket map[string]any
	testwait.For(t, "the ticket", func() bool {
		ts := adm.tickets()
		if len(ts) == 1 {
			ticket = ts[0].(map[string]any)
		}
		return ticket != nil
	})
	return ticket
}

func deliver(t *testing.T, user *imapmemserver.User, raw string) {
	t.Helper()
	raw = strings.ReplaceAll(strings.TrimLeft(raw, "\n"), "\n", "\r\n")
	if _, err := user.Append("INBOX", strings.NewReader(raw), &imap.AppendOptions{}); err != nil {
		t.Fatal(err)
	}
}

type apiClient struct {
	t          *testing.T
	base, auth string
}

func (c apiClient) do(method, path, body string) map[string]any {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, c.base+path, rd)
	req.Header.Set("Authorization", "Bearer "+c.auth)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	var m map[string]any
	raw, _ := io.ReadAll(res.Body)
	if err := json.Unmarshal(raw, &m); err != nil || res.StatusCode >= 300 {
		c.t.Fatalf("%s %s: %d %s", method, path, res.StatusCode, raw)
	}
	return m
}

func (c apiClient) tickets() []any {
	return c.do("GET", "/api/ticket/admin-fetch", "")["data"].([]any)
}

// TestEmailFullLoop runs the daemon with the email bridge against real IMAP
// and SMTP servers: a customer's mail opens a ticket and is acknowledged;
// an agent's reply through the API reaches the customer threaded; the
// customer's reply, quoting it, lands stripped on the same ticket; a status
// change is mailed.
func TestEmailFullLoop(t *testing.T) {
	imapPort, mailbox := startIMAP(t)
	smtp := smtptest.Start(t)
	dir := t.TempDir()
	base := serveConfig(t, dir, emailYAML(dir, imapPort, smtp.Port()))
	adm := apiClient{t: t, base: base, auth: mint(t, dir, "-role", "admin")}

	// 1. A customer writes in; the poll is an hour away, so only IDLE can
	// make this arrive in time.
	ticket := firstMailTicket(t, mailbox, adm)
	id := ticket["_id"].(string)
	if ticket["subject"] != "Printer on fire" || ticket["creatorType"] != "customer" || ticket["source"] != "email" ||
		!strings.Contains(ticket["description"].(string), "on fire") {
		t.Errorf("ticket from mail: %v", ticket)
	}
	ack := smtp.WaitFor(t, 1, 30*time.Second)[0]
	if ack.To[0] != "ann@customer.test" || ack.Header("In-Reply-To") != "<m1@customer.test>" || ack.Header("Auto-Submitted") != "auto-replied" {
		t.Errorf("acknowledgement: to %v, In-Reply-To %q, Auto-Submitted %q", ack.To, ack.Header("In-Reply-To"), ack.Header("Auto-Submitted"))
	}

	// 2. An agent answers through the API; the customer gets it threaded.
	adm.do("POST", "/api/ticket/admin-create-reply?id="+id, `{"description":"We are on it. Please step away from the printer."}`)
	reply := smtp.WaitFor(t, 2, 30*time.Second)[1]
	replyID := reply.Header("Message-ID")
	switch {
	case !strings.Contains(reply.Header("Subject"), "[#"+fmt.Sprint(ticket["refId"])+"] Printer on fire"):
		t.Errorf("reply subject %q", reply.Header("Subject"))
	case reply.Header("In-Reply-To") != ack.Header("Message-ID"):
		t.Errorf("reply In-Reply-To %q, want the ack's %q", reply.Header("In-Reply-To"), ack.Header("Message-ID"))
	case !strings.Contains(reply.Header("References"), "<m1@customer.test>"):
		t.Errorf("reply References %q lacks the customer's first mail", reply.Header("References"))
	case !strings.HasPrefix(reply.Header("Reply-To"), "support+") && !strings.Contains(reply.Header("Reply-To"), "<support+"):
		t.Errorf("reply Reply-To %q carries no token", reply.Header("Reply-To"))
	case !bytes.Contains(reply.Data, []byte("step away from the printer")):
		t.Errorf("reply body lacks the agent's text")
	}
	replyTo := reply.Header("Reply-To")
	if i := strings.Index(replyTo, "<"); i >= 0 {
		replyTo = strings.Trim(replyTo[i:], "<>")
	}

	// 3. The customer answers from a client that keeps only In-Reply-To,
	// quoting the agent; the response is stored stripped, and not mailed
	// back to its own author.
	deliver(t, mailbox, fmt.Sprintf(`
From: Ann Example <ann@customer.test>
To: %s
Subject: Re: [#%v] Printer on fire
Message-ID: <m2@customer.test>
In-Reply-To: %s
Date: Tue, 24 Nov 2026 10:05:00 +0000
Content-Type: text/plain; charset=utf-8

It is out now, thanks.

On Tue, 24 Nov 2026 at 10:01, Example Support <support@example.com> wrote:
> We are on it. Please step away from the printer.
`, replyTo, ticket["refId"], replyID))
	var responses []any
	testwait.For(t, "the customer's reply on the ticket", func() bool {
		tk := adm.do("GET", "/api/ticket/admin-fetch-one?id="+id, "")["data"].(map[string]any)
		responses = tk["response"].([]any)
		return len(responses) == 2
	})
	got := responses[1].(map[string]any)
	if got["creatorType"] != "customer" || strings.TrimSpace(got["description"].(string)) != "It is out now, thanks." {
		t.Errorf("customer reply stored as %q by %v, want the new text only", got["description"], got["creatorType"])
	}
	if n := len(adm.tickets()); n != 1 {
		t.Errorf("the reply opened a new ticket: %d tickets", n)
	}

	// 4. The agent resolves the ticket; the customer is told.
	adm.do("PATCH", "/api/ticket/admin-update?id="+id, `{"status":"resolved"}`)
	status := smtp.WaitFor(t, 3, 30*time.Second)[2]
	if status.Header("Auto-Submitted") != "auto-replied" || !bytes.Contains(bytes.ToLower(status.Data), []byte("resolved")) ||
		status.Header("In-Reply-To") != "<m2@customer.test>" {
		t.Errorf("status notice: Auto-Submitted %q, In-Reply-To %q", status.Header("Auto-Submitted"), status.Header("In-Reply-To"))
	}
	// Five deliveries were queued (ack, reply, the reply's delivery
	// outcome, the customer's reply, status). Once all are done, the
	// customer's own reply must have been completed without a mail, not
	// echoed back to her; the outcome is for the other sinks.
	var metrics string
	testwait.For(t, "the five deliveries done", func() bool {
		metrics = string(scrape(t, base))
		has := func(s string) bool { return strings.Contains(metrics, s) }
		return has(`ticketd_email_outbound_deliveries_total{outcome="sent"} 4`) ||
			has(`ticketd_email_outbound_deliveries_total{outcome="skipped"} 2`) &&
				has(`ticketd_outbox_deliveries{state="pending"} 0`) && has(`ticketd_outbox_deliveries{state="waiting"} 0`)
	})
	if n := len(smtp.Messages()); n != 3 {
		t.Errorf("%d mails sent, want 3 (ack, reply, status): the customer's own reply must not be echoed", n)
	}

	// 5. The bridge's counters and the queue are on /metrics.
	wantMetrics(t, metrics,
		`ticketd_email_inbound_messages_total{outcome="tickets"} 1`,
		`ticketd_email_inbound_messages_total{outcome="responses"} 1`,
		`ticketd_email_inbound_messages_total{outcome="quarantined"} 0`,
		`ticketd_email_outbound_deliveries_total{outcome="sent"} 3`,
		// The customer's own reply, and the announcement that the agent's
		// reply was delivered (for the other sinks).
		`ticketd_email_outbound_deliveries_total{outcome="skipped"} 2`,
		`ticketd_outbox_deliveries{state="pending"} 0`,
		`ticketd_outbox_deliveries{state="waiting"} 0`,
		`ticketd_outbox_deliveries{state="dead"} 0`,
	)
}

// wantMetrics fails the test for each line the /metrics page lacks.
func wantMetrics(t *testing.T, metrics string, lines ...string) {
	t.Helper()
	for _, want := range lines {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// scrape returns the daemon's /metrics page.
func scrape(t *testing.T, base string) []byte {
	t.Helper()
	res, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
