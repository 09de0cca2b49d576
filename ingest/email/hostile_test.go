package email

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ticketd/ticketd/store"
)

// newDeliverSource is a Source that is never Run: tests hand it raw mail
// through Deliver, the path every read message takes.
func newDeliverSource(t testing.TB, st Store) *Source {
	t.Helper()
	src, err := New(st, Options{
		Accounts:         []Account{{Host: "imap.invalid", Port: 993, Username: testUser, Password: testPassword}},
		ReplyBaseAddress: testBase,
		Logger:           testLog(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// hostileMail builds a plain-text mail with the given subject header value
// and body, its lines CRLF-terminated.
func hostileMail(from, msgID, subject, body string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: %s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n", from, testBase, subject, msgID)
	b.WriteString(body)
	return []byte(b.String())
}

// wordsOf returns about n bytes of words, lines CRLF-ended every 70 bytes
// or so (long header lines folded, long body lines wrapped).
func wordsOf(n int, sep string) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "word%d ", i)
		if i%10 == 9 {
			b.WriteString(sep)
		}
	}
	return b.String()
}

// The hostile messages of issue 6: each becomes a ticket whose subject
// and description are within the store's limits (a cut description says
// so and keeps the whole text as original-message.txt), attachment names
// carry no control characters, and the next good mail is stored.
func TestHostileMailWithinLimits(t *testing.T) {
	st := newStore(t)
	src := newDeliverSource(t, st)
	ctx := context.Background()
	lim := st.Limits()
	bigBody := wordsOf(10<<20, "\r\n")
	eml := func(name string) []byte {
		raw, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}

	cases := []struct {
		name      string
		raw       []byte
		subject   func(string) bool
		cut       bool     // description cut, original kept
		filenames []string // stored attachment names, besides original-message.txt
	}{
		{name: "1 MB subject", raw: hostileMail("a@customer.test", "<giant-subject@customer.test>", wordsOf(1<<20, "\r\n "), "Short body.\r\n"),
			subject: func(s string) bool { return strings.HasPrefix(s, "word0 word1 ") && strings.HasSuffix(s, "…") }},
		{name: "10 MB description", raw: hostileMail("b@customer.test", "<giant-body@customer.test>", "Huge body", bigBody),
			subject: func(s string) bool { return s == "Huge body" }, cut: true},
		{name: "1 MB Message-ID", raw: hostileMail("g@customer.test", "<"+strings.Repeat("x", 1<<20)+"@customer.test>", "Giant id", "Short body.\r\n"),
			subject: func(s string) bool { return s == "Giant id" }},
		{name: "1 MB sender name", raw: hostileMail(`"`+wordsOf(1<<20, "")+`" <h@customer.test>`, "<giant-name@customer.test>", "Giant name", "Short body.\r\n"),
			subject: func(s string) bool { return s == "Giant name" }},
		{name: "NUL subject", raw: eml("hostile_nul_subject.eml"), subject: func(s string) bool { return s == "(no subject)" }},
		{name: "invisible subject", raw: eml("hostile_invisible_subject.eml"), subject: func(s string) bool { return s == "(no subject)" }},
		{name: "control characters in file names", raw: eml("hostile_control_filenames.eml"),
			subject:   func(s string) bool { return s == "Files with hostile names" },
			filenames: []string{"authorized_keys.txt", "evil.sh", "belltabesc.bin"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := src.Deliver(ctx, "INBOX", tc.raw)
			if err != nil || res.Kind != KindTicket {
				t.Fatalf("Deliver = %+v, %v; want a ticket", res, err)
			}
			tk := loadTicket(t, st, res.TicketID)
			if n := utf8.RuneCountInString(tk.Subject); n > lim.MaxSubject || !tc.subject(tk.Subject) {
				t.Errorf("subject (%d characters) = %.80q", n, tk.Subject)
			}
			if n := utf8.RuneCountInString(tk.Description); n > lim.MaxDescription {
				t.Errorf("description is %d characters, over %d", n, lim.MaxDescription)
			}
			// Every id is repeated in the In-Reply-To and References of our
			// mail: none may be longer than a header line.
			for _, id := range append(tk.MessageIDs, res.Key) {
				if len(id) > 998 {
					t.Errorf("a %d-byte Message-ID kept: %.40q...", len(id), id)
				}
			}
			// The sender's name goes into the To of our mail.
			if c, err := st.Customer(ctx, tk.CreatorID); err != nil || utf8.RuneCountInString(c.Name) > store.MaxNameChars {
				t.Errorf("the sender's customer record: %v, name of %d characters", err, utf8.RuneCountInString(c.Name))
			}
			if got := strings.HasSuffix(tk.Description, truncatedNote); got != tc.cut {
				t.Errorf("description ends with the truncation note: %v, want %v", got, tc.cut)
			}
			var names []string
			for _, a := range tk.Attachments {
				f, err := st.Attachment(ctx, a.ID, store.AllTickets)
				if err != nil {
					t.Fatalf("attachment %q: %v", a.Filename, err)
				}
				if a.Filename == "original-message.txt" {
					if tc.cut && (!strings.HasPrefix(string(f.Data), "word0 word1") || len(f.Data) < len(bigBody)-len(bigBody)/50) {
						t.Errorf("original-message.txt is %d bytes, want the whole %d-byte text", len(f.Data), len(bigBody))
					}
					continue
				}
				names = append(names, a.Filename)
			}
			if tc.cut != (len(names) < len(tk.Attachments)) {
				t.Errorf("original-message.txt kept: %v, want %v", !tc.cut, tc.cut)
			}
			if fmt.Sprint(names) != fmt.Sprint(tc.filenames) {
				t.Errorf("attachment names %q, want %q", names, tc.filenames)
			}

			good := testMail{subject: fmt.Sprintf("Good mail %d", i)}.bytes()
			res, err = src.Deliver(ctx, "INBOX", good)
			if err != nil || res.Kind != KindTicket || loadTicket(t, st, res.TicketID).Subject != fmt.Sprintf("Good mail %d", i) {
				t.Fatalf("the next good mail: %+v, %v", res, err)
			}
		})
	}

	// A reply is held to the same limits as a new ticket.
	t.Run("10 MB reply", func(t *testing.T) {
		first, err := src.Deliver(ctx, "INBOX", testMail{subject: "Thread", msgID: "<thread@customer.test>"}.bytes())
		if err != nil || first.Kind != KindTicket {
			t.Fatalf("first: %+v %v", first, err)
		}
		reply := hostileMail("Carol Customer <carol@customer.test>", "<thread-reply@customer.test>", "Re: Thread\r\nIn-Reply-To: <thread@customer.test>", bigBody)
		res, err := src.Deliver(ctx, "INBOX", reply)
		if err != nil || res.Kind != KindResponse || res.TicketID != first.TicketID {
			t.Fatalf("reply: %+v %v", res, err)
		}
		r := loadTicket(t, st, res.TicketID).Response[0]
		if utf8.RuneCountInString(r.Description) > lim.MaxDescription || !strings.HasSuffix(r.Description, truncatedNote) {
			t.Errorf("response description is %d characters", utf8.RuneCountInString(r.Description))
		}
		if len(r.Attachments) != 1 || r.Attachments[0].Filename != "original-message.txt" {
			t.Errorf("response attachments %+v, want original-message.txt", r.Attachments)
		}
	})
}
