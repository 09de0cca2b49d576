package email

import (
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"strings"
	"testing"

	"github.com/ticketd/ticketd/notify/email/smtptest"
)

// parts returns a message's decoded text/plain and text/html bodies.
func parts(t testing.TB, m smtptest.Message) (text, html string) {
	t.Helper()
	msg, err := m.Parse()
	if err != nil {
		t.Fatalf("parse message: %v", err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("content type: %v", err)
	}
	decode := func(enc string, r io.Reader) string {
		if strings.EqualFold(enc, "quoted-printable") {
			r = quotedprintable.NewReader(r)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("read part: %v", err)
		}
		return strings.ReplaceAll(string(b), "\r\n", "\n")
	}
	if !strings.HasPrefix(mt, "multipart/") {
		return decode(msg.Header.Get("Content-Transfer-Encoding"), msg.Body), ""
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			return text, html
		}
		if err != nil {
			t.Fatalf("next part: %v", err)
		}
		pt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		body := decode(p.Header.Get("Content-Transfer-Encoding"), p)
		switch pt {
		case "text/plain":
			text = body
		case "text/html":
			html = body
		}
	}
}
