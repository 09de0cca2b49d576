package email

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// LMTPOptions configures the LMTP listener (RFC 2033) through which a
// local mail server (Postfix, Exim, Dovecot's LDA) hands mail over, with
// no IMAP server's notification delay in between.
type LMTPOptions struct {
	// Listen is "host:port" or "unix:/path/to.sock"; empty: no listener.
	Listen string `yaml:"listen"`
	// AllowInsecure permits listening beyond loopback (LMTP has no
	// authentication: anyone who can connect can open tickets).
	AllowInsecure bool `yaml:"allowInsecure"`
}

// Bounds on one LMTP connection: every phase is under a deadline, so a
// slow or silent client holds only its own connection's goroutine, and
// not for long.
const (
	lmtpReadTimeout   = time.Minute
	lmtpWriteTimeout  = time.Minute
	lmtpMaxLineLength = 2000 // RFC 5321 4.5.3.1.6, doubled (go-smtp's default)
	lmtpMaxRecipients = 100
	// lmtpMailbox names LMTP mail in ignored and quarantine records.
	lmtpMailbox = "lmtp"
)

// LMTPNetwork splits a listen address into a network and an address,
// for net.Listen and net.Dial.
func LMTPNetwork(listen string) (network, addr string) {
	if p, ok := strings.CutPrefix(listen, "unix:"); ok {
		return "unix", p
	}
	return "tcp", listen
}

// validate checks the listen address; bad reports a problem under key.
func (l *LMTPOptions) validate(bad func(key, format string, args ...any)) {
	if l.Listen == "" {
		return
	}
	network, addr := LMTPNetwork(l.Listen)
	if network == "unix" {
		if addr == "" {
			bad("lmtp.listen", "%q names no socket path", l.Listen)
		}
		return
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		bad("lmtp.listen", "%q is neither host:port nor unix:/path", l.Listen)
		return
	}
	if !l.AllowInsecure && !isLoopbackHost(host) {
		bad("lmtp.listen", "%q is not a loopback address and LMTP has no authentication; listen on 127.0.0.1 or a unix socket, or set lmtp.allowInsecure: true", l.Listen)
	}
}

// ListenLMTP opens the configured LMTP listener. A unix socket left over
// from an earlier run is replaced, one a running daemon answers on is
// not; the socket is writable by anyone who can reach its directory,
// which is what guards it.
func ListenLMTP(listen string) (net.Listener, error) {
	network, addr := LMTPNetwork(listen)
	if network == "unix" {
		if fi, err := os.Lstat(addr); err == nil && fi.Mode()&os.ModeSocket != 0 {
			if c, err := net.DialTimeout("unix", addr, time.Second); err == nil {
				c.Close()
				return nil, fmt.Errorf("lmtp listen %s: another process is listening on it", listen)
			}
			if err := os.Remove(addr); err != nil {
				return nil, fmt.Errorf("remove stale lmtp socket %s: %w", addr, err)
			}
		}
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("lmtp listen %s: %w", listen, err)
	}
	if network == "unix" {
		if err := os.Chmod(addr, 0o666); err != nil {
			l.Close()
			return nil, fmt.Errorf("lmtp socket %s: %w", addr, err)
		}
	}
	return l, nil
}

// ServeLMTP answers LMTP on l until ctx is cancelled; then it stops
// accepting, lets the messages in flight finish (within ShutdownGrace),
// closes every connection (idle ones at once: a mail server keeps its
// LMTP connections open between mails) and returns nil.
func (s *Source) ServeLMTP(ctx context.Context, l net.Listener) error {
	fl := &inflight{}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &lmtpSession{src: s, ctx: ctx, fl: fl}, nil
	}))
	srv.LMTP = true
	srv.Domain = "ticketd"
	srv.MaxMessageBytes = s.opts.MaxMessageBytes
	srv.MaxRecipients = lmtpMaxRecipients
	srv.MaxLineLength = lmtpMaxLineLength
	srv.ReadTimeout = cmp.Or(s.lmtpTimeout, lmtpReadTimeout)
	srv.WriteTimeout = cmp.Or(s.lmtpTimeout, lmtpWriteTimeout)
	srv.ErrorLog = lmtpLogger{s}

	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	s.log.Info("lmtp listener started", "listen", l.Addr().String())
	select {
	case err := <-done:
		l.Close()
		return fmt.Errorf("lmtp serve: %w", err)
	case <-ctx.Done():
	}
	l.Close() // no new connections
	if !fl.drain(s.opts.ShutdownGrace) {
		s.log.Warn("lmtp messages still in flight after the shutdown grace; closing their connections (the mail server retries them)")
	}
	srv.Close()
	<-done
	s.log.Info("lmtp listener stopped")
	return nil
}

// inflight counts the messages being received or stored, so shutdown
// waits for them and no others start.
type inflight struct {
	mu      sync.Mutex
	closing bool
	wg      sync.WaitGroup
}

// start registers a message; false once shutdown has begun.
func (f *inflight) start() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing {
		return false
	}
	f.wg.Add(1)
	return true
}

func (f *inflight) done() { f.wg.Done() }

// drain refuses new messages and waits up to grace for those in flight.
func (f *inflight) drain(grace time.Duration) bool {
	f.mu.Lock()
	f.closing = true
	f.mu.Unlock()
	ch := make(chan struct{})
	go func() { f.wg.Wait(); close(ch) }()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	}
}

type lmtpLogger struct{ s *Source }

func (l lmtpLogger) Printf(format string, v ...any) {
	l.s.log.Warn("lmtp: " + fmt.Sprintf(format, v...))
}
func (l lmtpLogger) Println(v ...any) { l.s.log.Warn("lmtp: " + strings.TrimSpace(fmt.Sprintln(v...))) }

// lmtpSession is one LMTP connection's transaction state. With BDAT,
// go-smtp runs LMTPData beside the connection's loop: mu guards the state.
type lmtpSession struct {
	src *Source
	ctx context.Context
	fl  *inflight

	mu    sync.Mutex
	from  string
	rcpts []string
	// busy: a message counted in fl, from its DATA until its answer is
	// written (go-smtp calls Reset after writing it), so shutdown waits
	// for the answer, not only for the store.
	busy bool
}

var (
	errNotOurs = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such mailbox here"}
	errStore   = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "could not store the message now; try again later"}
	errRead    = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "could not read the message; try again"}
	errClosing = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "shutting down; try again later"}
)

func (s *lmtpSession) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.from, s.rcpts = "", nil
	s.finish()
}

func (s *lmtpSession) Logout() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.finish()
	return nil
}

// finish ends the message counted in fl, if any; s.mu is held.
func (s *lmtpSession) finish() {
	if s.busy {
		s.busy = false
		s.fl.done()
	}
}

// Mail keeps the envelope sender for the Return-Path.
func (s *lmtpSession) Mail(from string, opts *smtp.MailOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.from = from
	return nil
}

// Rcpt accepts only our addresses: the support address, its +token forms
// and the other own addresses.
func (s *lmtpSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	if !s.src.d.isOwn(normAddr(to)) {
		return errNotOurs
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rcpts = append(s.rcpts, normAddr(to))
	return nil
}

// Data is unused: the server calls LMTPData in LMTP mode.
func (s *lmtpSession) Data(r io.Reader) error { return s.deliver(r) }

// LMTPData stores the message once for all its recipients (all are ours:
// one ticket or response) and answers each only after it is stored.
func (s *lmtpSession) LMTPData(r io.Reader, status smtp.StatusCollector) error {
	return s.deliver(r)
}

func (s *lmtpSession) deliver(r io.Reader) error {
	s.mu.Lock()
	if s.busy || !s.fl.start() {
		s.mu.Unlock()
		return errClosing
	}
	s.busy = true
	from, rcpts := s.from, slices.Clone(s.rcpts)
	s.mu.Unlock()
	raw, err := io.ReadAll(r)
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return se // over MaxMessageBytes: 552 5.3.4
		}
		return errRead // a dropped or stalled client: nothing stored
	}
	// ticketd is the final delivery here, which adds the Return-Path (RFC
	// 5321 4.4): a bounce (MAIL FROM:<>) is then known as one, as it is
	// when read over IMAP. It goes on top, where Parse reads it.
	raw = append([]byte("Return-Path: <"+from+">\r\n"), raw...)
	s.src.c.fetched.Add(1)
	// The message in flight is finished even when shutdown begins.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), DefaultDeliveryTimeout)
	defer cancel()
	res, err := s.src.d.deliver(ctx, inbound{mailbox: lmtpMailbox, raw: raw, recipients: rcpts})
	if err != nil {
		s.src.c.storeErrors.Add(1)
		s.src.log.Error("lmtp: could not store a message; the mail server will retry", "err", err)
		return errStore
	}
	s.src.log.Debug("lmtp: message stored", "kind", res.Kind, "key", res.Key, "duplicate", res.Duplicate)
	return nil
}
