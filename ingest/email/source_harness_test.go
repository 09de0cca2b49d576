package email

// The test harness of the IMAP side: a real go-imap v2 server
// (imapserver + imapmemserver) on 127.0.0.1:0, a store from storetest, and
// a Source running against both.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/emersion/go-sasl"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/internal/replytoken"
	"github.com/ticketd/ticketd/internal/testwait"
	"github.com/ticketd/ticketd/store"
	"github.com/ticketd/ticketd/store/storetest"
)

const (
	testUser     = "support"
	testPassword = "secret"
	testBase     = "support@example.com"
)

var testSecret = []byte("reply-token-test-secret")

type imapOpts struct {
	tls        string      // "", "tls", "starttls"
	noMove     bool        // do not advertise MOVE (COPY fallback)
	oauthToken string      // accept XOAUTH2/OAUTHBEARER with this token
	caps       imap.CapSet // overrides the capabilities
}

// testIMAP is an in-process IMAP server.
type testIMAP struct {
	t     testing.TB
	user  *imapmemserver.User
	srv   *imapserver.Server
	host  string
	port  int
	roots *x509.CertPool

	mu    sync.Mutex
	conns []net.Conn
	sent  atomic.Int64 // bytes the server wrote to clients
	debug syncBuffer   // the server's view of the protocol

	appendMu sync.Mutex
	appended chan struct{} // closed (and replaced) by every appendMail
}

// appendSignal returns a channel that the next appendMail closes.
func (h *testIMAP) appendSignal() <-chan struct{} {
	h.appendMu.Lock()
	defer h.appendMu.Unlock()
	return h.appended
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.n.Add(int64(n))
	return n, err
}

type trackingListener struct {
	net.Listener
	h *testIMAP
}

func (l trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.h.mu.Lock()
	l.h.conns = append(l.h.conns, c)
	l.h.mu.Unlock()
	return countingConn{Conn: c, n: &l.h.sent}, nil
}

// harnessSession is imapmemserver's session with an IDLE that cannot miss
// mail. imapmemserver answers "+ idling" before it registers for updates,
// so a message appended in between would only be announced with the next
// one. Here IDLE first reports what is pending (as Dovecot does), then
// every append made through the harness: once the server has written
// "+ idling", a test may append and rely on IDLE alone.
type harnessSession struct {
	imapserver.Session
	h *testIMAP
}

func (s *harnessSession) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	for {
		appended := s.h.appendSignal()
		if err := s.Session.Poll(w, true); err != nil {
			return err
		}
		select {
		case <-appended:
		case <-stop:
			return nil
		}
	}
}

func (s *harnessSession) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	return s.Session.(imapserver.SessionMove).Move(w, numSet, dest)
}

func (s *harnessSession) Namespace() (*imap.NamespaceData, error) {
	return s.Session.(imapserver.SessionNamespace).Namespace()
}

// oauthSession adds SASL mechanisms to the harness session: an OAuth token
// stands for the user's password.
type oauthSession struct {
	*harnessSession
	token string
}

func (s *oauthSession) AuthenticateMechanisms() []string {
	return []string{"PLAIN", "XOAUTH2", "OAUTHBEARER"}
}

func (s *oauthSession) Authenticate(mech string) (sasl.Server, error) {
	switch mech {
	case "PLAIN":
		return sasl.NewPlainServer(func(_, user, pass string) error { return s.Session.Login(user, pass) }), nil
	case "OAUTHBEARER":
		return sasl.NewOAuthBearerServer(func(o sasl.OAuthBearerOptions) *sasl.OAuthBearerError {
			if o.Token != s.token || s.Session.Login(o.Username, testPassword) != nil {
				return &sasl.OAuthBearerError{Status: "invalid_token", Schemes: "bearer"}
			}
			return nil
		}), nil
	case "XOAUTH2":
		return &xoauth2Server{s: s}, nil
	}
	return nil, fmt.Errorf("mechanism %s not supported", mech)
}

// xoauth2Server is the server side of XOAUTH2 as Gmail runs it: a refused
// token gets a JSON challenge, answered with an empty response, then NO.
type xoauth2Server struct {
	s      *oauthSession
	failed bool
}

func (x *xoauth2Server) Next(resp []byte) ([]byte, bool, error) {
	if x.failed {
		return nil, true, fmt.Errorf("invalid credentials")
	}
	if resp == nil {
		return []byte{}, false, nil
	}
	f := strings.Split(string(resp), "\x01")
	user, _ := strings.CutPrefix(f[0], "user=")
	var tok string
	for _, kv := range f[1:] {
		if v, ok := strings.CutPrefix(kv, "auth=Bearer "); ok {
			tok = v
		}
	}
	if len(f) != 4 || f[2] != "" || f[3] != "" || tok != x.s.token || x.s.Session.Login(user, testPassword) != nil {
		x.failed = true
		return []byte(`{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`), false, nil
	}
	return nil, true, nil
}

func startIMAP(t testing.TB, o imapOpts) *testIMAP {
	t.Helper()
	h := &testIMAP{t: t, host: "127.0.0.1", appended: make(chan struct{})}
	mem := imapmemserver.New()
	h.user = imapmemserver.NewUser(testUser, testPassword)
	mem.AddUser(h.user)
	for _, m := range []string{"INBOX"} {
		if err := h.user.Create(m, nil); err != nil {
			t.Fatal(err)
		}
	}
	caps := o.caps
	if caps == nil {
		caps = imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}, imap.CapMove: {}, imap.CapNamespace: {}}
		if o.noMove {
			delete(caps, imap.CapMove)
		}
	}
	so := &imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			sess := &harnessSession{Session: mem.NewSession(), h: h}
			if o.oauthToken != "" {
				return &oauthSession{harnessSession: sess, token: o.oauthToken}, nil, nil
			}
			return sess, nil, nil
		},
		Caps:         caps,
		InsecureAuth: o.tls == "",
		Logger:       testLogger{t},
		DebugWriter:  &h.debug,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.port = ln.Addr().(*net.TCPAddr).Port
	var l net.Listener = trackingListener{Listener: ln, h: h}
	if o.tls != "" {
		cert, roots := selfSigned(t)
		h.roots = roots
		cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
		if o.tls == "tls" {
			l = tls.NewListener(l, cfg)
		} else {
			so.TLSConfig = cfg
		}
	}
	h.srv = imapserver.New(so)
	go func() { _ = h.srv.Serve(l) }()
	t.Cleanup(func() { _ = h.srv.Close() })
	return h
}

type testLogger struct{ t testing.TB }

func (l testLogger) Printf(format string, args ...any) {
	if !strings.Contains(format, "closed") {
		l.t.Logf("imapserver: "+format, args...)
	}
}

// appendMail puts a message into a mailbox (as an MTA's delivery would) and
// returns its UID.
func (h *testIMAP) appendMail(mailbox string, raw []byte, flags ...imap.Flag) imap.UID {
	h.t.Helper()
	data, err := h.user.Append(mailbox, bytes.NewReader(raw), &imap.AppendOptions{Flags: flags})
	if err != nil {
		h.t.Fatalf("append to %s: %v", mailbox, err)
	}
	h.appendMu.Lock()
	close(h.appended)
	h.appended = make(chan struct{})
	h.appendMu.Unlock()
	return data.UID
}

// dropConns cuts every client connection, as a server restart would.
func (h *testIMAP) dropConns() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.conns {
		_ = c.Close()
	}
	h.conns = nil
}

// flags returns the flags of the message with uid in mailbox, as the server
// holds them, or nil when it is not there.
func (h *testIMAP) flags(mailbox string, uid imap.UID) []imap.Flag {
	h.t.Helper()
	sess := imapmemserver.NewUserSession(h.user)
	defer sess.Close()
	if _, err := sess.Select(mailbox, nil); err != nil {
		h.t.Fatalf("select %s: %v", mailbox, err)
	}
	st, err := sess.Search(imapserver.NumKindUID, &imap.SearchCriteria{UID: []imap.UIDSet{imap.UIDSetNum(uid)}}, &imap.SearchOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	if len(st.AllUIDs()) == 0 {
		return nil
	}
	var out []imap.Flag
	for _, f := range []imap.Flag{imap.FlagSeen, imap.FlagDeleted, imap.FlagFlagged} {
		s, err := sess.Search(imapserver.NumKindUID, &imap.SearchCriteria{UID: []imap.UIDSet{imap.UIDSetNum(uid)}, Flag: []imap.Flag{f}}, &imap.SearchOptions{})
		if err != nil {
			h.t.Fatal(err)
		}
		if len(s.AllUIDs()) > 0 {
			out = append(out, f)
		}
	}
	if out == nil {
		out = []imap.Flag{}
	}
	return out
}

// unflag removes \Seen from a message, as a crash before the flag was
// set would leave it.
func (h *testIMAP) unflag(mailbox string, uid imap.UID) {
	h.t.Helper()
	sess := imapmemserver.NewUserSession(h.user)
	defer sess.Close()
	if _, err := sess.Select(mailbox, nil); err != nil {
		h.t.Fatalf("select %s: %v", mailbox, err)
	}
	err := sess.Store(nil, imap.UIDSetNum(uid), &imap.StoreFlags{Op: imap.StoreFlagsDel, Silent: true, Flags: []imap.Flag{imap.FlagSeen}}, nil)
	if err != nil {
		h.t.Fatal(err)
	}
}

// count returns the number of messages in a mailbox.
func (h *testIMAP) count(mailbox string) uint32 {
	h.t.Helper()
	st, err := h.user.Status(mailbox, &imap.StatusOptions{NumMessages: true})
	if err != nil {
		h.t.Fatalf("status %s: %v", mailbox, err)
	}
	return *st.NumMessages
}

func hasFlag(fs []imap.Flag, f imap.Flag) bool {
	for _, x := range fs {
		if x == f {
			return true
		}
	}
	return false
}

func selfSigned(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// testLog is a slog logger writing to the test log (stderr with -v).
func testLog(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// baseOptions reads the harness's INBOX as support@example.com.
func (h *testIMAP) baseOptions(t testing.TB) Options {
	return Options{
		Accounts: []Account{{
			Host: h.host, Port: h.port, TLS: TLSPlain,
			Username: testUser, Password: testPassword,
		}},
		// IDLE alone finds new mail (see harnessSession); a test that
		// needs the poll sets its own schedule.
		PollSchedule:     "@every 1h",
		ReplyBaseAddress: testBase,
		ReplySigner:      replytoken.New(testSecret),
		OwnAddresses:     []string{testBase, "notifications@example.com"},
		ReconnectMin:     20 * time.Millisecond,
		ReconnectMax:     200 * time.Millisecond,
		ShutdownGrace:    5 * time.Second,
		Logger:           testLog(t),
	}
}

// running is a Source being run.
type running struct {
	*Source
	cancel  context.CancelFunc
	done    chan error
	stopped sync.Once
}

// stop cancels Run and waits for it to return; later calls do nothing.
func (r *running) stop(t testing.TB) {
	t.Helper()
	r.stopped.Do(func() { r.wait(t) })
}

func (r *running) wait(t testing.TB) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(testwait.Timeout):
		t.Fatal("Run did not return after cancel")
	}
}

func startSource(t testing.TB, st Store, o Options) *running {
	t.Helper()
	src, err := New(st, o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Source: src, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- src.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// waitFor polls cond until it holds, or fails the test.
var waitFor = testwait.For

// tickets lists every ticket in the store, oldest first.
func tickets(t testing.TB, s *store.Store) []store.Ticket {
	t.Helper()
	ts, _, err := s.ListTickets(context.Background(), store.AllTickets, store.ListQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for i, j := 0, len(ts)-1; i < j; i, j = i+1, j-1 {
		ts[i], ts[j] = ts[j], ts[i]
	}
	return ts
}

func ticketCount(t testing.TB, s *store.Store) int { return len(tickets(t, s)) }

func loadTicket(t testing.TB, s *store.Store, id bson.ObjectID) *store.Ticket {
	t.Helper()
	tk, err := s.Ticket(context.Background(), id, store.AllTickets)
	if err != nil {
		t.Fatalf("load ticket %s: %v", id.Hex(), err)
	}
	return tk
}

// ticketWithSubject waits for the ticket with this subject.
func ticketWithSubject(t testing.TB, s *store.Store, subject string) *store.Ticket {
	t.Helper()
	var found *store.Ticket
	waitFor(t, "ticket "+subject, func() bool {
		for _, tk := range tickets(t, s) {
			if tk.Subject == subject {
				found = loadTicket(t, s, tk.ID)
				return true
			}
		}
		return false
	})
	return found
}

func ignoredMail(t testing.TB, s *store.Store) []store.IgnoredMail {
	t.Helper()
	l, _, err := s.ListIgnored(context.Background(), 1000, 0)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func quarantined(t testing.TB, s *store.Store) []store.QuarantinedMail {
	t.Helper()
	l, _, err := s.ListQuarantine(context.Background(), 1000, 0)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// testMail builds a message. Headers are "Name: value" lines; From, To,
// Subject, Message-ID and Date are filled in when missing.
type testMail struct {
	from, to, subject, msgID string
	headers                  []string
	body                     string
}

var mailSeq atomic.Int64

func (m testMail) bytes() []byte {
	if m.from == "" {
		m.from = "Carol Customer <carol@customer.test>"
	}
	if m.to == "" {
		m.to = testBase
	}
	if m.msgID == "" {
		m.msgID = fmt.Sprintf("<m%d.%d@customer.test>", time.Now().UnixNano(), mailSeq.Add(1))
	}
	if m.body == "" {
		m.body = "Hello,\r\nsomething is broken.\r\n"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\n", m.from, m.to, m.subject, time.Now().UTC().Format(time.RFC1123Z))
	if m.msgID != "-" {
		fmt.Fprintf(&b, "Message-ID: %s\r\n", m.msgID)
	}
	for _, h := range m.headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	b.WriteString(m.body)
	return []byte(b.String())
}

// fixture reads testdata/imap/name, replacing {{KEY}} placeholders.
func fixture(t testing.TB, name string, repl ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "imap", name))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i := 0; i+1 < len(repl); i += 2 {
		s = strings.ReplaceAll(s, "{{"+repl[i]+"}}", repl[i+1])
	}
	// Fixtures are stored with LF; mail has CRLF.
	s = strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
	return []byte(s)
}

func newStore(t testing.TB) *store.Store { return storetest.Open(t) }
