package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	emailin "github.com/ticketd/ticketd/ingest/email"
)

// The sysexits(3) codes mail servers understand from a pipe command:
// a temporary failure is queued and retried, the others bounce.
const (
	exDataErr  = 65 // the message itself was refused (over the size limit)
	exSoftware = 70 // any other permanent refusal
	exTempFail = 75 // try again later: daemon down, store outage, 4xx
)

// exitError is an error that ends the process with a given status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// deliverTimeout bounds one hand-over, so a hung daemon never holds the
// mail server's delivery agent: the mail is retried instead.
const deliverTimeout = 5 * time.Minute

// cmdDeliver reads one message on stdin and hands it to the running
// daemon over its LMTP listener (email.inbound.lmtp.listen), for a mail
// server's pipe alias: support: "|/usr/local/bin/ticketd deliver".
func cmdDeliver(ctx context.Context, args []string, stdin io.Reader, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("deliver", "deliver [-config FILE] [-recipient ADDR] < message", stderr)
	cfgPath := fs.String("config", "/etc/ticketd/ticketd.yaml", "configuration file of the running daemon")
	rcpt := fs.String("recipient", "", "envelope recipient (default: email.address; reply tokens are read from the headers too)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	temp := func(err error) error { return &exitError{exTempFail, err} }
	cfg, err := loadConfig(*cfgPath, getenv)
	if err != nil {
		return temp(err) // the mail waits while the configuration is fixed
	}
	listen := cfg.Email.Inbound.LMTP.Listen
	if listen == "" {
		return temp(errors.New("deliver: email.inbound.lmtp.listen is not set: there is no daemon to hand the mail to"))
	}
	if *rcpt == "" {
		*rcpt = cfg.Email.Address
	}
	ctx, cancel := context.WithTimeout(ctx, deliverTimeout)
	defer cancel()
	msg, from := pipedMessage(stdin, getenv("SENDER"))
	err = handOver(ctx, listen, from, *rcpt, msg)
	var se *smtp.SMTPError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se) && se.Code/100 == 5 && se.Code == 552:
		return &exitError{exDataErr, fmt.Errorf("deliver: refused: %w", err)}
	case errors.As(err, &se) && se.Code/100 == 5:
		return &exitError{exSoftware, fmt.Errorf("deliver: refused: %w", err)}
	default:
		return temp(fmt.Errorf("deliver: %w", err))
	}
}

// pipedMessage prepares a message piped in by a mail server: it drops the
// mbox "From sender date" line some put first (Postfix's local(8) does;
// it is no header, and would make the message unparsable), and returns
// the envelope sender to hand over: $SENDER, else the message's top
// Return-Path (local(8) and Exim's pipe transport write one; "" for a
// bounce), else a placeholder, as a null sender would make the daemon
// take the mail for a bounce.
func pipedMessage(r io.Reader, sender string) (io.Reader, string) {
	br := bufio.NewReaderSize(r, 64<<10)
	if p, err := br.Peek(5); err == nil && string(p) == "From " {
		if _, err := br.ReadString('\n'); err != nil {
			return br, sender // a one-line "message": let the daemon judge it
		}
	}
	if sender != "" {
		return br, sender
	}
	head, _ := br.Peek(br.Size()) // as much as there is, up to 64 KiB
	for _, line := range strings.Split(string(head), "\n") {
		line = strings.TrimRight(line, "\r")
		if line == "" {
			break // end of the header
		}
		name, value, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(name, "Return-Path") {
			return br, strings.Trim(strings.TrimSpace(value), "<>")
		}
	}
	return br, "unknown-sender@localhost"
}

// handOver sends one message over LMTP and returns the answer for its
// recipient: nil only once the daemon has stored it.
func handOver(ctx context.Context, listen, from, rcpt string, msg io.Reader) error {
	network, addr := emailin.LMTPNetwork(listen)
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return fmt.Errorf("connect to the daemon at %s: %w", listen, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("localhost"); err != nil {
		return fmt.Errorf("LHLO: %w", err)
	}
	if err := c.Mail(from, nil); err != nil {
		return fmt.Errorf("MAIL FROM: %w", err)
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		return fmt.Errorf("RCPT TO %s: %w", rcpt, err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := io.Copy(w, msg); err != nil {
		return fmt.Errorf("send the message: %w", err)
	}
	if _, err := w.CloseWithLMTPResponse(); err != nil {
		var le smtp.LMTPDataError
		if errors.As(err, &le) && le[rcpt] != nil {
			return le[rcpt]
		}
		return err
	}
	c.Quit()
	return nil
}
