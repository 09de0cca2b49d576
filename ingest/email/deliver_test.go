package email

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-imap/v2"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/internal/replytoken"
	"github.com/ticketd/ticketd/store"
)

const inboxState = "support@127.0.0.1/INBOX"

// waitRead waits until the source has handled every message up to uid.
func waitRead(t testing.TB, st *store.Store, uid imap.UID) {
	t.Helper()
	waitFor(t, fmt.Sprintf("uid %d handled", uid), func() bool {
		ms, err := st.MailboxState(context.Background(), inboxState)
		return err == nil && ms.LastUID >= uint32(uid)
	})
}

// opened appends a first mail and returns its ticket once fully handled.
func opened(t testing.TB, h *testIMAP, st *store.Store, m testMail) *store.Ticket {
	t.Helper()
	uid := h.appendMail("INBOX", m.bytes())
	waitRead(t, st, uid)
	return ticketWithSubject(t, st, m.subject)
}

func responses(t testing.TB, st *store.Store, tk *store.Ticket) []store.Response {
	t.Helper()
	return loadTicket(t, st, tk.ID).Response
}

func TestReplyThreading(t *testing.T) {
	h := startIMAP(t, imapOpts{})
	st := newStore(t)
	src := startSource(t, st, h.baseOptions(t))
	signer := replytoken.New(testSecret)
	tk := opened(t, h, st, testMail{subject: "Printer on fire", msgID: "<orig@customer.test>"})
	want := 0

	check := func(t *testing.T, raw []byte, body string) {
		t.Helper()
		uid := h.appendMail("INBOX", raw)
		waitRead(t, st, uid)
		want++
		r := responses(t, st, tk)
		if len(r) != want {
			t.Fatalf("%d responses, want %d", len(r), want)
		}
		last := r[len(r)-1]
		if !strings.Contains(last.Description, body) || last.CreatorType != store.CreatorCustomer || last.Source != store.SourceEmail {
			t.Errorf("response = %+v", last)
		}
		if n := ticketCount(t, st); n != 1 {
			t.Errorf("%d tickets, want 1", n)
		}
	}

	t.Run("token in To", func(t *testing.T) {
		check(t, testMail{to: signer.Address(testBase, tk.ID), subject: "unrelated subject", body: "Token reply.\r\n"}.bytes(), "Token reply.")
	})
	t.Run("token only in Delivered-To", func(t *testing.T) {
		check(t, testMail{subject: "no thread headers", headers: []string{"Delivered-To: " + signer.Address(testBase, tk.ID)},
			body: "Delivered-To reply.\r\n"}.bytes(), "Delivered-To reply.")
	})
	t.Run("In-Reply-To", func(t *testing.T) {
		check(t, testMail{subject: "Re: Printer on fire", headers: []string{"In-Reply-To: <orig@customer.test>"},
			body: "In-Reply-To reply.\r\n"}.bytes(), "In-Reply-To reply.")
	})
	t.Run("References after a Message-ID rewrite", func(t *testing.T) {
		// Apple Mail: In-Reply-To names a rewritten id nobody knows; the
		// original id is only further back in References.
		check(t, fixture(t, "apple-reply.eml", "N", "apple1", "ORIGINAL", "<ORIG@customer.test>"), "It is still burning.")
	})
	t.Run("reply to the rewritten reply", func(t *testing.T) {
		// The Apple reply's own id was recorded, so answering it threads.
		check(t, testMail{subject: "Re: Re: Printer on fire", headers: []string{"In-Reply-To: <apple1@icloud.test>", "References: <apple1@icloud.test>"},
			body: "Answering the Apple reply.\r\n"}.bytes(), "Answering the Apple reply.")
	})
	t.Run("quoted text stripped", func(t *testing.T) {
		r := responses(t, st, tk)
		for _, x := range r {
			if strings.Contains(x.Description, "Have you tried turning it off") {
				t.Errorf("response kept the quote: %q", x.Description)
			}
		}
	})
	mids := loadTicket(t, st, tk.ID).MessageIDs
	if len(mids) != 6 {
		t.Errorf("ticket has %d message ids, want 6: %v", len(mids), mids)
	}
	if s := src.Stats(); s.Responses != 5 || s.Tickets != 1 {
		t.Errorf("stats = %+v", s)
	}
}

func TestSubjectTagOnlyWithinTeam(t *testing.T) {
	h := startIMAP(t, imapOpts{})
	st := newStore(t)
	o := h.baseOptions(t)
	o.DomainTeams = map[string]string{"acme.test": "acme"}
	startSource(t, st, o)
	tk := opened(t, h, st, testMail{from: "Alice <alice@acme.test>", subject: "VPN is down"})
	if tk.TeamID != "acme" {
		t.Fatalf("team = %q, want acme from domainTeams", tk.TeamID)
	}
	tag := fmt.Sprintf("[#%d]", tk.RefID)

	// A colleague (same team) answers with the tag only.
	uid := h.appendMail("INBOX", testMail{from: "Bob <bob@acme.test>", subject: "Re: " + tag + " VPN is down", body: "Down for me too.\r\n"}.bytes())
	waitRead(t, st, uid)
	if r := responses(t, st, tk); len(r) != 1 || !strings.Contains(r[0].Description, "Down for me too.") {
		t.Fatalf("responses = %+v, want Bob's", r)
	}

	// A stranger using the same tag opens a ticket of their own.
	uid = h.appendMail("INBOX", testMail{from: "Mallory <mallory@evil.test>", subject: tag + " VPN is down", body: "Let me in.\r\n"}.bytes())
	waitRead(t, st, uid)
	if r := responses(t, st, tk); len(r) != 1 {
		t.Errorf("the stranger's mail landed on the ticket: %d responses", len(r))
	}
	all := tickets(t, st)
	if len(all) != 2 || all[1].TeamID == "acme" || !strings.Contains(all[1].Description, "Let me in.") {
		t.Errorf("tickets = %+v, want a new ticket for the stranger outside team acme", all)
	}
}

func TestForgedTokenOpensNewTicket(t *testing.T) {
	h := startIMAP(t, imapOpts{})
	st := newStore(t)
	startSource(t, st, h.baseOptions(t))
	tk := opened(t, h, st, testMail{subject: "Invoice question"})

	forger := replytoken.New([]byte("not the secret"))
	for i, to := range []string{forger.Address(testBase, tk.ID), "support+notatoken@example.com"} {
		uid := h.appendMail("INBOX", testMail{from: "Mallory <mallory@evil.test>", to: to, subject: fmt.Sprintf("Forged %d", i), body: "Forged.\r\n"}.bytes())
		waitRead(t, st, uid)
	}
	if r := responses(t, st, tk); len(r) != 0 {
		t.Errorf("a forged token matched: %d responses", len(r))
	}
	if n := ticketCount(t, st); n != 3 {
		t.Errorf("%d tickets, want 3 (the forged mails open their own)", n)
	}
}

func TestAutoAndOwnMailIgnored(t *testing.T) {
	h := startIMAP(t, imapOpts{})
	st := newStore(t)
	o := h.baseOptions(t)
	o.Accounts[0].ProcessedMailbox = "Processed"
	src := startSource(t, st, o)
	tk := opened(t, h, st, testMail{subject: "Printer on fire", msgID: "<orig2@customer.test>"})
	signer := replytoken.New(testSecret)

	msgs := [][]byte{
		fixture(t, "autoreply.eml", "N", "1", "REF", fmt.Sprint(tk.RefID), "INREPLYTO", "<orig2@customer.test>"),
		fixture(t, "bounce.eml", "N", "1"),
		testMail{from: "Support <support@example.com>", subject: "Re: Printer on fire", headers: []string{"In-Reply-To: <orig2@customer.test>"}}.bytes(),
		testMail{from: signer.Address(testBase, tk.ID), subject: "Looped back"}.bytes(),
		testMail{from: "ticketd <Notifications@Example.com>", subject: "Notification copy"}.bytes(),
	}
	var last imap.UID
	for _, m := range msgs {
		last = h.appendMail("INBOX", m)
	}
	waitRead(t, st, last)
	if n := ticketCount(t, st); n != 1 {
		t.Errorf("%d tickets, want 1", n)
	}
	if r := responses(t, st, tk); len(r) != 0 {
		t.Errorf("ignored mail added %d responses", len(r))
	}
	ign := ignoredMail(t, st)
	reasons := map[string]int{}
	for _, m := range ign {
		reasons[m.Reason]++
	}
	wantReasons := map[string]int{
		"automatic mail: " + AutoSubmittedReplied: 1,
		ReasonOwnAddress: 3,
	}
	for r, n := range wantReasons {
		if reasons[r] != n {
			t.Errorf("ignored with reason %q: %d, want %d (all: %v)", r, reasons[r], n, reasons)
		}
	}
	bounces := 0
	for r, n := range reasons {
		if strings.HasPrefix(r, "automatic mail: bounce") {
			bounces += n
		}
	}
	if bounces != 1 || len(ign) != 5 {
		t.Errorf("ignored = %v, want 1 bounce among 5", reasons)
	}
	waitFor(t, "ignored mail moved as processed", func() bool { return h.count("INBOX") == 0 && h.count("Processed") == 6 })
	if s := src.Stats(); s.Ignored != 5 {
		t.Errorf("stats = %+v", s)
	}
}

func TestRateLimitNewTickets(t *testing.T) {
	h := startIMAP(t, imapOpts{})
	st := newStore(t)
	o := h.baseOptions(t)
	o.RateLimitPerHour = 2
	src := startSource(t, st, o)
	first := opened(t, h, st, testMail{subject: "Flood 1", msgID: "<flood1@customer.test>"})
	var last imap.UID
	for i := 2; i <= 4; i++ {
		last = h.appendMail("INBOX", testMail{subject: fmt.Sprintf("Flood %d", i)}.bytes())
	}
	// Replies to an existing ticket are not limited.
	last2 := h.appendMail("INBOX", testMail{subject: "Re: Flood 1", headers: []string{"In-Reply-To: <flood1@customer.test>"}, body: "Reply over the limit.\r\n"}.bytes())
	// Another sender has a budget of their own.
	last3 := h.appendMail("INBOX", testMail{from: "Other <other@customer.test>", subject: "Other sender"}.bytes())
	waitRead(t, st, max(last, last2, last3))
	if n := ticketCount(t, st); n != 3 {
		t.Errorf("%d tickets, want 3 (2 from carol, 1 from other)", n)
	}
	if r := responses(t, st, first); len(r) != 1 {
		t.Errorf("%d responses, want the reply over the limit", len(r))
	}
	limited := 0
	for _, m := range ignoredMail(t, st) {
		if strings.HasPrefix(m.Reason, ReasonRateLimit) {
			limited++
		}
	}
	if limited != 2 {
		t.Errorf("%d rate-limited, want 2", limited)
	}
	if s := src.Stats(); s.Ignored != 2 {
		t.Errorf("stats = %+v", s)
	}
}

func TestSenderPolicy(t *testing.T) {
	h := startIMAP(t, imapOpts{})
	st := newStore(t)
	// A known customer outside the allowed domains.
	if _, _, err := st.FindOrCreateCustomer(context.Background(), "known@other.test", "Known", ""); err != nil {
		t.Fatal(err)
	}
	o := h.baseOptions(t)
	o.UnknownSenderPolicy = PolicyReject
	o.AllowDomains = []string{"good.test"}
	o.DenyDomains = []string{"evil.good.test", "spam.test"}
	startSource(t, st, o)
	cases := []struct {
		from   string
		ticket bool
		reason string
	}{
		{"a@good.test", true, ""},
		{"a@sub.good.test", true, ""},
		{"known@other.test", true, ""},
		{"stranger@other.test", false, ReasonUnknownSender},
		{"b@evil.good.test", false, ReasonDeniedDomain}, // deny wins over allow
		{"c@spam.test", false, ReasonDeniedDomain},
	}
	var last imap.UID
	for _, c := range cases {
		last = h.appendMail("INBOX", testMail{from: c.from, subject: "From " + c.from}.bytes())
	}
	waitRead(t, st, last)
	got := map[string]bool{}
	for _, tk := range tickets(t, st) {
		got[tk.Subject] = true
	}
	ign := map[string]string{}
	for _, m := range ignoredMail(t, st) {
		ign[m.From] = m.Reason
	}
	for _, c := range cases {
		if got["From "+c.from] != c.ticket {
			t.Errorf("%s: ticket %v, want %v", c.from, got["From "+c.from], c.ticket)
		}
		if !c.ticket && ign[c.from] != c.reason {
			t.Errorf("%s: ignored as %q, want %q", c.from, ign[c.from], c.reason)
		}
	}
	// A denied domain cannot reply either.
	tk := ticketWithSubject(t, st, "From a@good.test")
	uid := h.appendMail("INBOX", testMail{from: "c@spam.test", to: replytoken.New(testSecret).Address(testBase, tk.ID), subject: "Re"}.bytes())
	waitRead(t, st, uid)
	if r := responses(t, st, tk); len(r) != 0 {
		t.Errorf("a denied domain replied: %d responses", len(r))
	}
}

// deliverOnly returns a Source that is never run: mail goes in through
// Deliver, with no IMAP server.
func deliverOnly(t testing.TB, st Store, domainTeams map[string]string) *Source {
	t.Helper()
	src, err := New(st, Options{
		Accounts:         []Account{{Host: "127.0.0.1", TLS: TLSPlain, Username: testUser, Password: testPassword}},
		ReplyBaseAddress: testBase,
		ReplySigner:      replytoken.New(testSecret),
		OwnAddresses:     []string{testBase},
		DomainTeams:      domainTeams,
		Logger:           testLog(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func deliverMail(t testing.TB, src *Source, raw []byte) Result {
	t.Helper()
	res, err := src.Deliver(context.Background(), "test", raw)
	if err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	return res
}

// In-Reply-To and References are written by the sender: they attach a mail
// only to a ticket of the sender's team. A stranger who lists another
// team's Message-IDs (guessed, or seen as a CC'd outsider) gets a ticket of
// his own, like a stranger using another team's [#ref] tag.
func TestHeaderThreadingOnlyWithinTeam(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	src := deliverOnly(t, st, map[string]string{"acme.test": "acme", "other.test": "other"})

	first := deliverMail(t, src, testMail{from: "Alice <alice@acme.test>", subject: "Invoices for March", msgID: "<victim-original@acme.test>"}.bytes())
	victim := loadTicket(t, st, first.TicketID)
	if victim.TeamID != "acme" {
		t.Fatalf("team = %q, want acme", victim.TeamID)
	}
	// Two acknowledgements ticketd sent on it (the ids the corpus mail lists).
	for _, id := range []string{"<ticketd.65f1a2b3c4d5e6f708192a3b@example.com>", "<ticketd.65f1a2b3c4d5e6f708192a3c@example.com>"} {
		if err := st.AddMessageID(ctx, victim.ID, id); err != nil {
			t.Fatal(err)
		}
	}
	untouched := func(t *testing.T) {
		t.Helper()
		now := loadTicket(t, st, victim.ID)
		if len(now.Response) != 0 || now.V != victim.V {
			t.Fatalf("the victim ticket changed: %d responses, __v %d -> %d", len(now.Response), victim.V, now.V)
		}
	}
	ownTicket := func(t *testing.T, res Result, wantTeam string) {
		t.Helper()
		if res.Kind != KindTicket || res.TicketID == victim.ID {
			t.Fatalf("result = %+v, want a new ticket", res)
		}
		if tk := loadTicket(t, st, res.TicketID); tk.TeamID == "acme" || (wantTeam != "" && tk.TeamID != wantTeam) {
			t.Errorf("the new ticket's team = %q, want %q", tk.TeamID, wantTeam)
		}
	}

	var mallory Result
	t.Run("stranger of no team, ids in In-Reply-To and References", func(t *testing.T) {
		raw, err := os.ReadFile(filepath.Join("testdata", "hostile_cross_team_references.eml"))
		if err != nil {
			t.Fatal(err)
		}
		mallory = deliverMail(t, src, raw)
		ownTicket(t, mallory, "")
		untouched(t)
	})
	t.Run("known stranger: his own ticket's id threads, the victim's is passed over", func(t *testing.T) {
		res := deliverMail(t, src, testMail{from: "Mallory <mallory@evil.test>", subject: "Re: a question about my order",
			headers: []string{"In-Reply-To: <victim-original@acme.test>", "References: <hostile-cross-team-1@evil.test> <ticketd.65f1a2b3c4d5e6f708192a3c@example.com>"},
			body:    "Second try.\r\n"}.bytes())
		if res.Kind != KindResponse || res.TicketID != mallory.TicketID || res.ThreadedBy != "message-id" {
			t.Errorf("result = %+v, want a response on his own ticket %s", res, mallory.TicketID.Hex())
		}
		untouched(t)
	})
	t.Run("customer of another team", func(t *testing.T) {
		res := deliverMail(t, src, testMail{from: "Eve <eve@other.test>", subject: "Re: Invoices for March",
			headers: []string{"In-Reply-To: <victim-original@acme.test>"}}.bytes())
		ownTicket(t, res, "other")
		untouched(t)
	})
	t.Run("same team threads", func(t *testing.T) {
		res := deliverMail(t, src, testMail{from: "Bob <bob@acme.test>", subject: "Re: Invoices for March",
			headers: []string{"In-Reply-To: <ticketd.65f1a2b3c4d5e6f708192a3c@example.com>"}, body: "Bob here.\r\n"}.bytes())
		if res.Kind != KindResponse || res.TicketID != victim.ID || res.ThreadedBy != "message-id" {
			t.Errorf("result = %+v, want a response on the acme ticket", res)
		}
	})

	// A customer of no team has a personal one: the ticket is hers alone.
	carol := deliverMail(t, src, testMail{subject: "My own problem", msgID: "<carol-1@customer.test>"}.bytes())
	t.Run("outsider CC'd on a personal ticket", func(t *testing.T) {
		res := deliverMail(t, src, testMail{from: "Dave <dave@customer.test>", subject: "Re: My own problem",
			headers: []string{"In-Reply-To: <carol-1@customer.test>"}}.bytes())
		ownTicket(t, res, "")
		if r := loadTicket(t, st, carol.TicketID).Response; len(r) != 0 {
			t.Errorf("Dave's mail landed on Carol's ticket")
		}
	})
	t.Run("the customer herself threads", func(t *testing.T) {
		res := deliverMail(t, src, testMail{subject: "Re: My own problem", headers: []string{"In-Reply-To: <carol-1@customer.test>"}}.bytes())
		if res.Kind != KindResponse || res.TicketID != carol.TicketID {
			t.Errorf("result = %+v, want a response on Carol's ticket", res)
		}
	})
	t.Run("outsider answering the ticket's reply address", func(t *testing.T) {
		// As the README says: the signed address is proof, whoever holds it.
		res := deliverMail(t, src, testMail{from: "Dave <dave@customer.test>", to: "carol@customer.test",
			subject: "Re: My own problem", headers: []string{"Cc: " + replytoken.New(testSecret).Address(testBase, carol.TicketID)}}.bytes())
		if res.Kind != KindResponse || res.TicketID != carol.TicketID || res.ThreadedBy != "token" {
			t.Errorf("result = %+v, want a response on Carol's ticket by token", res)
		}
	})
}

// lookupCounter counts the store lookups threading makes.
type lookupCounter struct {
	*store.Store
	n atomic.Int64
}

func (c *lookupCounter) TicketIDByMessageID(ctx context.Context, id string) (bson.ObjectID, error) {
	c.n.Add(1)
	return c.Store.TicketIDByMessageID(ctx, id)
}

func (c *lookupCounter) Ticket(ctx context.Context, id bson.ObjectID, scope store.Scope) (*store.Ticket, error) {
	c.n.Add(1)
	return c.Store.Ticket(ctx, id, scope)
}

func (c *lookupCounter) TicketByRef(ctx context.Context, ref int64, scope store.Scope) (*store.Ticket, error) {
	c.n.Add(1)
	return c.Store.TicketByRef(ctx, ref, scope)
}

// A Message-ID is whatever the sender wrote. A stranger who reuses the
// Message-ID of a ticket's opening mail (or a client that gives every mail
// the same one) must not have his mail taken for a re-read of that one and
// dropped, nor write into that ticket; a re-read of the same message, even
// from another mailbox with other header fields, is still a duplicate.
func TestReusedMessageIDIsNotLost(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	src := deliverOnly(t, st, map[string]string{"acme.test": "acme"})

	original := testMail{from: "Alice <alice@acme.test>", subject: "Invoices for March", msgID: "<victim-original@acme.test>", body: "Alice's text.\r\n"}
	first := deliverMail(t, src, original.bytes())
	victim := loadTicket(t, st, first.TicketID)
	const ours = "<ticketd.65f1a2b3c4d5e6f708192a3b.tag@example.com>" // an acknowledgement ticketd sent
	if err := st.AddMessageID(ctx, victim.ID, ours); err != nil {
		t.Fatal(err)
	}
	victim = loadTicket(t, st, victim.ID)
	untouched := func(t *testing.T) {
		t.Helper()
		now := loadTicket(t, st, victim.ID)
		if len(now.Response) != 0 || now.V != victim.V || len(now.Attachments) != len(victim.Attachments) || len(now.MessageIDs) != len(victim.MessageIDs) {
			t.Fatalf("the victim ticket changed: %+v", now)
		}
	}
	ownTicket := func(t *testing.T, raw []byte) Result {
		t.Helper()
		res := deliverMail(t, src, raw)
		if res.Kind != KindTicket || res.Duplicate || res.TicketID == victim.ID {
			t.Fatalf("result = %+v, want a new ticket of his own", res)
		}
		again := deliverMail(t, src, raw)
		if !again.Duplicate || again.TicketID != res.TicketID {
			t.Errorf("read again: %+v, want a duplicate of %s", again, res.TicketID.Hex())
		}
		if ids := loadTicket(t, st, res.TicketID).MessageIDs; len(ids) != 0 {
			t.Errorf("his ticket claims the Message-IDs %q", ids)
		}
		untouched(t)
		return res
	}

	t.Run("stranger reusing the opening mail's Message-ID", func(t *testing.T) {
		ownTicket(t, testMail{from: "Mallory <mallory@evil.test>", subject: "Hello", msgID: "<victim-original@acme.test>", body: "Mallory's text.\r\n"}.bytes())
	})
	t.Run("stranger using a Message-ID ticketd sent", func(t *testing.T) {
		ownTicket(t, testMail{from: "Mallory <mallory@evil.test>", subject: "Hello again", msgID: ours, body: "Mallory again.\r\n"}.bytes())
	})
	t.Run("the same sender's other mail under the same id", func(t *testing.T) {
		ownTicket(t, testMail{from: "Alice <alice@acme.test>", subject: "Another thing", msgID: "<victim-original@acme.test>", body: "A different text.\r\n"}.bytes())
	})
	t.Run("the same message read again from another mailbox", func(t *testing.T) {
		raw := testMail{from: original.from, subject: original.subject, msgID: original.msgID, body: original.body,
			headers: []string{"Received: from mx2.acme.test by imap.example.com", "Delivered-To: sales@example.com"}}.bytes()
		res := deliverMail(t, src, raw)
		if !res.Duplicate || res.TicketID != victim.ID {
			t.Errorf("result = %+v, want a duplicate of the victim ticket", res)
		}
		untouched(t)
	})
	t.Run("a reply's Message-ID reused for another reply", func(t *testing.T) {
		reply := testMail{from: "Bob <bob@acme.test>", subject: "Re: Invoices for March", msgID: "<bob-1@acme.test>",
			headers: []string{"In-Reply-To: <victim-original@acme.test>"}, body: "First answer.\r\n"}
		deliverMail(t, src, reply.bytes())
		reply.body = "Second answer, same broken client.\r\n"
		res := deliverMail(t, src, reply.bytes())
		if res.Kind != KindResponse || res.Duplicate || res.TicketID != victim.ID {
			t.Errorf("result = %+v, want a second response on the ticket", res)
		}
		if again := deliverMail(t, src, reply.bytes()); !again.Duplicate {
			t.Errorf("read again: %+v, want a duplicate", again)
		}
		if n := len(loadTicket(t, st, victim.ID).Response); n != 2 {
			t.Errorf("%d responses, want 2", n)
		}
	})
}
