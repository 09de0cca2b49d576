package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ticketd/ticketd/notify/email/smtptest"
)

// lmtpYAML is a daemon fed by LMTP alone (no IMAP account) on sock.
func lmtpYAML(dir, sock string, smtpPort int) string {
	return fmt.Sprintf(`dataDir: %s
http: {listen: "127.0.0.1:0"}
email:
  enabled: true
  address: support@example.com
  inbound: {maxMessageBytes: 4000, lmtp: {listen: "unix:%s"}}
  outbound: {from: support@example.com, smtp: {host: 127.0.0.1, port: %d, security: plain}}
`, filepath.Join(dir, "data"), sock, smtpPort)
}

func runDeliver(t *testing.T, cfgPath, msg string) error {
	t.Helper()
	var errb bytes.Buffer
	msg = strings.ReplaceAll(strings.TrimLeft(msg, "\n"), "\n", "\r\n")
	err := cmdDeliver(context.Background(), []string{"-config", cfgPath}, strings.NewReader(msg), &errb, noEnv)
	if err != nil {
		t.Logf("deliver: %v %s", err, errb.String())
	}
	return err
}

func exitCode(err error) int {
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	if err != nil {
		return -1
	}
	return 0
}

// `ticketd deliver` hands a message to the daemon over its LMTP socket and
// exits 0 only once it is a ticket; a refusal and a daemon that is not
// there exit with the codes mail servers act on.
func TestDeliverCommand(t *testing.T) {
	smtp := smtptest.Start(t)
	dir := t.TempDir()
	sockDir, err := os.MkdirTemp("", "lmtp") // a unix socket path is short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "lmtp.sock")
	base := serveConfig(t, dir, lmtpYAML(dir, sock, smtp.Port()))
	cfgPath := filepath.Join(dir, "ticketd.yaml")
	adm := apiClient{t: t, base: base, auth: mint(t, dir, "-role", "admin")}

	mail := `
From: Ann Example <ann@customer.test>
To: support@example.com
Subject: Printer on fire
Message-ID: <pipe1@customer.test>
Content-Type: text/plain; charset=utf-8

The printer on the second floor is on fire.
`
	if err := runDeliver(t, cfgPath, mail); err != nil {
		t.Fatalf("deliver: %v (exit %d)", err, exitCode(err))
	}
	// Stored before the answer: visible at once, no waiting.
	ts := adm.tickets()
	if len(ts) != 1 || ts[0].(map[string]any)["subject"] != "Printer on fire" {
		t.Fatalf("tickets = %v", ts)
	}
	// The same mail again (the mail server retrying): stored once.
	if err := runDeliver(t, cfgPath, mail); err != nil {
		t.Fatalf("deliver again: %v", err)
	}
	if n := len(adm.tickets()); n != 1 {
		t.Errorf("%d tickets after the retry, want 1", n)
	}

	// Piped by Postfix's local(8): an mbox envelope line comes first.
	piped := "From ann@customer.test  Tue Dec  1 10:00:00 2026\n" + strings.NewReplacer("<pipe1@", "<pipe3@", "Printer on fire", "Scanner on fire").Replace(strings.TrimLeft(mail, "\n"))
	if err := runDeliver(t, cfgPath, piped); err != nil {
		t.Fatalf("deliver with an envelope line: %v", err)
	}
	if n := len(adm.tickets()); n != 2 {
		t.Errorf("%d tickets after the piped mail, want 2", n)
	}

	// A bounce piped by local(8): Return-Path: <> on top, $SENDER empty.
	bounce := "Return-Path: <>\n" + strings.NewReplacer("<pipe1@", "<pipe4@", "Printer on fire", "Undelivered").Replace(strings.TrimLeft(mail, "\n"))
	if err := runDeliver(t, cfgPath, bounce); err != nil {
		t.Fatalf("deliver a bounce: %v", err)
	}
	if n := len(adm.tickets()); n != 2 {
		t.Errorf("%d tickets after the bounce, want 2 (ignored)", n)
	}

	big := strings.Replace(mail, "<pipe1@", "<pipe2@", 1) + strings.Repeat("padding padding padding padding\n", 200)
	if c := exitCode(runDeliver(t, cfgPath, big)); c != exDataErr {
		t.Errorf("oversize: exit %d, want %d", c, exDataErr)
	}

	// An address the daemon does not take: a permanent refusal.
	var errb bytes.Buffer
	err = cmdDeliver(context.Background(), []string{"-config", cfgPath, "-recipient", "someone@elsewhere.test"},
		strings.NewReader(strings.TrimLeft(mail, "\n")), &errb, noEnv)
	if c := exitCode(err); c != exSoftware {
		t.Errorf("foreign recipient: exit %d (%v), want %d", c, err, exSoftware)
	}

	// No daemon on the socket: try again later.
	other := filepath.Join(dir, "other.yaml")
	os.WriteFile(other, []byte(lmtpYAML(dir, filepath.Join(sockDir, "none.sock"), smtp.Port())), 0o600)
	if c := exitCode(runDeliver(t, other, mail)); c != exTempFail {
		t.Errorf("daemon down: exit %d, want %d", c, exTempFail)
	}
}

// The LMTP listener is checked with the rest of the configuration: beyond
// loopback only with allowInsecure, and then no IMAP account is needed.
func TestLMTPConfig(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "ticketd.yaml")
	write := func(listen, extra string) error {
		cfg := strings.Replace(lmtpYAML(dir, "/run/ticketd/lmtp.sock", 2525), `lmtp: {listen: "unix:/run/ticketd/lmtp.sock"}`, `lmtp: {listen: "`+listen+`"`+extra+`}`, 1)
		os.WriteFile(p, []byte(cfg), 0o600)
		_, err := loadConfig(p, noEnv)
		return err
	}
	if err := write("0.0.0.0:2424", ""); err == nil || !strings.Contains(err.Error(), "email.inbound.lmtp.listen") {
		t.Errorf("listening beyond loopback: %v, want an email.inbound.lmtp.listen error", err)
	}
	if err := write("0.0.0.0:2424", ", allowInsecure: true"); err != nil {
		t.Errorf("with allowInsecure: %v", err)
	}
	if err := write("", ""); err == nil || !strings.Contains(err.Error(), "email.inbound.accounts") {
		t.Errorf("neither IMAP nor LMTP: %v, want an email.inbound.accounts error", err)
	}
}
