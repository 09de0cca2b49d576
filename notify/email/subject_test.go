package email

import (
	"fmt"
	"mime"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ticketd/ticketd/notify/email/smtptest"
	"github.com/ticketd/ticketd/store"
)

// The longest subject the store keeps, in non-ASCII text, goes out whole in
// the acknowledgement, the reply and the status notice: built from the
// stored subject, encoded in words that fold, so no header line passes
// RFC 5322's 998 bytes and the mail stays small (issue 6, point 2).
func TestLongestSubjectIsMailedWhole(t *testing.T) {
	e := newEnv(t, smtptest.Options{})
	e.relay()
	e.start(e.options())
	var b strings.Builder
	for utf8.RuneCountInString(b.String()) < store.DefaultMaxSubject {
		b.WriteString("Überweisung🧾")
	}
	subject := string([]rune(b.String())[:store.DefaultMaxSubject])
	tk := e.ticket(subject)
	if tk.Subject != subject {
		t.Fatalf("stored subject %q, want the %d characters given", tk.Subject, store.DefaultMaxSubject)
	}
	e.srv.WaitFor(t, 1, 10*time.Second)
	e.reply(tk, "We are on it.", false)
	e.srv.WaitFor(t, 2, 10*time.Second)
	e.setStatus(tk, store.StatusResolved)
	msgs := e.srv.WaitFor(t, 3, 10*time.Second)

	tag := fmt.Sprintf("[#%d] ", tk.RefID)
	for i, want := range []string{tag + subject, "Re: " + tag + subject, "Re: " + tag + subject} {
		m := msgs[i]
		got, err := new(mime.WordDecoder).DecodeHeader(header(t, m, "Subject"))
		if err != nil || got != want {
			t.Errorf("mail %d: Subject %q (%v), want %q", i, got, err, want)
		}
		head, _, _ := strings.Cut(string(m.Data), "\r\n\r\n")
		for _, line := range strings.Split(head, "\r\n") {
			if len(line) > 998 {
				t.Errorf("mail %d: a header line of %d bytes: %.60q", i, len(line), line)
			}
		}
		if len(m.Data) > 64<<10 {
			t.Errorf("mail %d is %d bytes", i, len(m.Data))
		}
	}
}

// A long thread's References keeps its root and its newest ids, at most
// ReferencesMax of them, however many the ticket has recorded (issue 6,
// point 3; RFC 5322 3.6.4 allows trimming the middle).
func TestLongThreadReferencesAreCapped(t *testing.T) {
	e := newEnv(t, smtptest.Options{})
	e.relay()
	e.start(e.options())
	tk := e.ticket("A long thread")
	e.srv.WaitFor(t, 1, 10*time.Second)
	var last string
	for i := range 50 {
		last = fmt.Sprintf("<thread-%d@customer.example>", i)
		if err := e.st.AddMessageID(e.ctx, tk.ID, last); err != nil {
			t.Fatal(err)
		}
	}
	e.reply(tk, "Still on it.", false)
	got := e.srv.WaitFor(t, 2, 10*time.Second)[1]
	refs := strings.Fields(header(t, got, "References"))
	if len(refs) != 10 { // the default ReferencesMax
		t.Errorf("References holds %d ids, want 10", len(refs))
	}
	if len(refs) == 0 || refs[0] != tk.MessageIDs[0] || refs[len(refs)-1] != last {
		t.Errorf("References = %q, want the root %q first and the newest %q last", refs, tk.MessageIDs[0], last)
	}
	if v := header(t, got, "In-Reply-To"); v != last {
		t.Errorf("In-Reply-To = %q, want %q", v, last)
	}
}
