package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"os"
	"strings"
	"time"

	"github.com/ticketd/ticketd/notify/webhook"
)

// maxVerifyBody bounds the body webhook-verify reads: far above any payload
// ticketd sends.
const maxVerifyBody = 16 << 20

// cmdWebhookVerify checks one received webhook: the secret, the three
// headers (flags, or a file of "Name: value" lines such as curl -D or a
// proxy's log writes) and the raw body on stdin. It prints "valid" and
// exits 0, or says why not and exits 1. It is what a receiver does, in the
// small: webhook.Verify.
func cmdWebhookVerify(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("webhook-verify", "webhook-verify [-secret-file FILE] (-headers FILE | -id ID -timestamp TS -signature SIG) [-tolerance 5m] < BODY", stderr)
	secretFile := fs.String("secret-file", "", "file holding the endpoint's whsec_ secret (default: $TICKETD_WEBHOOK_SECRET, or -secret)")
	secret := fs.String("secret", "", "the endpoint's whsec_ secret (visible to other users in ps: prefer -secret-file)")
	headerFile := fs.String("headers", "", `file of received headers, one "Name: value" a line`)
	id := fs.String("id", "", "the webhook-id header")
	ts := fs.String("timestamp", "", "the webhook-timestamp header (Unix seconds)")
	sig := fs.String("signature", "", "the webhook-signature header")
	tolerance := fs.Duration("tolerance", webhook.DefaultTolerance, "how old (or early) the timestamp may be; checking an old capture needs more")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	key := *secret
	switch {
	case *secretFile != "":
		raw, err := os.ReadFile(*secretFile)
		if err != nil {
			return fmt.Errorf("-secret-file: %w", err)
		}
		key = strings.TrimSpace(string(raw))
	case key == "":
		key = getenv("TICKETD_WEBHOOK_SECRET")
	}
	if key == "" {
		fmt.Fprintln(stderr, "webhook-verify: no secret: give -secret-file, TICKETD_WEBHOOK_SECRET or -secret")
		return errUsage
	}
	header := http.Header{}
	if *headerFile != "" {
		raw, err := os.ReadFile(*headerFile)
		if err != nil {
			return fmt.Errorf("-headers: %w", err)
		}
		if header, err = parseHeaders(raw); err != nil {
			return fmt.Errorf("-headers %s: %w", *headerFile, err)
		}
	}
	for name, v := range map[string]string{webhook.HeaderID: *id, webhook.HeaderTimestamp: *ts, webhook.HeaderSignature: *sig} {
		if v != "" {
			header.Set(name, v)
		}
	}
	body, err := io.ReadAll(io.LimitReader(stdin, maxVerifyBody+1))
	if err != nil {
		return fmt.Errorf("read the body from stdin: %w", err)
	}
	if len(body) > maxVerifyBody {
		return fmt.Errorf("the body on stdin is over %d bytes", maxVerifyBody)
	}
	if err := webhook.Verify(key, header, body, time.Now(), *tolerance); err != nil {
		fmt.Fprintln(stdout, "invalid:", err)
		return &exitError{1, errors.New("the webhook does not verify")}
	}
	fmt.Fprintln(stdout, "valid")
	return nil
}

// parseHeaders reads "Name: value" lines; a status line (HTTP/1.1 200 OK)
// and blank lines are skipped.
func parseHeaders(raw []byte) (http.Header, error) {
	h := http.Header{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "HTTP/") || strings.HasPrefix(line, "POST ") {
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("%q is not a Name: value line", line)
		}
		h.Add(textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(name)), strings.TrimSpace(value))
	}
	return h, sc.Err()
}
