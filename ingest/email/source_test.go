package email

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/internal/replytoken"
	"github.com/ticketd/ticketd/store"
)

func TestNewMailOpensTicket(t *testing.T) {
	h := startIMAP(t, imapOpts{})
	st := newStore(t)
	raw := testMail{from: "Carol Customer <carol@customer.test>", subject: "Printer on fire", msgID: "<first@customer.test>",
		body: "Hello,\r\nthe printer is on fire.\r\n\r\n-- \r\nCarol\r\n"}.bytes()
	uid := h.appendMail("INBOX", raw)
	src := startSource(t, st, h.baseOptions(t))

	ticketWithSubject(t, st, "Printer on fire")
	waitFor(t, "message flagged \\Seen", func() bool { return hasFlag(h.flags("INBOX", uid), imap.FlagSeen) })
	waitFor(t, "state saved", func() bool {
		ms, err := st.MailboxState(context.Background(), "support@127.0.0.1/INBOX")
		return err == nil && ms.LastUID == uint32(uid) && ms.UIDValidity != 0
	})
	tk := ticketWithSubject(t, st, "Printer on fire")
	if tk.CreatorType != store.CreatorCustomer || tk.Category != DefaultCategory || tk.Source != store.SourceEmail {
		t.Errorf("ticket = creatorType %q category %q source %q", tk.CreatorType, tk.Category, tk.Source)
	}
	if !strings.Contains(tk.Description, "the printer is on fire") || strings.Contains(tk.Description, "Carol\n") {
		t.Errorf("description = %q, want the text without the signature", tk.Description)
	}
	if tk.SourceKey != "email:first@customer.test" {
		t.Errorf("sourceKey = %q", tk.SourceKey)
	}
	cust, err := st.CustomerByEmail(context.Background(), "carol@customer.test")
	if err != nil {
		t.Fatal(err)
	}
	if tk.CreatorID != cust.ID || tk.TeamID != cust.TeamID || !strings.HasPrefix(tk.TeamID, "personal:") {
		t.Errorf("creator %s team %q; customer %s team %q", tk.CreatorID.Hex(), tk.TeamID, cust.ID.Hex(), cust.TeamID)
	}
	if len(tk.MessageIDs) != 1 || tk.MessageIDs[0] != "<first@customer.test>" {
		t.Errorf("messageIds = %v", tk.MessageIDs)
	}
	if s := src.Stats(); s.Tickets != 1 || s.Fetched != 1 {
		t.Errorf("stats = %+v", s)
	}
}

func TestAttachmentsStoredOnce(t *testing.T) {
	h := startIMAP(t, imapOpts{})
	st := newStore(t)
	h.appendMail("INBOX", fixture(t, "attachment.eml", "N", "1", "TO", testBase))
	startSource(t, st, h.baseOptions(t))
	tk := ticketWithSubject(t, st, "Screenshot of the error")
	key := "att-1@customer.test"
	f, err := st.Attachment(context.Background(), attachmentID(key, "0"), store.AllTickets)
	if err != nil {
		t.Fatalf("attachment of the opening mail: %v", err)
	}
	if f.TicketID != tk.ID || f.Filename != "error.log" || string(f.Data) != "error: the printer is on fire\n" {
		t.Errorf("attachment = ticket %s %q %q", f.TicketID.Hex(), f.Filename, f.Data)
	}
	// The full text (with the signature) is kept beside the description.
	full, err := st.Attachment(context.Background(), attachmentID(key, "full-text"), store.AllTickets)
	if err != nil {
		t.Fatalf("full text: %v", err)
	}
	if !strings.Contains(string(full.Data), "Dave") {
		t.Errorf("full text = %q", full.Data)
	}
	// The opening mail's files are listed on the ticket itself.
	if as := tk.Attachments; len(as) != 2 || as[0].ID != f.ID || as[0].Size != 30 || as[1].ID != full.ID {
		t.Errorf("ticket attachments = %+v", as)
	}

	// On a reply, the files are listed on the response.
	to := replytoken.New(testSecret).Address(testBase, tk.ID)
	h.appendMail("INBOX", fixture(t, "attachment.eml", "N", "2", "TO", to))
	waitFor(t, "the reply", func() bool { return len(loadTicket(t, st, tk.ID).Response) == 1 })
	r := loadTicket(t, st, tk.ID).Response[0]
	if len(r.Attachments) != 2 || r.Attachments[0].Filename != "error.log" || r.Attachments[0].Size != 30 ||
		r.Attachments[0].ID != attachmentID("att-2@customer.test", "0") || r.Attachments[1].Filename != "original-message.txt" {
		t.Errorf("response attachments = %+v", r.Attachments)
	}
	if f, err := st.Attachment(context.Background(), r.Attachments[0].ID, store.AllTickets); err != nil || f.TicketID != tk.ID {
		t.Errorf("the reply's file: %v", err)
	}
}

func TestSeenMailIsStillProcessed(t *testing.T) {
	h := startIMAP(t, imapOpts{})
	st := newStore(t)
	// A human read it in their mail client before ticketd did.
	h.appendMail("INBOX", testMail{subject: "Already read by a human"}.bytes(), imap.FlagSeen)
	startSource(t, st, h.baseOptions(t))
	ticketWithSubject(t, st, "Already read by a human")
}

func TestIdleWakesProcessing(t *testing.T) {
	h := startIMAP(t, imapOpts{})
	st := newStore(t)
	startSource(t, st, h.baseOptions(t)) // polls hourly
	waitFor(t, "the source to IDLE", func() bool { return strings.Contains(h.debug.String(), "+ idling") })
	h.appendMail("INBOX", testMail{subject: "Arrived while idling"}.bytes())
	// No poll can find it (hourly): only the EXISTS sent during IDLE.
	ticketWithSubject(t, st, "Arrived while idling")
}

func TestPollWithoutIdle(t *testing.T) {
	h := startIMAP(t, imapOpts{})
	st := newStore(t)
	o := h.baseOptions(t)
	off := false
	o.Idle = &off
	o.PollSchedule = "@every 1s"
	src := startSource(t, st, o)
	waitFor(t, "first poll", func() bool {
		ms, _ := st.MailboxState(context.Background(), "support@127.0.0.1/INBOX")
		return ms.UIDValidity != 0
	})
	h.appendMail("INBOX", testMail{subject: "Found by the poll"}.bytes())
	ticketWithSubject(t, st, "Found by the poll")
	if strings.Contains(h.debug.String(), "+ idling") {
		t.Error("the source sent IDLE although idle is off")
	}
	_ = src
}

func TestReconnectAfterDrop(t *testing.T) {
	h := startIMAP(t, imapOpts{})
	st := newStore(t)
	h.appendMail("INBOX", testMail{subject: "Before the drop"}.bytes())
	src := startSource(t, st, h.baseOptions(t))
	ticketWithSubject(t, st, "Before the drop")
	waitFor(t, "the source to IDLE", func() bool { return strings.Contains(h.debug.String(), "+ idling") })
	h.dropConns()
	waitFor(t, "a reconnect", func() bool { return src.Stats().Reconnects >= 1 })
	h.appendMail("INBOX", testMail{subject: "After the drop"}.bytes())
	ticketWithSubject(t, st, "After the drop")
	if n := ticketCount(t, st); n != 2 {
		t.Errorf("%d tickets, want 2", n)
	}
}

func TestTLSModes(t *testing.T) {
	for _, mode := range []string{TLSImplicit, TLSStart} {
		t.Run(mode, func(t *testing.T) {
			h := startIMAP(t, imapOpts{tls: mode})
			st := newStore(t)
			o := h.baseOptions(t)
			o.Accounts[0].TLS = mode
			o.Accounts[0].TLSConfig = &tls.Config{RootCAs: h.roots}
			h.appendMail("INBOX", testMail{subject: "Over " + mode}.bytes())
			startSource(t, st, o)
			ticketWithSubject(t, st, "Over "+mode)
		})
	}
}

func TestPlainToRemoteHostRefused(t *testing.T) {
	st := newStore(t)
	o := Options{Accounts: []Account{{Host: "imap.example.com", TLS: TLSPlain, Username: "u", Password: "p"}}}
	_, err := New(st, o)
	if err == nil || !strings.Contains(err.Error(), "accounts[0].tls") || !strings.Contains(err.Error(), "allowInsecure") {
		t.Fatalf("New = %v, want a refusal naming accounts[0].tls and allowInsecure", err)
	}
	o.Accounts[0].AllowInsecure = true
	if _, err := New(st, o); err != nil {
		t.Fatalf("with allowInsecure: %v", err)
	}
	// At connect time the peer address decides, whatever the name said.
	a := &Account{Host: "localhost", TLS: TLSPlain}
	if err := checkPlainRemote(a, &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 143}); err == nil {
		t.Error("plain connection to 192.0.2.7 accepted")
	}
	if err := checkPlainRemote(a, &net.TCPAddr{IP: net.ParseIP("::1"), Port: 143}); err != nil {
		t.Errorf("plain connection to ::1 refused: %v", err)
	}
}

func TestValidateListsEveryProblem(t *testing.T) {
	o := Options{
		Accounts: []Account{
			{Host: "", TLS: "ssl", Auth: "cram", Port: 70000},
			{Host: "imap.example.com", Username: "u", Auth: AuthXOAuth2, Mailboxes: []string{"INBOX", ""}},
		},
		PollSchedule:        "every minute",
		UnknownSenderPolicy: "maybe",
		DenyDomains:         []string{"bad@domain"},
		MaxMessageBytes:     -1,
		OwnAddresses:        []string{"nobody"},
		DomainTeams:         map[string]string{"acme.test": "personal:0123456789abcdef01234567"},
	}
	err := o.Validate()
	if err == nil {
		t.Fatal("Validate accepted bad options")
	}
	for _, key := range []string{
		"accounts[0].host", "accounts[0].port", "accounts[0].tls", "accounts[0].username", "accounts[0].auth",
		"accounts[1].token", "accounts[1].mailboxes[1]", "pollSchedule", "unknownSenderPolicy",
		"denyDomains[0]", "maxMessageBytes", "ownAddresses[0]", "domainTeams.acme.test",
	} {
		if !strings.Contains(err.Error(), key+":") {
			t.Errorf("Validate error does not name %s:\n%v", key, err)
		}
	}
	good := Options{Accounts: []Account{{Host: "imap.gmail.com", Username: "u", Auth: AuthXOAuth2, TokenCommand: "echo t"}}}
	if err := good.Validate(); err != nil {
		t.Errorf("Validate(good) = %v", err)
	}
}

func TestOAuthOverIMAP(t *testing.T) {
	for _, mech := range []string{AuthXOAuth2, AuthOAuthBearer} {
		t.Run(mech, func(t *testing.T) {
			h := startIMAP(t, imapOpts{oauthToken: "ya29.good"})
			st := newStore(t)
			o := h.baseOptions(t)
			o.Accounts[0].Auth = mech
			o.Accounts[0].Password = ""
			o.Accounts[0].TokenCommand = "printf 'ya29.good\\n'"
			h.appendMail("INBOX", testMail{subject: "Via " + mech}.bytes())
			startSource(t, st, o)
			ticketWithSubject(t, st, "Via "+mech)
		})
	}
	t.Run("refused", func(t *testing.T) {
		h := startIMAP(t, imapOpts{oauthToken: "ya29.good"})
		w := &worker{acct: &Account{Host: h.host, Port: h.port, TLS: TLSPlain, Username: testUser, Auth: AuthXOAuth2, Token: "expired"}}
		_, err := w.dial(context.Background())
		if err == nil || !strings.Contains(err.Error(), `"status":"401"`) {
			t.Fatalf("dial with a bad token = %v, want the server's JSON error", err)
		}
	})
}

func TestBrokenMessageQuarantinedNextProcessed(t *testing.T) {
	h := startIMAP(t, imapOpts{})
	st := newStore(t)
	broken := fixture(t, "broken.eml")
	if _, err := Parse(broken, ParseOptions{}); err == nil {
		t.Fatal("fixture broken.eml parses; it should not")
	}
	ub := h.appendMail("INBOX", broken)
	h.appendMail("INBOX", testMail{subject: "After the broken one"}.bytes())
	o := h.baseOptions(t)
	o.Accounts[0].ProcessedMailbox = "Processed"
	o.Accounts[0].QuarantineMailbox = "Quarantine"
	src := startSource(t, st, o)
	ticketWithSubject(t, st, "After the broken one")
	q := quarantined(t, st)
	if len(q) != 1 || !strings.HasPrefix(q[0].Reason, "unparsable") || q[0].UID != uint32(ub) {
		t.Fatalf("quarantine = %+v", q)
	}
	full, err := st.QuarantinedMessage(context.Background(), q[0].ID)
	if err != nil || !bytes.Equal(full.Raw, broken) || full.Truncated {
		t.Errorf("quarantined raw = %q truncated %v (%v)", full.Raw, full.Truncated, err)
	}
	waitFor(t, "messages moved", func() bool {
		return h.count("INBOX") == 0 && h.count("Quarantine") == 1 && h.count("Processed") == 1
	})
	waitFor(t, "counted", func() bool { s := src.Stats(); return s.Quarantined == 1 && s.Tickets == 1 })
}

func TestMoveFallbackWithoutMoveCapability(t *testing.T) {
	h := startIMAP(t, imapOpts{noMove: true})
	st := newStore(t)
	h.appendMail("INBOX", testMail{subject: "Copied then expunged"}.bytes())
	o := h.baseOptions(t)
	o.Accounts[0].ProcessedMailbox = "Processed"
	startSource(t, st, o)
	ticketWithSubject(t, st, "Copied then expunged")
	waitFor(t, "message moved by COPY+EXPUNGE", func() bool { return h.count("INBOX") == 0 && h.count("Processed") == 1 })
	if strings.Contains(h.debug.String(), "UID MOVE") {
		t.Error("UID MOVE sent to a server without MOVE")
	}
}

func TestOversizedQuarantinedWithoutDownload(t *testing.T) {
	h := startIMAP(t, imapOpts{})
	st := newStore(t)
	big := testMail{from: "Eve Big <eve@customer.test>", subject: "Huge video", msgID: "<huge@customer.test>",
		body: strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 4096)}.bytes()
	uid := h.appendMail("INBOX", big)
	h.appendMail("INBOX", testMail{subject: "Small one after"}.bytes())
	o := h.baseOptions(t)
	o.MaxMessageBytes = 64 << 10
	o.QuarantineRawBytes = 1024
	before := h.sent.Load()
	src := startSource(t, st, o)
	ticketWithSubject(t, st, "Small one after")
	q := quarantined(t, st)
	if len(q) != 1 {
		t.Fatalf("quarantine = %+v", q)
	}
	full, err := st.QuarantinedMessage(context.Background(), q[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if !full.Truncated || len(full.Raw) != 1024 || full.Size != int64(len(big)) || full.UID != uint32(uid) ||
		full.From != "eve@customer.test" || full.Subject != "Huge video" || !strings.Contains(full.Reason, "maxMessageBytes") {
		t.Errorf("quarantined = truncated %v raw %d size %d uid %d from %q subject %q reason %q",
			full.Truncated, len(full.Raw), full.Size, full.UID, full.From, full.Subject, full.Reason)
	}
	if sent := h.sent.Load() - before; sent > int64(len(big))/4 {
		t.Errorf("the server sent %d bytes for a %d-byte message that should not be downloaded", sent, len(big))
	}
	waitFor(t, "flagged", func() bool { return hasFlag(h.flags("INBOX", uid), imap.FlagSeen) })
	waitFor(t, "counted", func() bool { return src.Stats().Quarantined == 1 })
}

// A crash after storing but before flagging and saving the position: the
// next run reads the same messages again and stores nothing twice.
func TestCrashBeforeFlagStoresOnce(t *testing.T) {
	h := startIMAP(t, imapOpts{})
	st := newStore(t)
	o := h.baseOptions(t)
	h.appendMail("INBOX", testMail{subject: "Only once", msgID: "<once@customer.test>"}.bytes())
	h.appendMail("INBOX", testMail{subject: "No Message-ID", msgID: "-"}.bytes())
	h.appendMail("INBOX", testMail{subject: "Re: Only once", msgID: "<once-reply@customer.test>",
		headers: []string{"In-Reply-To: <once@customer.test>"}, body: "More details.\r\n"}.bytes())
	h.appendMail("INBOX", fixture(t, "attachment.eml", "N", "crash", "TO", testBase))
	first := startSource(t, st, o)
	tk := ticketWithSubject(t, st, "Only once")
	waitFor(t, "the response", func() bool { return len(loadTicket(t, st, tk.ID).Response) == 1 })
	ticketWithSubject(t, st, "Screenshot of the error")
	waitFor(t, "all read", func() bool { return first.Stats().Fetched == 4 })
	first.stop(t)

	// "Crash": the flags and the saved position are lost.
	for uid := imap.UID(1); uid <= 4; uid++ {
		h.unflag("INBOX", uid)
	}
	ms, _ := st.MailboxState(context.Background(), "support@127.0.0.1/INBOX")
	ms.LastUID = 0
	if err := st.SaveMailboxState(context.Background(), ms); err != nil {
		t.Fatal(err)
	}

	second := startSource(t, st, o)
	waitFor(t, "all read again", func() bool { return second.Stats().Fetched == 4 })
	waitFor(t, "state saved", func() bool {
		ms, _ := st.MailboxState(context.Background(), "support@127.0.0.1/INBOX")
		return ms.LastUID == 4
	})
	if n := ticketCount(t, st); n != 3 {
		t.Errorf("%d tickets after the re-read, want 3", n)
	}
	if r := loadTicket(t, st, tk.ID).Response; len(r) != 1 {
		t.Errorf("%d responses after the re-read, want 1", len(r))
	}
	if s := second.Stats(); s.Duplicates != 4 || s.Tickets != 0 || s.Responses != 0 {
		t.Errorf("second run stats = %+v, want 4 duplicates and nothing new", s)
	}
	// Same through Deliver, twice in a row, for a message without
	// Message-ID (keyed by its hash).
	raw := testMail{subject: "Hash keyed", msgID: "-"}.bytes()
	for i := 0; i < 2; i++ {
		if _, err := second.Deliver(context.Background(), "test", raw); err != nil {
			t.Fatal(err)
		}
	}
	if n := ticketCount(t, st); n != 4 {
		t.Errorf("%d tickets, want 4", n)
	}
}

func TestUIDValidityChangeRescansWithoutDuplicates(t *testing.T) {
	h := startIMAP(t, imapOpts{})
	st := newStore(t)
	o := h.baseOptions(t)
	m1 := testMail{subject: "Rescan one"}.bytes()
	m2 := testMail{subject: "Rescan two"}.bytes()
	h.appendMail("INBOX", m1)
	h.appendMail("INBOX", m2)
	first := startSource(t, st, o)
	ticketWithSubject(t, st, "Rescan one")
	ticketWithSubject(t, st, "Rescan two")
	first.stop(t)

	// The mailbox is rebuilt (a server migration): new UIDVALIDITY, the old
	// messages come back under new UIDs, plus a new one.
	if err := h.user.Delete("INBOX"); err != nil {
		t.Fatal(err)
	}
	if err := h.user.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	h.appendMail("INBOX", m1, imap.FlagSeen)
	h.appendMail("INBOX", m2, imap.FlagSeen)
	h.appendMail("INBOX", testMail{subject: "Rescan three"}.bytes())

	second := startSource(t, st, o)
	ticketWithSubject(t, st, "Rescan three")
	waitFor(t, "the rescan", func() bool { return second.Stats().Fetched == 3 })
	if n := ticketCount(t, st); n != 3 {
		t.Errorf("%d tickets, want 3", n)
	}
	if s := second.Stats(); s.Rescans != 1 || s.Duplicates != 2 {
		t.Errorf("stats = %+v, want 1 rescan and 2 duplicates", s)
	}
}

// faultyStore fails chosen writes with store.ErrUnavailable, as a
// database outage would.
type faultyStore struct {
	*store.Store
	failCreates atomic.Int32
	// refuse fails every CreateTicket for this subject with a non-outage
	// error, as a document the database will never accept would.
	refuse string
	// started, when set, is closed when the first CreateTicket begins,
	// which then waits for release to be closed before it goes on.
	started, release chan struct{}
	// failSaves fails that many SaveAttachment calls with an outage.
	failSaves atomic.Int32
}

func (f *faultyStore) SaveAttachment(ctx context.Context, a store.AttachmentFile) error {
	if f.failSaves.Add(-1) >= 0 {
		return errors.Join(store.ErrUnavailable, errors.New("connection refused"))
	}
	return f.Store.SaveAttachment(ctx, a)
}

func (f *faultyStore) CreateTicket(ctx context.Context, in store.NewTicket) (*store.Ticket, bool, error) {
	if f.started != nil {
		select {
		case <-f.started:
		default:
			close(f.started)
			<-f.release
		}
	}
	if in.Subject == f.refuse {
		return nil, false, errors.New("document too large")
	}
	if f.failCreates.Add(-1) >= 0 {
		return nil, false, errors.Join(store.ErrUnavailable, errors.New("connection refused"))
	}
	return f.Store.CreateTicket(ctx, in)
}

func TestStoreKeepsRefusingQuarantines(t *testing.T) {
	h := startIMAP(t, imapOpts{})
	st := newStore(t)
	fs := &faultyStore{Store: st, refuse: "Never accepted"}
	h.appendMail("INBOX", testMail{subject: "Never accepted"}.bytes())
	h.appendMail("INBOX", testMail{subject: "Behind the refused one"}.bytes())
	o := h.baseOptions(t)
	o.MaxDeliveryAttempts = 3
	src := startSource(t, fs, o)
	ticketWithSubject(t, st, "Behind the refused one")
	q := quarantined(t, st)
	if len(q) != 1 || !strings.Contains(q[0].Reason, "document too large") {
		t.Fatalf("quarantine = %+v", q)
	}
	if s := src.Stats(); s.StoreErrors != 2 {
		t.Errorf("stats = %+v, want 2 failed attempts before the quarantine", s)
	}
}

func TestShutdownFinishesMessageInFlight(t *testing.T) {
	h := startIMAP(t, imapOpts{})
	st := newStore(t)
	fs := &faultyStore{Store: st, started: make(chan struct{}), release: make(chan struct{})}
	uid := h.appendMail("INBOX", testMail{subject: "In flight at shutdown"}.bytes())
	h.appendMail("INBOX", testMail{subject: "Left for the next run"}.bytes())
	src := startSource(t, fs, h.baseOptions(t))
	<-fs.started
	src.cancel() // while the ticket is being written
	close(fs.release)
	src.stop(t)
	if n := ticketCount(t, st); n != 1 {
		t.Fatalf("%d tickets after shutdown, want the one in flight", n)
	}
	if !hasFlag(h.flags("INBOX", uid), imap.FlagSeen) {
		t.Error("the message in flight was not acknowledged")
	}
	ms, err := st.MailboxState(context.Background(), inboxState)
	if err != nil || ms.LastUID != uint32(uid) {
		t.Errorf("state = %+v, %v; want lastUid %d", ms, err, uid)
	}
}

func TestStoreOutageDoesNotAdvance(t *testing.T) {
	h := startIMAP(t, imapOpts{})
	st := newStore(t)
	fs := &faultyStore{Store: st}
	fs.failCreates.Store(3)
	u1 := h.appendMail("INBOX", testMail{subject: "During the outage"}.bytes())
	h.appendMail("INBOX", testMail{subject: "Behind it"}.bytes())
	src := startSource(t, fs, h.baseOptions(t))
	ticketWithSubject(t, st, "During the outage")
	ticketWithSubject(t, st, "Behind it")
	waitFor(t, "counted", func() bool { return src.Stats().Tickets == 2 })
	if s := src.Stats(); s.StoreErrors != 3 || s.Quarantined != 0 {
		t.Errorf("stats = %+v, want 3 store errors, nothing quarantined", s)
	}
	waitFor(t, "flagged after the outage", func() bool { return hasFlag(h.flags("INBOX", u1), imap.FlagSeen) })
}

// Cancelling ends IDLE at once: Run returns without waiting for the poll
// (hourly) or for ShutdownGrace to cut the connection (an hour here).
func TestShutdownEndsIdle(t *testing.T) {
	h := startIMAP(t, imapOpts{})
	st := newStore(t)
	o := h.baseOptions(t)
	o.ShutdownGrace = time.Hour
	src := startSource(t, st, o)
	waitFor(t, "the source to IDLE", func() bool { return strings.Contains(h.debug.String(), "+ idling") })
	src.stop(t)
	if !strings.Contains(h.debug.String(), "DONE") {
		t.Error("IDLE was not ended with DONE")
	}
}

var _ Store = (*store.Store)(nil)

func TestAttachmentIDsAreStable(t *testing.T) {
	a, b := attachmentID("k@x", "0"), attachmentID("k@x", "0")
	if a != b || a == attachmentID("k@x", "1") || a == (bson.ObjectID{}) {
		t.Errorf("attachment ids not derived deterministically: %s %s", a.Hex(), b.Hex())
	}
}

// The files of a mail that opened a ticket are stored after the ticket; if
// that fails, the re-read of the mail (recognized as already stored) stores
// them.
func TestFailedFileSaveIsRepairedByTheReRead(t *testing.T) {
	h := startIMAP(t, imapOpts{})
	fs := &faultyStore{Store: newStore(t)}
	fs.failSaves.Store(1)
	src, err := New(fs, h.baseOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	raw := fixture(t, "attachment.eml", "N", "1", "TO", testBase)
	if _, err := src.Deliver(context.Background(), "test", raw); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("first delivery: %v, want the outage", err)
	}
	res, err := src.Deliver(context.Background(), "test", raw)
	if err != nil || !res.Duplicate {
		t.Fatalf("re-read: %+v %v", res, err)
	}
	f, err := fs.Attachment(context.Background(), attachmentID("att-1@customer.test", "0"), store.AllTickets)
	if err != nil || f.TicketID != res.TicketID || f.Filename != "error.log" {
		t.Errorf("the file after the re-read: %+v %v", f, err)
	}
}

// A processed mailbox the server refuses (deleted under us) must not make
// the source read the same mail forever: it is stored, flagged, left where
// it is, and the position moves on.
func TestRefusedMoveDoesNotBlockTheMailbox(t *testing.T) {
	h := startIMAP(t, imapOpts{})
	st := newStore(t)
	o := h.baseOptions(t)
	o.Accounts[0].ProcessedMailbox = "Processed"
	src := startSource(t, st, o)
	waitFor(t, "the processed mailbox", func() bool { return h.user.Delete("Processed") == nil })
	uid := h.appendMail("INBOX", testMail{subject: "Nowhere to go"}.bytes())
	ticketWithSubject(t, st, "Nowhere to go")
	waitFor(t, "the read position", func() bool {
		ms, _ := st.MailboxState(context.Background(), "support@127.0.0.1/INBOX")
		return ms.LastUID == uint32(uid)
	})
	if !slices.Contains(h.flags("INBOX", uid), imap.FlagSeen) {
		t.Errorf("the stored mail is not flagged \\Seen")
	}
	// A mail that came after it is read once the first is done with, and
	// by then the first was read once: a source stuck on it would have
	// read it again before this one, or never moved past it.
	next := h.appendMail("INBOX", testMail{subject: "Behind it"}.bytes())
	ticketWithSubject(t, st, "Behind it")
	waitFor(t, "the read position past the second mail", func() bool {
		ms, _ := st.MailboxState(context.Background(), "support@127.0.0.1/INBOX")
		return ms.LastUID == uint32(next)
	})
	if n := src.Stats().Fetched; n != 2 {
		t.Errorf("fetched %d times for 2 mails, want each once", n)
	}
}
