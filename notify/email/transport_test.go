package email

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ticketd/ticketd/notify/email/smtptest"
	"github.com/ticketd/ticketd/store"
)

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// STARTTLS with a private CA and AUTH PLAIN; implicit TLS with AUTH LOGIN.
func TestTLSAndPasswordAuth(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode smtptest.TLSMode
		sec  Security
		mech Mechanism
	}{
		{"starttls+plain", smtptest.StartTLS, SecurityStartTLS, AuthPlain},
		{"implicit-tls+login", smtptest.ImplicitTLS, SecurityTLS, AuthLogin},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, smtptest.Options{TLS: tc.mode, Users: map[string]string{"mailer": "s3cret"}})
			e.relay()
			o := e.options()
			o.SMTP.Security = tc.sec
			o.SMTP.CAFile = writeFile(t, "ca.pem", e.srv.CertPEM())
			o.SMTP.Auth = AuthOptions{Mechanism: tc.mech, Username: "mailer", Password: "s3cret"}
			e.start(o)
			e.ticket("secure")
			m := e.srv.WaitFor(t, 1, 10*time.Second)[0]
			if !m.TLS || m.User != "mailer" {
				t.Errorf("received with TLS=%v as %q, want TLS as mailer", m.TLS, m.User)
			}
		})
	}
}

// Without trusting the server's certificate nothing is sent, and
// mandatory STARTTLS never falls back to plain text; both are retried
// (a connection problem is not the message's fault), not dead-lettered.
func TestTLSFailuresAreRetriedNotSentInClear(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode smtptest.TLSMode
		ca   bool
	}{
		{"untrusted certificate", smtptest.StartTLS, false},
		{"no STARTTLS offered", smtptest.NoTLS, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, smtptest.Options{TLS: tc.mode})
			e.relay()
			o := e.options()
			o.SMTP.Security = SecurityStartTLS
			o.BackoffBase, o.BackoffMax = time.Hour, time.Hour
			r := e.start(o)
			e.ticket("must not leak")
			eventually(t, 10*time.Second, "a retry", func() bool { return r.n.Stats().Retried == 1 })
			p := e.deliveries(store.DeliveryPending)
			if len(p) != 1 || p[0].NextAttemptAt.Sub(e.clock.Now()) < 10*time.Minute {
				t.Fatalf("pending %+v, want one delivery backed off", p)
			}
			t.Logf("last error: %s", p[0].LastError)
			if n := len(e.srv.Messages()); n != 0 {
				t.Errorf("%d messages got through", n)
			}
			if d := e.deliveries(store.DeliveryDead); len(d) != 0 {
				t.Errorf("dead letters: %+v", d)
			}
		})
	}
}

// The XOAUTH2 token file is read again for every send: a rejected token is
// retried, and the refreshed one is used on the next attempt.
func TestXOAUTH2TokenFileIsReadPerSend(t *testing.T) {
	e := newEnv(t, smtptest.Options{TLS: smtptest.StartTLS, Tokens: map[string]string{"bot@example.com": "fresh-token"}})
	e.relay()
	tokFile := writeFile(t, "token", []byte("expired-token\n"))
	o := e.options()
	o.SMTP.Security = SecurityStartTLS
	o.SMTP.CAFile = writeFile(t, "ca.pem", e.srv.CertPEM())
	o.SMTP.Auth = AuthOptions{Mechanism: AuthXOAUTH2, Username: "bot@example.com", TokenFile: tokFile}
	r := e.start(o)
	e.ticket("oauth")
	eventually(t, 10*time.Second, "a retry after the auth failure", func() bool { return r.n.Stats().Retried == 1 })
	if err := os.WriteFile(tokFile, []byte("fresh-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.drive("the mail", o.BackoffMax, func() bool { return len(e.srv.Messages()) == 1 })
	m := e.srv.Messages()[0]
	if m.User != "bot@example.com" {
		t.Errorf("authenticated as %q", m.User)
	}
	if s := r.n.Stats(); s.Retried < 1 || s.Dead != 0 {
		t.Errorf("stats %+v, want at least one retry and no dead letter", s)
	}
}

// The XOAUTH2 token can come from a command, run for every send.
func TestXOAUTH2TokenCommand(t *testing.T) {
	e := newEnv(t, smtptest.Options{Tokens: map[string]string{"bot": "from-command"}})
	e.relay()
	o := e.options()
	o.SMTP.Auth = AuthOptions{Mechanism: AuthXOAUTH2, Username: "bot", TokenCommand: []string{"sh", "-c", "echo from-command"}}
	e.start(o)
	e.ticket("oauth command")
	if m := e.srv.WaitFor(t, 1, 10*time.Second)[0]; m.User != "bot" {
		t.Errorf("authenticated as %q", m.User)
	}
}

// Plain SMTP is for loopback unless explicitly allowed.
func TestPlainSMTPToRemoteHostIsRefused(t *testing.T) {
	e := newEnv(t, smtptest.Options{})
	o := e.options()
	o.SMTP.Host = "smtp.example.net"
	_, err := NewAdapter(o, e.st, testLogger(t))
	if err == nil || !strings.Contains(err.Error(), "smtp.security") || !strings.Contains(err.Error(), "allowInsecure") {
		t.Fatalf("New = %v, want a smtp.security error naming allowInsecure", err)
	}
	o.SMTP.Host = "192.0.2.7"
	if _, err := NewAdapter(o, e.st, testLogger(t)); err == nil {
		t.Fatal("plain SMTP to a remote IP accepted")
	}
	o.SMTP.AllowInsecure = true
	if _, err := NewAdapter(o, e.st, testLogger(t)); err != nil {
		t.Fatalf("explicitly allowed: %v", err)
	}
	for _, host := range []string{"127.0.0.1", "::1", "localhost"} {
		o := e.options()
		o.SMTP.Host = host
		if _, err := NewAdapter(o, e.st, testLogger(t)); err != nil {
			t.Errorf("plain to %s: %v", host, err)
		}
	}
}
