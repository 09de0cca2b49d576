package email

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ticketd/ticketd/notify/email/smtptest"
	"github.com/ticketd/ticketd/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

var ourMessageID = regexp.MustCompile(`^<ticketd\.[0-9a-f]{24}\.[a-z2-7]{26}@example\.com>$`)

// An agent's reply reaches the customer with the right headers, threaded
// after the customer's mail and the acknowledgement.
func TestAdminResponseIsMailedAndThreaded(t *testing.T) {
	e := newEnv(t, smtptest.Options{})
	e.relay()
	r := e.start(e.options())
	tk := e.ticket("Re: [#99] Printer on fire")
	orig := tk.MessageIDs
	if len(orig) != 1 {
		t.Fatalf("ticket starts with %v", orig)
	}

	ack := e.srv.WaitFor(t, 1, 10*time.Second)[0]
	e.reply(tk, "Please unplug it.\nThen wait <10> minutes & retry.", false)
	got := e.srv.WaitFor(t, 2, 10*time.Second)[1]

	// Acknowledgement: opens the thread, answers the customer's mail.
	if s := header(t, ack, "Subject"); s != fmt.Sprintf("[#%d] Printer on fire", tk.RefID) {
		t.Errorf("ack Subject = %q", s)
	}
	if v := header(t, ack, "Auto-Submitted"); v != "auto-replied" {
		t.Errorf("ack Auto-Submitted = %q", v)
	}
	if v := header(t, ack, "In-Reply-To"); v != orig[0] {
		t.Errorf("ack In-Reply-To = %q, want the customer's %q", v, orig[0])
	}

	// The response.
	if s := header(t, got, "Subject"); s != fmt.Sprintf("Re: [#%d] Printer on fire", tk.RefID) {
		t.Errorf("Subject = %q (no doubled prefix or tag expected)", s)
	}
	if f := header(t, got, "From"); f != `"Example Support" <support@example.com>` {
		t.Errorf("From = %q", f)
	}
	contains(t, "To", header(t, got, "To"), "<bob@customer.example>")
	if len(got.To) != 1 || got.To[0] != "bob@customer.example" || got.From != "support@example.com" {
		t.Errorf("envelope %q -> %q", got.From, got.To)
	}
	replyTo := header(t, got, "Reply-To")
	addr := strings.TrimSuffix(replyTo[strings.LastIndex(replyTo, "<")+1:], ">")
	id, found, err := e.signer.FromAddress("support@example.com", addr)
	if err != nil || !found || id != tk.ID {
		t.Errorf("Reply-To %q: token names %v (found %v, err %v), want ticket %v", replyTo, id, found, err, tk.ID.Hex())
	}
	msgID := header(t, got, "Message-ID")
	if !ourMessageID.MatchString(msgID) {
		t.Errorf("Message-ID = %q", msgID)
	}
	ackID := header(t, ack, "Message-ID")
	if v := header(t, got, "In-Reply-To"); v != ackID {
		t.Errorf("In-Reply-To = %q, want the ack's %q", v, ackID)
	}
	if v := header(t, got, "References"); v != orig[0]+" "+ackID {
		t.Errorf("References = %q, want %q", v, orig[0]+" "+ackID)
	}
	if v := header(t, got, "Auto-Submitted"); v != "" {
		t.Errorf("a person's reply carries Auto-Submitted %q", v)
	}
	if v := header(t, got, "X-Auto-Response-Suppress"); v != "All" {
		t.Errorf("X-Auto-Response-Suppress = %q", v)
	}
	if v := header(t, got, "X-Ticketd-Ticket"); v != fmt.Sprint(tk.RefID) {
		t.Errorf("X-Ticketd-Ticket = %q", v)
	}
	text, html := parts(t, got)
	contains(t, "text body", text, "Please unplug it.\nThen wait <10> minutes & retry.")
	contains(t, "text body", text, "Ada Agent")
	contains(t, "html body", html, "Please unplug it.<br>\nThen wait &lt;10&gt; minutes &amp; retry.")

	// Both sent ids are recorded on the ticket, in order, after the original.
	want := []string{orig[0], ackID, msgID}
	if ids := e.load(tk.ID).MessageIDs; !slices.Equal(ids, want) {
		t.Errorf("ticket MessageIDs = %v, want %v", ids, want)
	}
	e.idle()
	if s := r.n.Stats(); s.Sent != 2 || s.Dead != 0 || s.Retried != 0 {
		t.Errorf("stats %+v", s)
	}
}

// Internal notes, the customer's own replies, reopening by the customer and
// priority changes are not mailed; a later agent reply is.
func TestOnlyCustomerFacingChangesAreMailed(t *testing.T) {
	e := newEnv(t, smtptest.Options{})
	e.relay()
	o := e.options()
	o.NoTicketAck = true
	r := e.start(o)
	tk := e.ticket("Login broken")
	e.setStatus(tk, store.StatusResolved) // mailed (1)
	e.srv.WaitFor(t, 1, 10*time.Second)

	e.reply(tk, "note to self: customer is VIP", true) // internal: not mailed
	e.customerReply(tk, "still broken")                // customer's own + reopen: not mailed
	high := store.PriorityHigh
	if _, err := e.st.UpdateTicket(e.ctx, tk.ID, store.AllTickets, store.TicketUpdate{Priority: &high},
		store.Actor{ID: e.agent.ID, Type: store.CreatorAdmin}); err != nil { // priority: not mailed
		t.Fatal(err)
	}
	e.reply(tk, "fixed for real", false) // mailed (2)
	e.idle()

	msgs := e.srv.Messages()
	if len(msgs) != 2 {
		for _, m := range msgs {
			t.Logf("got %q: %q", header(t, m, "Subject"), bodyText(t, m))
		}
		t.Fatalf("%d mails, want 2 (status, visible reply)", len(msgs))
	}
	status := msgs[0]
	if v := header(t, status, "Auto-Submitted"); v != "auto-replied" {
		t.Errorf("status Auto-Submitted = %q", v)
	}
	contains(t, "status body", bodyText(t, status), "Created to Resolved")
	body := bodyText(t, msgs[1])
	contains(t, "reply body", body, "fixed for real")
	if strings.Contains(body, "VIP") {
		t.Error("internal note leaked into a mail")
	}
	// Skipped: created (acks off), internal note, customer reply, reopen,
	// priority.
	if s := r.n.Stats(); s.Sent != 2 || s.Skipped != 5 {
		t.Errorf("stats %+v, want 2 sent and 5 skipped", s)
	}
}

// The acknowledgement can be turned off; a ticket whose creator has no
// customer record (opened with an API token) is skipped and completed.
func TestAckSwitchAndMissingCustomer(t *testing.T) {
	e := newEnv(t, smtptest.Options{})
	e.relay()
	o := e.options()
	o.NoTicketAck = true
	off := e.start(o)
	e.ticket("no ack please")
	e.idle()
	if n := len(e.srv.Messages()); n != 0 {
		t.Fatalf("%d mails with acknowledgements off", n)
	}
	if s := off.n.Stats(); s.Skipped != 1 {
		t.Errorf("stats %+v", s)
	}
	off.stop(t)

	on := e.start(e.options())
	e.ticket("ack please")
	ack := e.srv.WaitFor(t, 1, 10*time.Second)[0]
	contains(t, "ack body", bodyText(t, ack), "opened ticket #")

	// A ticket opened through the API by a token-only customer.
	ghost := store.Actor{ID: bson.NewObjectID(), Type: store.CreatorCustomer}
	tk, _, err := e.st.CreateTicket(e.ctx, store.NewTicket{Creator: ghost, TeamID: "t1", Subject: "api", Source: store.SourceAPI})
	if err != nil {
		t.Fatal(err)
	}
	e.reply(tk, "answer nobody can receive", false)
	e.idle()
	if n := len(e.srv.Messages()); n != 1 {
		t.Errorf("%d mails, want only the first ack", n)
	}
	if d := e.deliveries(store.DeliveryDead); len(d) != 0 {
		t.Errorf("dead letters %v", d)
	}
	if s := on.n.Stats(); s.Skipped != 2 || s.Sent != 1 {
		t.Errorf("stats %+v, want 1 sent and 2 skipped", s)
	}
}

// Operator templates replace the defaults; broken ones fail New.
func TestTemplateOverrides(t *testing.T) {
	e := newEnv(t, smtptest.Options{})
	dir := t.TempDir()
	write := func(name, src string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("response.txt", "CUSTOM {{.AgentName}} says: {{.Response}} (#{{.RefID}}, {{.StatusLabel}})")
	write("response.html", "<p>CUSTOM {{nl2br .Response}}</p>")
	o := e.options()
	o.TemplateDir = dir
	o.NoTicketAck = true
	e.relay()
	e.start(o)
	tk := e.ticket("custom")
	e.reply(tk, "a<b", false)
	m := e.srv.WaitFor(t, 1, 10*time.Second)[0]
	text, html := parts(t, m)
	if want := fmt.Sprintf("CUSTOM Ada Agent says: a<b (#%d, Created)", tk.RefID); text != want {
		t.Errorf("text = %q, want %q", text, want)
	}
	if html != "<p>CUSTOM a&lt;b</p>" {
		t.Errorf("html = %q", html)
	}

	for _, tc := range []struct{ file, src, want string }{
		{"status.txt", "{{.NoSuchField}}", "status.txt"},
		{"ack.html", "{{if .RefID}}unclosed", "ack.html"},
		{"respnse.txt", "typo in the name", "respnse.txt: unknown template"},
		{"status.html", "{{nl2br}}", "status.html"},
	} {
		bad := t.TempDir()
		if err := os.WriteFile(filepath.Join(bad, tc.file), []byte(tc.src), 0o600); err != nil {
			t.Fatal(err)
		}
		o.TemplateDir = bad
		_, err := NewAdapter(o, e.st, testLogger(t))
		if err == nil || !strings.Contains(err.Error(), "templateDir") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %q: New error = %v, want templateDir and %q", tc.file, tc.src, err, tc.want)
		}
	}
	o.TemplateDir = filepath.Join(dir, "missing")
	if _, err := NewAdapter(o, e.st, testLogger(t)); err == nil {
		t.Error("missing template dir accepted")
	}
}

// A 4xx is retried with backoff until the server accepts; each attempt
// carries the same Message-ID. Nothing is retried before the backoff.
func TestTemporaryFailureIsRetried(t *testing.T) {
	e := newEnv(t, smtptest.Options{})
	e.srv.FailNext(2, 451)
	e.relay()
	o := e.options()
	r := e.start(o)
	e.ticket("flaky relay")
	eventually(t, 10*time.Second, "the first attempt to be booked", func() bool { return r.n.Stats().Retried == 1 })
	p := e.deliveries(store.DeliveryPending)
	if len(p) != 1 || p[0].NextAttemptAt.Sub(e.clock.Now()) < o.BackoffBase/2 {
		t.Fatalf("after a 451: %+v, want one delivery backed off", p)
	}
	e.drive("the mail", o.BackoffMax, func() bool { return len(e.srv.Messages()) == 1 })
	m := e.srv.Messages()[0]
	e.idle()
	if a := e.srv.Attempts(); a != 3 {
		t.Errorf("%d attempts, want 3", a)
	}
	if s := r.n.Stats(); s.Retried != 2 || s.Sent != 1 || s.Dead != 0 {
		t.Errorf("stats %+v", s)
	}
	if !ourMessageID.MatchString(header(t, m, "Message-ID")) {
		t.Errorf("Message-ID %q", header(t, m, "Message-ID"))
	}
}

// A relay that accepts the message and then drops the connection (here on
// go-mail's RSET after DATA) has the message: it is not sent again.
func TestMessageAcceptedBeforeAFailureIsNotResent(t *testing.T) {
	e := newEnv(t, smtptest.Options{})
	e.srv.DropAfterNext(1)
	e.relay()
	r := e.start(e.options())
	e.ticket("relay drops after DATA")
	eventually(t, 10*time.Second, "the delivery to be booked", func() bool { return r.n.Stats().Sent+r.n.Stats().Retried > 0 })
	e.idle()
	if s := r.n.Stats(); s.Sent != 1 || s.Retried != 0 {
		t.Errorf("stats %+v, want sent once and no retry", s)
	}
	if n, d := len(e.srv.Messages()), e.srv.Drops(); n != 1 || d != 1 {
		t.Errorf("%d messages at the relay, %d connections dropped after DATA; want 1 and 1", n, d)
	}
	if p := e.deliveries(store.DeliveryPending); len(p) != 0 {
		t.Errorf("still queued: %+v", p)
	}
}

// A 5xx refusal is final: dead letter after one attempt, no retry.
func TestPermanentFailureIsDeadLettered(t *testing.T) {
	e := newEnv(t, smtptest.Options{})
	e.srv.FailNext(1, 550)
	e.relay()
	r := e.start(e.options())
	e.ticket("no such mailbox")
	eventually(t, 10*time.Second, "a dead letter", func() bool { return r.n.Stats().Dead == 1 })
	d := e.deliveries(store.DeliveryDead)[0]
	if d.Attempts != 1 || !strings.Contains(d.LastError, "550") {
		t.Errorf("dead letter after %d attempts, error %q", d.Attempts, d.LastError)
	}
	if a := e.srv.Attempts(); a != 1 {
		t.Errorf("%d attempts, want 1", a)
	}
	if s := r.n.Stats(); s.Dead != 1 || s.Retried != 0 || s.Sent != 0 {
		t.Errorf("stats %+v", s)
	}
}

// Temporary failures that never stop end in the dead letters after
// MaxAttempts.
func TestTooManyFailuresAreDeadLettered(t *testing.T) {
	e := newEnv(t, smtptest.Options{})
	e.srv.FailNext(100, 421)
	e.relay()
	o := e.options()
	o.MaxAttempts = 3
	r := e.start(o)
	e.ticket("always busy")
	e.drive("a dead letter", o.BackoffMax, func() bool { return r.n.Stats().Dead == 1 })
	d := e.deliveries(store.DeliveryDead)[0]
	if d.Attempts != 3 || !strings.Contains(d.LastError, "gave up after 3 attempts") || !strings.Contains(d.LastError, "421") {
		t.Errorf("dead letter after %d attempts, error %q", d.Attempts, d.LastError)
	}
	if a := e.srv.Attempts(); a != 3 {
		t.Errorf("%d attempts, want 3", a)
	}
	if s := r.n.Stats(); s.Dead != 1 || s.Retried != 2 {
		t.Errorf("stats %+v", s)
	}
}

// Two notifiers draining one store send every delivery exactly once.
func TestRacingNotifiersSendEachOnce(t *testing.T) {
	e := newEnv(t, smtptest.Options{})
	e.relay()
	a, b := e.start(e.options()), e.start(e.options())
	const n = 30
	for i := range n {
		e.ticket(fmt.Sprintf("race %d", i))
	}
	e.srv.WaitFor(t, n, 30*time.Second)
	e.idle()
	msgs := e.srv.Messages()
	seen := map[string]bool{}
	for _, m := range msgs {
		id := header(t, m, "Message-ID")
		if seen[id] {
			t.Errorf("%s sent twice", id)
		}
		seen[id] = true
	}
	if len(msgs) != n {
		t.Errorf("%d mails for %d tickets", len(msgs), n)
	}
	sa, sb := a.n.Stats(), b.n.Stats()
	if sa.Sent+sb.Sent != n {
		t.Errorf("sent %d + %d, want %d", sa.Sent, sb.Sent, n)
	}
	t.Logf("notifier A sent %d, B sent %d", sa.Sent, sb.Sent)
}

// crashingStore loses the first CompleteDelivery, as if the daemon died
// between the server's 250 and the store write.
type crashingStore struct {
	*store.Store
	crashed atomic.Bool
}

func (c *crashingStore) CompleteDelivery(ctx context.Context, d *store.Delivery) error {
	if c.crashed.CompareAndSwap(false, true) {
		return errors.New("simulated crash before complete")
	}
	return c.Store.CompleteDelivery(ctx, d)
}

// A crash after sending loses nothing: the lease expires and the mail goes
// out again with the same Message-ID (which receivers deduplicate), the
// same threading, and the ticket records that id once. Not before the
// lease ends (on the fake clock).
func TestCrashAfterSendResendsSameMessageID(t *testing.T) {
	e := newEnv(t, smtptest.Options{})
	e.relay()
	o := e.options()
	o.PollInterval = time.Minute // what finds an expired lease
	cs := &crashingStore{Store: e.st}
	r := e.startWith(o, cs)
	tk := e.ticket("crash")
	e.srv.WaitFor(t, 1, 10*time.Second)
	eventually(t, 10*time.Second, "the lost completion", func() bool { return cs.crashed.Load() })
	sentAt := e.clock.Now()
	e.drive("the resend", o.PollInterval, func() bool { return len(e.srv.Messages()) == 2 })
	if waited := e.clock.Now().Sub(sentAt); waited < o.Lease {
		t.Errorf("resent after %v on the clock, before the lease (%v) could expire", waited, o.Lease)
	}
	e.idle()
	msgs := e.srv.Messages()
	first, second := msgs[0], msgs[1]
	id1, id2 := header(t, first, "Message-ID"), header(t, second, "Message-ID")
	if id1 != id2 || !ourMessageID.MatchString(id1) {
		t.Errorf("Message-IDs %q and %q, want the same", id1, id2)
	}
	if a, b := header(t, first, "In-Reply-To"), header(t, second, "In-Reply-To"); a != b || a != tk.MessageIDs[0] {
		t.Errorf("In-Reply-To %q then %q, want %q", a, b, tk.MessageIDs[0])
	}
	ids := e.load(tk.ID).MessageIDs
	if len(ids) != 2 || ids[1] != id1 {
		t.Errorf("ticket MessageIDs %v, want the original and %s once", ids, id1)
	}
	if s := r.n.Stats(); s.Sent != 2 {
		t.Errorf("stats %+v", s)
	}
}

// Cancelling Run lets the send in flight finish within the grace period.
func TestShutdownFinishesSendInFlight(t *testing.T) {
	e := newEnv(t, smtptest.Options{})
	release := e.srv.Hold()
	e.relay()
	r := e.start(e.options())
	e.ticket("slow but fine")
	eventually(t, 10*time.Second, "the send to start", func() bool { return e.srv.Attempts() == 1 })
	stopped := make(chan struct{})
	go func() { r.stop(t); close(stopped) }()
	release()
	<-stopped
	if n := len(e.srv.Messages()); n != 1 {
		t.Fatalf("%d mails after a graceful stop, want 1", n)
	}
	if p := e.deliveries(store.DeliveryPending); len(p) != 0 {
		t.Errorf("delivery not completed: %+v", p)
	}
}

// A send stuck longer than the grace period is aborted when the grace ends
// (on the clock): Run returns and the delivery is due again at once, for
// the next run, even on its last attempt (issue 6, point 7).
func TestShutdownAbortsStuckSend(t *testing.T) {
	e := newEnv(t, smtptest.Options{})
	release := e.srv.Hold()
	defer release()
	e.relay()
	o := e.options()
	o.MaxAttempts = 1
	r := e.start(o)
	e.ticket("stuck relay")
	eventually(t, 10*time.Second, "the send to start", func() bool { return e.srv.Attempts() == 1 })
	stopped := make(chan struct{})
	go func() { r.stop(t); close(stopped) }()
	for done := false; !done; {
		select {
		case <-stopped:
			done = true
		case <-time.After(10 * time.Millisecond):
			e.clock.Advance(o.ShutdownGrace) // the grace timer may not be set yet: again until it is
		}
	}
	p := e.deliveries(store.DeliveryPending)
	if len(p) != 1 || p[0].Attempts != 1 || p[0].NextAttemptAt.After(e.clock.Now()) {
		t.Fatalf("after abort: %+v, want one pending delivery due now", p)
	}
	if !strings.Contains(p[0].LastError, "context canceled") {
		t.Errorf("last error %q", p[0].LastError)
	}
	if d := e.deliveries(store.DeliveryDead); len(d) != 0 {
		t.Errorf("dead letters after our own shutdown: %+v", d)
	}

	release()
	e.start(o)
	e.srv.WaitFor(t, 1, 10*time.Second)
}

// A ticket opened in Slack is answered in Slack: no acknowledgement, reply
// or status mail, though its customer has an address; the same customer's
// mail ticket is mailed as ever.
func TestSlackOpenedTicketIsNotMailed(t *testing.T) {
	e := newEnv(t, smtptest.Options{})
	e.relay()
	e.start(e.options())
	slackTk, _, err := e.st.CreateTicket(e.ctx, store.NewTicket{
		Creator: store.Actor{ID: e.cust.ID, Type: store.CreatorCustomer, Via: store.SourceSlack}, TeamID: e.cust.TeamID,
		Subject: "From Slack", Description: "Help", Source: store.SourceSlack, SourceKey: "slack:C1/1.000001",
		Threads: []store.ThreadRef{{Kind: store.ThreadSlackCustomer, Key: "C1/1.000001"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.reply(slackTk, "Answered in Slack", false)
	e.setStatus(slackTk, store.StatusResolved)
	e.idle()
	mailTk := e.ticket("By mail")
	got := e.srv.WaitFor(t, 1, 10*time.Second)
	e.idle()
	if n := len(e.srv.Messages()); n != 1 {
		t.Fatalf("%d mails, want only the mail ticket's acknowledgement", n)
	}
	if s := header(t, got[0], "Subject"); !strings.Contains(s, fmt.Sprintf("[#%d]", mailTk.RefID)) {
		t.Errorf("the one mail is %q, not the mail ticket's", s)
	}
	if n := len(e.deliveries(store.DeliveryDead)); n != 0 {
		t.Errorf("%d dead letters", n)
	}
}
