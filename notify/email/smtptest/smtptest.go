// Package smtptest runs a real SMTP server in-process for tests: it listens
// on 127.0.0.1:0, speaks SMTP through github.com/emersion/go-smtp, records
// every accepted message (envelope and raw bytes), and can be told to
// reject the next transactions with a 4xx or 5xx reply, to require
// authentication (PLAIN, LOGIN, XOAUTH2), to speak TLS (STARTTLS or
// implicit) with a self-signed certificate, or to answer slowly.
//
//	srv := smtptest.Start(t)
//	// point the code under test at srv.Host(), srv.Port()
//	msgs := srv.WaitFor(t, 1, 5*time.Second)
//
// The server is closed when the test ends.
package smtptest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// TLSMode says whether and how the server speaks TLS.
type TLSMode int

// The TLS modes.
const (
	// NoTLS: plain SMTP, STARTTLS not offered.
	NoTLS TLSMode = iota
	// StartTLS: plain SMTP that offers STARTTLS.
	StartTLS
	// ImplicitTLS: TLS from the first byte (SMTPS, port 465 style).
	ImplicitTLS
)

// Options configures a Server. The zero value is a plain SMTP server that
// accepts every message without authentication.
type Options struct {
	TLS TLSMode
	// Users maps user names to passwords. When set, the server offers AUTH
	// PLAIN and LOGIN and refuses MAIL FROM before a successful AUTH.
	Users map[string]string
	// Tokens maps user names to OAuth2 bearer tokens. When set, the server
	// offers AUTH XOAUTH2 (and requires authentication, as with Users).
	Tokens map[string]string
}

// Message is one accepted message.
type Message struct {
	From string   // envelope sender (MAIL FROM)
	To   []string // envelope recipients (RCPT TO)
	Data []byte   // the message as received, CRLF line ends
	// User is who authenticated for this message; empty without AUTH.
	User string
	// TLS reports whether the message arrived over an encrypted connection.
	TLS        bool
	ReceivedAt time.Time
}

// Parse returns the message's header and body, parsed by net/mail.
func (m Message) Parse() (*mail.Message, error) {
	return mail.ReadMessage(bytes.NewReader(m.Data))
}

// Header returns the first value of a header field, or "".
func (m Message) Header(key string) string {
	msg, err := m.Parse()
	if err != nil {
		return ""
	}
	return msg.Header.Get(key)
}

// Server is a running SMTP test server. Its methods are safe for
// concurrent use.
type Server struct {
	opts    Options
	srv     *smtp.Server
	ln      net.Listener
	certPEM []byte
	done    chan struct{}

	mu       sync.Mutex
	msgs     []Message
	changed  chan struct{} // closed and replaced whenever msgs grows
	failN    int
	failCode int
	dropN    int // accept this many more messages, then drop the connection before answering RSET
	drops    int // connections dropped so (DropAfterNext)
	delay    time.Duration
	hold     chan struct{} // non-nil: DATA waits until it is closed
	attempts int
	authFail int
}

// Start runs a plain server without authentication for t.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith runs a server configured by o for t; it is closed when t ends.
func StartWith(t testing.TB, o Options) *Server {
	t.Helper()
	s := &Server{opts: o, done: make(chan struct{}), changed: make(chan struct{})}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{s: s, c: c}, nil
	}))
	s.srv.Domain = "smtptest.localhost"
	s.srv.AllowInsecureAuth = true
	s.srv.ReadTimeout = time.Minute
	s.srv.WriteTimeout = time.Minute
	s.srv.MaxMessageBytes = 32 << 20
	s.srv.MaxRecipients = 100
	logger := &testLogger{t: t}
	s.srv.ErrorLog = logger

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("smtptest: listen: %v", err)
	}
	if o.TLS != NoTLS {
		cfg, certPEM, err := selfSigned()
		if err != nil {
			_ = ln.Close()
			t.Fatalf("smtptest: certificate: %v", err)
		}
		s.certPEM = certPEM
		if o.TLS == StartTLS {
			s.srv.TLSConfig = cfg
		} else {
			ln = tls.NewListener(ln, cfg)
		}
	}
	s.ln = ln
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = s.srv.Serve(ln)
	}()
	t.Cleanup(func() {
		close(s.done)
		_ = s.srv.Close()
		<-served
		logger.stop()
	})
	return s
}

// Addr is the host:port the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Host is the address the server listens on, 127.0.0.1.
func (s *Server) Host() string { return s.ln.Addr().(*net.TCPAddr).IP.String() }

// Port is the port the server listens on.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// CertPEM is the server's self-signed certificate (valid for 127.0.0.1 and
// localhost), to trust in the client; nil without TLS.
func (s *Server) CertPEM() []byte { return s.certPEM }

// Messages returns a copy of the accepted messages, in arrival order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Attempts counts the transactions that reached DATA, accepted or failed.
func (s *Server) Attempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts
}

// AuthFailures counts rejected AUTH attempts.
func (s *Server) AuthFailures() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.authFail
}

// Changed returns a channel that is closed when the next message is
// accepted; for waiting without polling.
func (s *Server) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// WaitFor waits until at least n messages were accepted and returns them;
// it fails t when timeout passes first.
func (s *Server) WaitFor(t testing.TB, n int, timeout time.Duration) []Message {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		got, ch := len(s.msgs), s.changed
		if got >= n {
			out := append([]Message(nil), s.msgs...)
			s.mu.Unlock()
			return out
		}
		s.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("smtptest: %d messages after %v, want %d", got, timeout, n)
			return nil
		}
	}
}

// FailNext makes the next n transactions fail at the end of DATA with
// code (a 4xx is temporary, a 5xx permanent); the message is not recorded.
func (s *Server) FailNext(n, code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failN, s.failCode = n, code
}

// DropAfterNext makes the next n transactions succeed (the message is
// recorded and its DATA answered 250) and then cuts the connection when the
// client resets the session for its next message, as a relay that crashes
// or times out right after accepting a message does: the client sees an
// error although the message went out.
func (s *Server) DropAfterNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropN = n
}

// Drops is how many connections DropAfterNext has dropped.
func (s *Server) Drops() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.drops
}

// SetDelay makes the server wait d before answering the end of DATA, to
// simulate a slow relay; the wait ends early when the server closes.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// Hold makes every end of DATA wait until the returned release is called
// (or the server closes): a send stays in flight for exactly as long as a
// test needs. Release is idempotent.
func (s *Server) Hold() (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	hold := make(chan struct{})
	s.hold = hold
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			if s.hold == hold {
				s.hold = nil
			}
			s.mu.Unlock()
			close(hold)
		})
	}
}

func (s *Server) authRequired() bool { return len(s.opts.Users) > 0 || len(s.opts.Tokens) > 0 }

// session is one SMTP connection's state.
type session struct {
	s    *Server
	c    *smtp.Conn
	user string
	from string
	to   []string

	dropOnReset int // close the connection on this many-th Reset from now (DropAfterNext)
}

func (ss *session) AuthMechanisms() []string {
	var m []string
	if len(ss.s.opts.Users) > 0 {
		m = append(m, sasl.Plain, sasl.Login)
	}
	if len(ss.s.opts.Tokens) > 0 {
		m = append(m, "XOAUTH2")
	}
	return m
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	switch {
	case mech == sasl.Plain && len(ss.s.opts.Users) > 0:
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			return ss.login(user, pass, ss.s.opts.Users)
		}), nil
	case mech == sasl.Login && len(ss.s.opts.Users) > 0:
		return &loginServer{check: func(user, pass string) error { return ss.login(user, pass, ss.s.opts.Users) }}, nil
	case mech == "XOAUTH2" && len(ss.s.opts.Tokens) > 0:
		return &xoauth2Server{check: func(user, token string) error { return ss.login(user, token, ss.s.opts.Tokens) }}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (ss *session) login(user, secret string, known map[string]string) error {
	if want, ok := known[user]; ok && want == secret {
		ss.user = user
		return nil
	}
	ss.s.mu.Lock()
	ss.s.authFail++
	ss.s.mu.Unlock()
	return smtp.ErrAuthFailed
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.s.authRequired() && ss.user == "" {
		return smtp.ErrAuthRequired
	}
	ss.from = from
	ss.to = nil
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s := ss.s
	s.mu.Lock()
	s.attempts++
	delay, hold := s.delay, s.hold
	failCode := 0
	if s.failN > 0 {
		s.failN--
		failCode = s.failCode
	}
	s.mu.Unlock()
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-s.done:
			t.Stop()
			return errors.New("server closing")
		}
	}
	if hold != nil {
		select {
		case <-hold:
		case <-s.done:
			return errors.New("server closing")
		}
	}
	if failCode != 0 {
		return &smtp.SMTPError{
			Code:         failCode,
			EnhancedCode: smtp.EnhancedCode{failCode / 100, 0, 0},
			Message:      "smtptest: failing as told (" + strconv.Itoa(failCode) + ")",
		}
	}
	_, isTLS := ss.c.TLSConnectionState()
	m := Message{From: ss.from, To: append([]string(nil), ss.to...), Data: data, User: ss.user, TLS: isTLS, ReceivedAt: time.Now()}
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	close(s.changed)
	s.changed = make(chan struct{})
	if s.dropN > 0 {
		s.dropN--
		// The server resets the session once after answering DATA and
		// again for the client's RSET: drop the connection on the second.
		ss.dropOnReset = 2
	}
	s.mu.Unlock()
	return nil
}

func (ss *session) Reset() {
	ss.from, ss.to = "", nil
	if ss.dropOnReset > 0 {
		if ss.dropOnReset--; ss.dropOnReset == 0 {
			ss.s.mu.Lock()
			ss.s.drops++
			ss.s.mu.Unlock()
			_ = ss.c.Conn().Close() // not ss.c.Close: it waits for the command being handled
		}
	}
}

func (ss *session) Logout() error { return nil }

// loginServer is the server side of AUTH LOGIN (draft-murchison-sasl-login),
// which go-sasl implements only for clients.
type loginServer struct {
	step  int
	user  string
	check func(user, pass string) error
}

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		l.step++
		if response != nil { // initial response carries the user name
			l.user = string(response)
			l.step++
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 1:
		l.step++
		l.user = string(response)
		return []byte("Password:"), false, nil
	case 2:
		l.step++
		return nil, true, l.check(l.user, string(response))
	}
	return nil, true, errors.New("unexpected LOGIN response")
}

// xoauth2Server is the server side of AUTH XOAUTH2 (Google's format:
// "user=U\x01auth=Bearer T\x01\x01").
type xoauth2Server struct {
	check func(user, token string) error
}

func (x *xoauth2Server) Next(response []byte) ([]byte, bool, error) {
	if response == nil {
		return []byte{}, false, nil
	}
	var user, token string
	for _, kv := range strings.Split(string(response), "\x01") {
		switch {
		case strings.HasPrefix(kv, "user="):
			user = strings.TrimPrefix(kv, "user=")
		case strings.HasPrefix(kv, "auth=Bearer "):
			token = strings.TrimPrefix(kv, "auth=Bearer ")
		}
	}
	if user == "" || token == "" {
		return nil, true, smtp.ErrAuthFailed
	}
	return nil, true, x.check(user, token)
}

// selfSigned makes a throw-away certificate for 127.0.0.1 and localhost.
func selfSigned() (*tls.Config, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "smtptest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	pair, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		return nil, nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, certPEM, nil
}

// testLogger sends go-smtp's error log to the test log until the test
// ends; connection goroutines may still log after that, which testing
// forbids.
type testLogger struct {
	mu      sync.Mutex
	t       testing.TB
	stopped bool
}

func (l *testLogger) Printf(format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.stopped {
		l.t.Logf("smtptest: "+format, v...)
	}
}

func (l *testLogger) Println(v ...any) { l.Printf("%s", strings.TrimSuffix(fmt.Sprintln(v...), "\n")) }

func (l *testLogger) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
}
