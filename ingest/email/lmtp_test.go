package email

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/ticketd/ticketd/internal/replytoken"
	"github.com/ticketd/ticketd/internal/testwait"
	"github.com/ticketd/ticketd/store"
)

// lmtpOptions configure a Source with no IMAP account, fed by LMTP alone.
func lmtpOptions(t testing.TB) Options {
	return Options{
		LMTP:             LMTPOptions{Listen: "127.0.0.1:0"},
		ReplyBaseAddress: testBase,
		ReplySigner:      replytoken.New(testSecret),
		OwnAddresses:     []string{testBase, "notifications@example.com"},
		ShutdownGrace:    5 * time.Second,
		Logger:           testLog(t),
	}
}

// startLMTP serves LMTP for st on a loopback port until the test ends;
// tweak, if any, adjusts the Source before it serves.
func startLMTP(t testing.TB, st Store, o Options, tweak ...func(*Source)) (*Source, string) {
	t.Helper()
	src, addr, stop := serveLMTP(t, st, o, tweak...)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("ServeLMTP: %v", err)
		}
	})
	return src, addr
}

// serveLMTP starts serving; stop cancels it and returns ServeLMTP's error
// once it has returned (and fails the test if it does not).
func serveLMTP(t testing.TB, st Store, o Options, tweak ...func(*Source)) (*Source, string, func() error) {
	t.Helper()
	src, err := New(st, o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	for _, f := range tweak {
		f(src)
	}
	l, err := ListenLMTP(o.LMTP.Listen)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.ServeLMTP(ctx, l) }()
	var once sync.Once
	var res error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case res = <-done:
			case <-time.After(testwait.Timeout):
				res = errors.New("ServeLMTP did not return after cancel")
			}
		})
		return res
	}
	return src, l.Addr().String(), stop
}

// lmtpClient is one LMTP connection, greeted with LHLO.
func lmtpClient(t testing.TB, addr string) (*smtp.Client, net.Conn) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClientLMTP(conn)
	if err := c.Hello("mx.example.com"); err != nil {
		t.Fatalf("LHLO: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c, conn
}

// lmtpSend hands raw to the server for rcpt, returning the server's
// refusal (at RCPT or for the recipient after DATA) or nil for 250.
func lmtpSend(c *smtp.Client, rcpt string, raw []byte) error {
	if err := c.Mail("carol@customer.test", nil); err != nil {
		return err
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		c.Reset()
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(raw); err != nil {
		return err
	}
	resp, err := w.CloseWithLMTPResponse()
	if err != nil {
		var le smtp.LMTPDataError
		if errors.As(err, &le) {
			return le[rcpt]
		}
		return err
	}
	if len(resp) != 1 {
		return errors.New("no per-recipient answer")
	}
	return nil
}

func wantCode(t *testing.T, err error, code int, enh smtp.EnhancedCode) {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != code || se.EnhancedCode != enh {
		t.Fatalf("answer %v, want %d %v", err, code, enh)
	}
}

func send(t *testing.T, c *smtp.Client, rcpt string, raw []byte) {
	t.Helper()
	if err := lmtpSend(c, rcpt, raw); err != nil {
		t.Fatalf("send to %s: %v", rcpt, err)
	}
}

// The email end-to-end cases over LMTP: the answer 250 comes only once the
// mail is stored, so each check runs right after it, without waiting.
func TestLMTPDelivery(t *testing.T) {
	st := newStore(t)
	_, addr := startLMTP(t, st, lmtpOptions(t))
	c, _ := lmtpClient(t, addr)
	signer := replytoken.New(testSecret)

	if ok, v := c.Extension("SIZE"); !ok || v != "26214400" {
		t.Errorf("SIZE %v %q, want the default maxMessageBytes", ok, v)
	}
	for _, ext := range []string{"8BITMIME", "PIPELINING", "ENHANCEDSTATUSCODES"} {
		if ok, _ := c.Extension(ext); !ok {
			t.Errorf("LHLO lacks %s", ext)
		}
	}

	send(t, c, testBase, testMail{subject: "Printer on fire"}.bytes())
	tk := ticketWithSubject(t, st, "Printer on fire")

	// The token is only in the envelope recipient (Postfix's lmtp client
	// writes no Delivered-To): it threads all the same.
	send(t, c, signer.Address(testBase, tk.ID), testMail{subject: "unrelated", body: "Token reply.\r\n"}.bytes())
	if r := responses(t, st, tk); len(r) != 1 || !strings.Contains(r[0].Description, "Token reply.") {
		t.Fatalf("responses = %+v, want the token reply", r)
	}

	// A forged token is accepted (it is our address) and opens a ticket.
	forger := replytoken.New([]byte("not the secret"))
	send(t, c, forger.Address(testBase, tk.ID), testMail{from: "Mallory <mallory@evil.test>", subject: "Forged"}.bytes())
	if r := responses(t, st, tk); len(r) != 1 {
		t.Errorf("a forged token matched: %d responses", len(r))
	}
	ticketWithSubject(t, st, "Forged")

	send(t, c, testBase, testMail{subject: "Out of office", headers: []string{"Auto-Submitted: auto-replied"}}.bytes())
	if ign := ignoredMail(t, st); len(ign) != 1 || ign[0].Reason != reasonAutoPrefix+AutoSubmittedReplied || ign[0].Mailbox != lmtpMailbox {
		t.Errorf("ignored = %+v, want the auto-reply", ign)
	}

	wantCode(t, lmtpSend(c, "someone@elsewhere.test", testMail{subject: "Not ours"}.bytes()), 550, smtp.EnhancedCode{5, 1, 1})

	// No From: garbage, kept in the quarantine and answered 250.
	send(t, c, testBase, []byte("Subject: garbage\r\n\r\nno sender at all\r\n"))
	if q := quarantined(t, st); len(q) != 1 || q[0].Mailbox != lmtpMailbox || !strings.HasPrefix(q[0].Reason, "unparsable") || q[0].Size < 38 {
		t.Errorf("quarantine = %+v, want the garbage", q)
	}
	if n := ticketCount(t, st); n != 2 {
		t.Errorf("%d tickets, want 2", n)
	}
}

func TestLMTPOversize(t *testing.T) {
	st := newStore(t)
	o := lmtpOptions(t)
	o.MaxMessageBytes = 2000
	_, addr := startLMTP(t, st, o)
	c, _ := lmtpClient(t, addr)
	big := testMail{subject: "Huge", body: strings.Repeat("x", 70) + strings.Repeat("\r\n"+strings.Repeat("x", 70), 40)}.bytes()
	wantCode(t, lmtpSend(c, testBase, big), 552, smtp.EnhancedCode{5, 3, 4})
	if n := ticketCount(t, st); n != 0 {
		t.Errorf("%d tickets, want 0", n)
	}
	// The connection is still good for the next mail.
	send(t, c, testBase, testMail{subject: "Small"}.bytes())
	ticketWithSubject(t, st, "Small")
}

// A store outage answers 451 (the mail server queues the mail); the retry
// after it stores the mail once, and a further retry stores nothing new.
func TestLMTPStoreOutage(t *testing.T) {
	fs := &fullStore{Store: newStore(t), createErr: errors.Join(store.ErrUnavailable, errors.New("server selection timeout"))}
	fs.full.Store(true)
	src, addr := startLMTP(t, fs, lmtpOptions(t))
	c, _ := lmtpClient(t, addr)
	raw := testMail{subject: "During the outage"}.bytes()
	wantCode(t, lmtpSend(c, testBase, raw), 451, smtp.EnhancedCode{4, 3, 0})
	if n := ticketCount(t, fs.Store); n != 0 {
		t.Fatalf("%d tickets during the outage", n)
	}
	fs.full.Store(false)
	send(t, c, testBase, raw)
	send(t, c, testBase, raw)
	if n := ticketCount(t, fs.Store); n != 1 {
		t.Errorf("%d tickets, want 1", n)
	}
	if q := quarantined(t, fs.Store); len(q) != 0 {
		t.Errorf("the outage quarantined mail: %+v", q)
	}
	if s := src.Stats(); s.StoreErrors != 1 || s.Duplicates != 1 || s.Tickets != 1 {
		t.Errorf("stats = %+v", s)
	}
}

// hookStore calls afterCreate once a ticket is stored.
type hookStore struct {
	*store.Store
	afterCreate func()
}

func (h *hookStore) CreateTicket(ctx context.Context, in store.NewTicket) (*store.Ticket, bool, error) {
	t, created, err := h.Store.CreateTicket(ctx, in)
	h.afterCreate()
	return t, created, err
}

// The mail server is cut off after DATA, before the answer (a crash, a
// dropped connection): it retries, and the retry stores nothing twice.
func TestLMTPKilledBeforeAnswer(t *testing.T) {
	hs := &hookStore{Store: newStore(t)}
	var once sync.Once
	var conn net.Conn
	hs.afterCreate = func() { once.Do(func() { conn.Close() }) }
	src, addr := startLMTP(t, hs, lmtpOptions(t))
	c, cn := lmtpClient(t, addr)
	conn = cn
	raw := testMail{subject: "Cut off"}.bytes()
	if err := lmtpSend(c, testBase, raw); err == nil {
		t.Fatal("the cut-off attempt got an answer")
	}
	c2, _ := lmtpClient(t, addr)
	send(t, c2, testBase, raw)
	if n := ticketCount(t, hs.Store); n != 1 {
		t.Errorf("%d tickets, want 1", n)
	}
	if s := src.Stats(); s.Duplicates != 1 {
		t.Errorf("stats = %+v, want the retry counted a duplicate", s)
	}
}

func TestLMTPListenValidation(t *testing.T) {
	for listen, ok := range map[string]bool{
		"127.0.0.1:2424":              true,
		"[::1]:2424":                  true,
		"unix:/run/ticketd/lmtp.sock": true,
		"0.0.0.0:2424":                false,
		"unix:":                       false,
		"nonsense":                    false,
	} {
		o := Options{LMTP: LMTPOptions{Listen: listen}}
		if err := o.Validate(); (err == nil) != ok {
			t.Errorf("listen %q: err %v, want ok=%v", listen, err, ok)
		}
	}
	o := Options{LMTP: LMTPOptions{Listen: "0.0.0.0:2424", AllowInsecure: true}}
	if err := o.Validate(); err != nil {
		t.Errorf("allowInsecure: %v", err)
	}
	if err := (&Options{}).Validate(); err == nil {
		t.Error("no account and no lmtp listener: no error")
	}
}

// A client that goes silent, before or in the middle of a message, is
// dropped after the timeout: it holds nothing for long.
func TestLMTPSilentClientDropped(t *testing.T) {
	st := newStore(t)
	_, addr := startLMTP(t, st, lmtpOptions(t), func(s *Source) { s.lmtpTimeout = 100 * time.Millisecond })
	for name, script := range map[string]string{
		"after LHLO":  "LHLO mx\r\n",
		"inside DATA": "LHLO mx\r\nMAIL FROM:<a@customer.test>\r\nRCPT TO:<" + testBase + ">\r\nDATA\r\nFrom: a@customer.test\r\nSubject: half\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(testwait.Timeout)) // the test's own bound
			if _, err := conn.Write([]byte(script)); err != nil {
				t.Fatal(err)
			}
			all, err := io.ReadAll(conn) // until the server closes
			if err != nil {
				t.Fatalf("the server kept the silent connection open: %v (read %q)", err, all)
			}
		})
	}
	if n := ticketCount(t, st); n != 0 {
		t.Errorf("%d tickets from half a message", n)
	}
}

// blockingStore holds CreateTicket until release is closed, and says when
// it is held.
type blockingStore struct {
	*store.Store
	held    chan struct{}
	release chan struct{}
}

func (b *blockingStore) CreateTicket(ctx context.Context, in store.NewTicket) (*store.Ticket, bool, error) {
	close(b.held)
	<-b.release
	return b.Store.CreateTicket(ctx, in)
}

// Shutdown lets the message being stored finish and answer 250, and does
// not wait for idle connections (a mail server keeps its open).
func TestLMTPShutdownFinishesInFlight(t *testing.T) {
	bs := &blockingStore{Store: newStore(t), held: make(chan struct{}), release: make(chan struct{})}
	o := lmtpOptions(t)
	o.ShutdownGrace = time.Hour // waiting for the idle client would hang the test
	_, addr, stop := serveLMTP(t, bs, o)
	lmtpClient(t, addr) // idle
	c, _ := lmtpClient(t, addr)
	sent := make(chan error, 1)
	go func() { sent <- lmtpSend(c, testBase, testMail{subject: "In flight"}.bytes()) }()
	<-bs.held
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	waitFor(t, "the listener closed", func() bool {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
		}
		return err != nil
	})
	close(bs.release)
	if err := <-sent; err != nil {
		t.Fatalf("the message in flight: %v", err)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	ticketWithSubject(t, bs.Store, "In flight")
}

// ticketd, the final delivery, adds the Return-Path: a bounce with no
// other mark than its null envelope sender is ignored, as over IMAP.
func TestLMTPNullSenderIsBounce(t *testing.T) {
	st := newStore(t)
	_, addr := startLMTP(t, st, lmtpOptions(t))
	c, _ := lmtpClient(t, addr)
	if err := c.Mail("", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(testBase, nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write(testMail{from: "mail@relay.test", subject: "Undelivered"}.bytes())
	if _, err := w.CloseWithLMTPResponse(); err != nil {
		t.Fatal(err)
	}
	if ign := ignoredMail(t, st); len(ign) != 1 || ign[0].Reason != reasonAutoPrefix+AutoBounceNullPath {
		t.Errorf("ignored = %+v, want the bounce", ign)
	}
	if n := ticketCount(t, st); n != 0 {
		t.Errorf("%d tickets from a bounce", n)
	}
}

// A socket left by a crashed daemon is replaced; one a running daemon
// listens on is left alone.
func TestLMTPUnixSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "lmtp") // a unix socket path is short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	listen := "unix:" + filepath.Join(dir, "lmtp.sock")
	stale, err := ListenLMTP(listen)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close() // as a crash leaves it

	live, err := ListenLMTP(listen)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	defer live.Close()
	if l, err := ListenLMTP(listen); err == nil {
		l.Close()
		t.Fatal("took over the socket of a running listener")
	}
}
