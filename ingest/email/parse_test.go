package email

import (
	"strings"
	"testing"
)

func TestParseSimple(t *testing.T) {
	raw := "From: \"Jane Doe\" <jane@example.com>\r\n" +
		"To: support@ticketd.test\r\n" +
		"Subject: =?ISO-8859-1?Q?Caf=E9?=\r\n" +
		"Message-ID: <abc@example.com>\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n\r\n" +
		"Hello there\r\n\r\nOn Mon, 6 Jan 2025 at 10:00, Bob <bob@x.test> wrote:\r\n> old\r\n"
	m, err := Parse([]byte(raw), ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "Café" || m.From.Address != "jane@example.com" || m.From.Name != "Jane Doe" {
		t.Errorf("headers: %+v", m)
	}
	if m.Text != "Hello there" {
		t.Errorf("Text = %q", m.Text)
	}
	if !strings.Contains(m.FullText, "> old") {
		t.Errorf("FullText = %q", m.FullText)
	}
	if m.MessageID != "<abc@example.com>" || m.Size != len(raw) {
		t.Errorf("id/size: %q %d", m.MessageID, m.Size)
	}
}
