package email

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/ticketd/ticketd/store"
)

// Mail waiting together is stored several at a time, but a conversation
// keeps its order: a colleague's reply to a mail of the same batch lands
// on that mail's ticket (not a ticket of its own, as it would if stored
// before it), and each ticket's responses are in mailbox order.
func TestPipelineKeepsConversationsInOrder(t *testing.T) {
	const threads = 8
	h := startIMAP(t, imapOpts{})
	st := newStore(t)
	for i := 0; i < threads; i++ {
		opener := fmt.Sprintf("<open-%d@customer.test>", i)
		h.appendMail("INBOX", testMail{from: fmt.Sprintf("ann%d@customer.test", i), subject: fmt.Sprintf("Thread %d", i), msgID: opener}.bytes())
		h.appendMail("INBOX", testMail{from: fmt.Sprintf("bob%d@customer.test", i), subject: fmt.Sprintf("Re: Thread %d", i),
			headers: []string{"In-Reply-To: " + opener}, body: fmt.Sprintf("first reply %d\r\n", i)}.bytes())
		h.appendMail("INBOX", testMail{from: fmt.Sprintf("ann%d@customer.test", i), subject: fmt.Sprintf("Re: Thread %d", i),
			headers: []string{"In-Reply-To: " + opener}, body: fmt.Sprintf("second reply %d\r\n", i)}.bytes())
	}
	o := h.baseOptions(t)
	o.DomainTeams = map[string]string{"customer.test": "customer"}
	src := startSource(t, st, o)
	waitFor(t, "every mail handled", func() bool {
		s := src.Stats()
		return s.Tickets+s.Responses == 3*threads
	})
	if n := ticketCount(t, st); n != threads {
		t.Fatalf("%d tickets, want %d: a reply was stored before the mail it answers", n, threads)
	}
	for i := 0; i < threads; i++ {
		tk := loadTicket(t, st, ticketWithSubject(t, st, fmt.Sprintf("Thread %d", i)).ID)
		var got []string
		for _, r := range tk.Response {
			got = append(got, r.Description)
		}
		want := []string{fmt.Sprintf("first reply %d", i), fmt.Sprintf("second reply %d", i)}
		if !slices.Equal(got, want) {
			t.Errorf("thread %d: responses %q, want %q", i, got, want)
		}
	}
}

// onceFailingStore reports the first CreateTicket of one subject as
// failed after the ticket was stored: the write whose answer was lost.
type onceFailingStore struct {
	*store.Store
	subject string
	mu      sync.Mutex
	failed  bool
}

func (f *onceFailingStore) CreateTicket(ctx context.Context, in store.NewTicket) (*store.Ticket, bool, error) {
	t, created, err := f.Store.CreateTicket(ctx, in)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil && in.Subject == f.subject && !f.failed {
		f.failed = true
		return nil, false, errors.Join(store.ErrUnavailable, errors.New("connection reset after the insert"))
	}
	return t, created, err
}

// A store failure in the middle of a batch ends the session after the
// mail in flight beside it is stored; the next session reads again what
// was not acknowledged in order, and every mail still makes one ticket,
// the one whose answer was lost included. Copies of one mail (the same
// Message-ID and body, delivered twice) make one ticket too.
func TestPipelineOneTicketPerMailUnderRetries(t *testing.T) {
	const mails = 24
	h := startIMAP(t, imapOpts{})
	st := newStore(t)
	fs := &onceFailingStore{Store: st, subject: "Mail 9"}
	for i := 0; i < mails; i++ {
		raw := testMail{from: fmt.Sprintf("c%d@customer.test", i%5), subject: fmt.Sprintf("Mail %d", i), msgID: fmt.Sprintf("<mail-%d@customer.test>", i)}.bytes()
		h.appendMail("INBOX", raw)
		if i%6 == 0 {
			h.appendMail("INBOX", raw) // a copy, right behind it
		}
	}
	src := startSource(t, fs, h.baseOptions(t))
	waitFor(t, "the lost answer retried and every mail acknowledged", func() bool {
		if src.Stats().StoreErrors == 0 {
			return false
		}
		for uid := imap.UID(1); uid <= imap.UID(mails+mails/6); uid++ {
			if !hasFlag(h.flags("INBOX", uid), imap.FlagSeen) {
				return false
			}
		}
		return true
	})
	ts := tickets(t, st)
	count := map[string]int{}
	for _, tk := range ts {
		count[tk.Subject]++
	}
	for i := 0; i < mails; i++ {
		if n := count[fmt.Sprintf("Mail %d", i)]; n != 1 {
			t.Errorf("mail %d made %d tickets", i, n)
		}
	}
	if len(ts) != mails {
		t.Errorf("%d tickets, want %d", len(ts), mails)
	}
}
