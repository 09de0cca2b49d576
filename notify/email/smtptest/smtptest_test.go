package smtptest_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/smtp"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/ticketd/ticketd/notify/email/smtptest"
)

func send(addr string, a smtp.Auth, body string) error {
	return smtp.SendMail(addr, a, "from@example.com", []string{"to@example.com", "cc@example.com"},
		[]byte("Subject: hi\r\nMessage-ID: <1@x>\r\n\r\n"+body+"\r\n"))
}

func TestRecordsMessagesAndFailsOnRequest(t *testing.T) {
	srv := smtptest.Start(t)
	if err := send(srv.Addr(), nil, "one"); err != nil {
		t.Fatal(err)
	}
	m := srv.WaitFor(t, 1, 5*time.Second)[0]
	if m.From != "from@example.com" || len(m.To) != 2 || m.To[1] != "cc@example.com" || m.User != "" || m.TLS {
		t.Errorf("envelope %+v", m)
	}
	if m.Header("Message-ID") != "<1@x>" || !strings.Contains(string(m.Data), "one") {
		t.Errorf("data %q", m.Data)
	}

	srv.FailNext(2, 451)
	for range 2 {
		var te *textproto.Error
		if err := send(srv.Addr(), nil, "fails"); !errors.As(err, &te) || te.Code != 451 {
			t.Errorf("want 451, got %v", err)
		}
	}
	srv.FailNext(1, 554)
	var te *textproto.Error
	if err := send(srv.Addr(), nil, "fails"); !errors.As(err, &te) || te.Code != 554 {
		t.Errorf("want 554, got %v", err)
	}
	if err := send(srv.Addr(), nil, "two"); err != nil {
		t.Fatal(err)
	}
	if n, a := len(srv.Messages()), srv.Attempts(); n != 2 || a != 5 {
		t.Errorf("%d messages, %d attempts; want 2 and 5", n, a)
	}
}

func TestAuth(t *testing.T) {
	srv := smtptest.StartWith(t, smtptest.Options{Users: map[string]string{"u": "p"}})
	if err := send(srv.Addr(), nil, "anonymous"); err == nil {
		t.Error("sent without AUTH")
	}
	if err := send(srv.Addr(), smtp.PlainAuth("", "u", "wrong", "127.0.0.1"), "bad"); err == nil {
		t.Error("sent with a wrong password")
	}
	if err := send(srv.Addr(), smtp.PlainAuth("", "u", "p", "127.0.0.1"), "good"); err != nil {
		t.Fatal(err)
	}
	m := srv.WaitFor(t, 1, 5*time.Second)[0]
	if m.User != "u" || m.TLS {
		t.Errorf("user=%q TLS=%v", m.User, m.TLS)
	}
	if n, f := len(srv.Messages()), srv.AuthFailures(); n != 1 || f != 1 {
		t.Errorf("%d messages, %d auth failures; want 1 and 1", n, f)
	}
}

func TestStartTLS(t *testing.T) {
	srv := smtptest.StartWith(t, smtptest.Options{TLS: smtptest.StartTLS})
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(srv.CertPEM())
	c, err := smtp.Dial(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.StartTLS(&tls.Config{ServerName: "127.0.0.1", RootCAs: roots}); err != nil {
		t.Fatalf("STARTTLS: %v", err)
	}
	if err := c.Mail("a@x"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("b@x"); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write([]byte("Subject: tls\r\n\r\nbody\r\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if m := srv.WaitFor(t, 1, 5*time.Second)[0]; !m.TLS {
		t.Error("message not marked as received over TLS")
	}
}
