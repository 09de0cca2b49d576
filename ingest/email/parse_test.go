package email

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
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

func TestParseErrors(t *testing.T) {
	for name, raw := range map[string]string{
		"empty":         "",
		"blank":         "\r\n\r\n",
		"no header":     "just some text\nwithout any header\n",
		"no from":       "To: a@b.test\r\nSubject: x\r\n\r\nbody",
		"from no addr":  "From: Nobody Here\r\nSubject: x\r\n\r\nbody",
		"from is empty": "From: \r\nSubject: x\r\n\r\nbody",
	} {
		if _, err := Parse([]byte(raw), ParseOptions{}); !errors.Is(err, ErrNotMail) {
			t.Errorf("%s: err = %v, want ErrNotMail", name, err)
		}
	}
}

func TestParseMsgIDLists(t *testing.T) {
	cases := []struct {
		in   []string
		want []string
	}{
		{[]string{"<a@x>"}, []string{"<a@x>"}},
		{[]string{"a@x"}, []string{"<a@x>"}},
		{[]string{"  <a@x>   <b@y>"}, []string{"<a@x>", "<b@y>"}},
		{[]string{"<a@x> (comment) garbage, <b@y>,<c@z>"}, []string{"<a@x>", "<b@y>", "<c@z>"}},
		{[]string{"<a@x> <a@x>", "<b@y>"}, []string{"<a@x>", "<b@y>"}},
		{[]string{"<a@x> \"Re: subject\" <b@y>"}, []string{"<a@x>", "<b@y>"}},
		{[]string{"<broken"}, []string{"<broken>"}},
		{[]string{""}, nil},
	}
	for _, tc := range cases {
		got := msgIDList(tc.in)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("msgIDList(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := firstMsgID(" no-brackets@host "); got != "<no-brackets@host>" {
		t.Errorf("firstMsgID = %q", got)
	}
}

func TestParseHeaders(t *testing.T) {
	raw := "Return-Path: <bounce@example.com>\r\n" +
		"Delivered-To: support@ticketd.test\r\n" +
		"X-Original-To: Support+T9@ticketd.test\r\n" +
		"Envelope-To: support@ticketd.test\r\n" +
		"From: =?UTF-8?B?w4lsb2RpZQ==?= <e@example.fr>\r\n" +
		"To: a@x.test, \"B, Bee\" <b@x.test>\r\n" +
		"Cc: c@x.test\r\n" +
		"Date: Mon, 6 Jan 2025 10:15 +0100\r\n" +
		"In-Reply-To:\r\n <r1@x.test>\r\n" +
		"References: <r0@x.test>\r\n\t<r1@x.test>\r\n" +
		"\r\nbody"
	m, err := Parse([]byte(raw), ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2025, 1, 6, 9, 15, 0, 0, time.UTC)
	checks := []struct{ what, got, want string }{
		{"From.Name", m.From.Name, "Élodie"},
		{"ReturnPath", m.ReturnPath, "bounce@example.com"},
		{"DeliveredTo", fmt.Sprint(m.DeliveredTo), "[support@ticketd.test Support+T9@ticketd.test]"},
		{"To", fmt.Sprint(m.To), "[{ a@x.test} {B, Bee b@x.test}]"},
		{"Cc", fmt.Sprint(m.Cc), "[{ c@x.test}]"},
		{"InReplyTo", fmt.Sprint(m.InReplyTo), "[<r1@x.test>]"},
		{"References", fmt.Sprint(m.References), "[<r0@x.test> <r1@x.test>]"},
		{"Date", m.Date.UTC().String(), want.String()},
		{"MessageID", m.MessageID, ""},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	if m.NullReturnPath {
		t.Error("NullReturnPath set")
	}
}

func TestParseDates(t *testing.T) {
	p := &mimeParser{}
	for in, want := range map[string]string{
		"Mon, 6 Jan 2025 10:15:00 +0100":       "2025-01-06T09:15:00Z",
		"Mon, 6 Jan 2025 10:15:00 +0100 (CET)": "2025-01-06T09:15:00Z",
		"6 Jan 2025 10:15 +0100":               "2025-01-06T09:15:00Z",
		"Mon,  6 Jan 2025 10:15:00 GMT":        "2025-01-06T10:15:00Z",
		"2025-01-06T10:15:00Z":                 "2025-01-06T10:15:00Z",
		"yesterday, around noon":               "0001-01-01T00:00:00Z",
	} {
		if got := p.parseDate(in).UTC().Format(time.RFC3339); got != want {
			t.Errorf("parseDate(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestParseNullReturnPath(t *testing.T) {
	for _, rp := range []string{"<>", "< >", "<>  (bounce)"} {
		m, err := Parse([]byte("Return-Path: "+rp+"\r\nFrom: a@b.test\r\n\r\nx"), ParseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !m.NullReturnPath || m.ReturnPath != "" {
			t.Errorf("Return-Path %q: null=%v path=%q", rp, m.NullReturnPath, m.ReturnPath)
		}
	}
}

// mailWithAttachment builds a mail with one base64 attachment of n bytes.
func mailWithAttachment(n int) []byte {
	var b bytes.Buffer
	b.WriteString("From: a@b.test\r\nSubject: big\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n")
	b.WriteString("--XX\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n")
	b.WriteString("--XX\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=big.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	data := bytes.Repeat([]byte{0xAB, 0xCD, 0xEF}, n/3+1)[:n]
	enc := base64.StdEncoding.EncodeToString(data)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n--XX--\r\n")
	return b.Bytes()
}

func TestParseAttachmentLimitDefault(t *testing.T) {
	for _, n := range []int{DefaultMaxAttachmentBytes, DefaultMaxAttachmentBytes + 1} {
		m, err := Parse(mailWithAttachment(n), ParseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Attachments) != 1 {
			t.Fatalf("%d attachments", len(m.Attachments))
		}
		a := m.Attachments[0]
		over := n > DefaultMaxAttachmentBytes
		if a.Size != int64(n) || (a.Data == nil) != over || (len(m.Warnings) > 0) != over {
			t.Errorf("n=%d: Size %d, Data nil %v, Warnings %q", n, a.Size, a.Data == nil, m.Warnings)
		}
		if !over && len(a.Data) != n {
			t.Errorf("n=%d: %d bytes of data", n, len(a.Data))
		}
	}
}

// TestParseAttachmentLimitMemory proves a part over the limit is counted,
// not buffered: parsing a 4 MiB attachment with a 64 KiB limit allocates
// far less than the attachment.
func TestParseAttachmentLimitMemory(t *testing.T) {
	raw := mailWithAttachment(4 << 20)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m, err := Parse(raw, ParseOptions{MaxAttachmentBytes: 64 << 10})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Attachments[0]; got.Size != 4<<20 || got.Data != nil {
		t.Fatalf("Size %d, Data %d bytes", got.Size, len(got.Data))
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Errorf("Parse allocated %d bytes for a 4 MiB part over a 64 KiB limit", alloc)
	}
}

func TestParseDeepNesting(t *testing.T) {
	var b strings.Builder
	b.WriteString("From: a@b.test\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n")
	for i := 1; i < 200; i++ {
		fmt.Fprintf(&b, "--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n", i-1, i)
	}
	b.WriteString("--b199\r\nContent-Type: text/plain\r\n\r\ndeep\r\n")
	m, err := Parse([]byte(b.String()), ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Warnings) == 0 {
		t.Error("no warning for nesting over the limit")
	}
}

func TestParseAlternativeFallsBackToHTML(t *testing.T) {
	raw := "From: a@b.test\r\nContent-Type: multipart/alternative; boundary=B\r\n\r\n" +
		"--B\r\nContent-Type: text/plain\r\n\r\n   \r\n" +
		"--B\r\nContent-Type: text/html\r\n\r\n<p>Only <b>HTML</b> has text</p>\r\n--B--\r\n"
	m, err := Parse([]byte(raw), ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Text != "Only HTML has text" {
		t.Errorf("Text = %q", m.Text)
	}
}

func TestParseHTMLCharsetFromMeta(t *testing.T) {
	raw := "From: a@b.test\r\nContent-Type: text/html\r\n\r\n" +
		"<html><head><meta charset=\"windows-1251\"></head><body>\xcf\xf0\xe8\xe2\xe5\xf2</body></html>"
	m, err := Parse([]byte(raw), ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Text != "Привет" {
		t.Errorf("Text = %q", m.Text)
	}
}
