package email

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"

	mail "github.com/wneessen/go-mail"
)

// sender hands one message to the submission server over a fresh
// connection. go-mail honours ctx only while dialing, so the connection is
// also closed when ctx ends: a shutdown aborts a send stuck in any phase.
type sender struct {
	cfg *config
}

// errPermanent marks failures that no retry will cure.
var errPermanent = errors.New("permanent failure")

// permanent wraps err so that isPermanent reports it.
func permanent(err error) error { return fmt.Errorf("%w: %w", errPermanent, err) }

// isPermanent reports whether a send failed for good: the server refused
// this message with a 5xx reply to MAIL, RCPT or DATA, or the message
// itself is unusable. Everything else is retried: 4xx replies, network
// errors, timeouts, and failures of the connection as a whole (EHLO,
// STARTTLS, AUTH), which say nothing about this message — dead-lettering the
// whole queue because of one wrong password would be worse than retrying
// it with backoff (it still ends in the dead letters after maxAttempts).
func isPermanent(err error) bool {
	if errors.Is(err, errPermanent) {
		return true
	}
	var se *mail.SendError
	if !errors.As(err, &se) {
		return false
	}
	switch se.Reason {
	case mail.ErrGetSender, mail.ErrGetRcpts, mail.ErrNoUnencoded:
		return true
	case mail.ErrSMTPMailFrom, mail.ErrSMTPRcptTo, mail.ErrSMTPData, mail.ErrSMTPDataClose, mail.ErrWriteContent:
		code := se.ErrorCode()
		return code >= 500 && code < 600
	}
	return false
}

func (s *sender) send(ctx context.Context, msg *mail.Msg) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.SMTP.Timeout)
	defer cancel()
	opts, err := s.clientOptions(ctx)
	if err != nil {
		return err
	}
	var (
		mu   sync.Mutex
		conn net.Conn
	)
	dialer := &net.Dialer{}
	tlsConf := s.tlsConfig()
	opts = append(opts, mail.WithDialContextFunc(func(dctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		var err error
		if s.cfg.SMTP.Security == SecurityTLS {
			c, err = (&tls.Dialer{NetDialer: dialer, Config: tlsConf}).DialContext(dctx, network, addr)
		} else {
			c, err = dialer.DialContext(dctx, network, addr)
		}
		if err != nil {
			return nil, err
		}
		if s.cfg.SMTP.Security == SecurityPlain && !s.cfg.SMTP.AllowInsecure {
			if ta, ok := c.RemoteAddr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
				_ = c.Close()
				return nil, fmt.Errorf("plain SMTP to %s refused: not a loopback address (smtp.allowInsecure is off)", c.RemoteAddr())
			}
		}
		mu.Lock()
		conn = c
		mu.Unlock()
		return c, nil
	}))
	client, err := mail.NewClient(s.cfg.SMTP.Host, opts...)
	if err != nil {
		return permanent(fmt.Errorf("configure SMTP client: %w", err))
	}
	// Abort whatever phase is running when ctx ends (shutdown or timeout).
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if conn != nil {
			_ = conn.Close()
		}
	})
	defer stop()

	addr := fmt.Sprintf("%s:%d", s.cfg.SMTP.Host, s.cfg.SMTP.Port)
	sc, err := client.DialToSMTPClientWithContext(ctx)
	if err != nil {
		mu.Lock()
		if conn != nil {
			_ = conn.Close()
		}
		mu.Unlock()
		return fmt.Errorf("connect to %s: %w", addr, ctxErr(ctx, err))
	}
	if err := client.SendWithSMTPClient(sc, msg); err != nil {
		_ = sc.Close()
		if msg.IsDelivered() {
			// The relay answered 250 to DATA and only what followed
			// (go-mail's RSET) failed: the message is accepted, and
			// reporting the error would send it again.
			return nil
		}
		return fmt.Errorf("send to %s: %w", addr, ctxErr(ctx, err))
	}
	// The message is accepted; a failing QUIT does not change that, and
	// reporting it would send the message again.
	_ = client.CloseWithSMTPClient(sc)
	_ = sc.Close()
	return nil
}

// ctxErr adds the context's reason to err when the context ended, since the
// visible error is then only "use of closed network connection".
func ctxErr(ctx context.Context, err error) error {
	if cerr := context.Cause(ctx); cerr != nil {
		return fmt.Errorf("%w (%w)", err, cerr)
	}
	return err
}

func (s *sender) tlsConfig() *tls.Config {
	return &tls.Config{
		ServerName: s.cfg.SMTP.Host,
		RootCAs:    s.cfg.roots, // nil: the system roots
		MinVersion: tls.VersionTLS12,
	}
}

func (s *sender) clientOptions(ctx context.Context) ([]mail.Option, error) {
	c := s.cfg.SMTP
	opts := []mail.Option{
		mail.WithPort(c.Port),
		mail.WithTimeout(c.Timeout),
		mail.WithTLSConfig(s.tlsConfig()),
	}
	if c.HELO != "" {
		opts = append(opts, mail.WithHELO(c.HELO))
	}
	switch c.Security {
	case SecurityStartTLS:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	default: // tls: the dialer speaks TLS already; plain: none
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	}
	insecureOK := c.Security == SecurityPlain && c.AllowInsecure
	a := c.Auth
	switch a.Mechanism {
	case AuthNone:
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthNoAuth))
	case AuthPlain:
		mech := mail.SMTPAuthPlain
		if insecureOK {
			mech = mail.SMTPAuthPlainNoEnc
		}
		opts = append(opts, mail.WithSMTPAuth(mech), mail.WithUsername(a.Username), mail.WithPassword(a.Password))
	case AuthLogin:
		mech := mail.SMTPAuthLogin
		if insecureOK {
			mech = mail.SMTPAuthLoginNoEnc
		}
		opts = append(opts, mail.WithSMTPAuth(mech), mail.WithUsername(a.Username), mail.WithPassword(a.Password))
	case AuthXOAUTH2:
		tok, err := s.token(ctx)
		if err != nil {
			return nil, err
		}
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthXOAUTH2), mail.WithUsername(a.Username), mail.WithPassword(tok))
	}
	return opts, nil
}

// token returns the XOAUTH2 bearer token, read afresh for every send from
// the file or command so that an external refresher can rotate it. A
// failure is temporary: the refresher may fix it before the next attempt.
func (s *sender) token(ctx context.Context) (string, error) {
	a := s.cfg.SMTP.Auth
	switch {
	case a.Token != "":
		return a.Token, nil
	case a.TokenFile != "":
		b, err := os.ReadFile(a.TokenFile)
		if err != nil {
			return "", fmt.Errorf("read xoauth2 token: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("read xoauth2 token: %s is empty", a.TokenFile)
		}
		return tok, nil
	default:
		cmd := exec.CommandContext(ctx, a.TokenCommand[0], a.TokenCommand[1:]...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("run xoauth2 token command %s: %w: %s", a.TokenCommand[0], err, strings.TrimSpace(stderr.String()))
		}
		tok := strings.TrimSpace(string(out))
		if tok == "" {
			return "", fmt.Errorf("run xoauth2 token command %s: empty output", a.TokenCommand[0])
		}
		return tok, nil
	}
}
