package email

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/ticketd/ticketd/store"
	"github.com/ticketd/ticketd/store/storetest"
)

// cutOff is a daemon's store whose lease calls fail once cut: the daemon
// is as good as dead to the others (it can neither renew nor release).
type cutOff struct {
	*store.Store
	cut atomic.Bool
}

var errCut = errors.Join(store.ErrUnavailable, errors.New("test: this daemon lost the store"))

func (c *cutOff) AcquireLease(ctx context.Context, name, owner string, ttl time.Duration) (*store.Lease, error) {
	if c.cut.Load() {
		return nil, errCut
	}
	return c.Store.AcquireLease(ctx, name, owner, ttl)
}

func (c *cutOff) RenewLease(ctx context.Context, l *store.Lease, ttl time.Duration) error {
	if c.cut.Load() {
		return errCut
	}
	return c.Store.RenewLease(ctx, l, ttl)
}

func (c *cutOff) ReleaseLease(ctx context.Context, l *store.Lease) error {
	if c.cut.Load() {
		return errCut
	}
	return c.Store.ReleaseLease(ctx, l)
}

func mailboxState(r *running) MailboxStatus { return r.Mailboxes()[0] }

func waitState(t *testing.T, r *running, name, state string) {
	t.Helper()
	waitFor(t, name+" "+state, func() bool { return mailboxState(r).State == state })
}

// Two daemons on one store: one reads the mailbox, the other stands by;
// when the reader can no longer renew its lease it stops reading before
// the lease expires, and the other takes the mailbox over once it has.
func TestMailboxLeaseOneReaderAndTakeover(t *testing.T) {
	h := startIMAP(t, imapOpts{})
	shared := storetest.Shared(t, 2)
	first := &cutOff{Store: shared[0]}
	o := h.baseOptions(t)
	o.MailboxLeaseTTL = 3 * time.Second // renewed every second: ample on a loaded machine
	a := startSource(t, first, o)
	waitState(t, a, "first daemon", MailboxReading)
	b := startSource(t, shared[1], o)
	waitState(t, b, "second daemon", MailboxStandby)

	var last imap.UID
	for i := range 3 {
		last = h.appendMail("INBOX", testMail{subject: fmt.Sprint("Before ", i), msgID: fmt.Sprintf("<before%d@customer.test>", i)}.bytes())
	}
	waitRead(t, shared[1], last)
	if fa, fb := a.Stats().Fetched, b.Stats().Fetched; fa != 3 || fb != 0 {
		t.Fatalf("fetched by the reader %d, by the standby %d; want 3 and 0", fa, fb)
	}
	if st := mailboxState(b); st.Reason == "" {
		t.Error("the standby daemon does not say why it stands by")
	}

	first.cut.Store(true) // the reader dies, holding its lease
	waitState(t, a, "first daemon, cut off", MailboxStandby)
	waitState(t, b, "second daemon", MailboxReading)
	for i := range 2 {
		last = h.appendMail("INBOX", testMail{subject: fmt.Sprint("After ", i), msgID: fmt.Sprintf("<after%d@customer.test>", i)}.bytes())
	}
	waitRead(t, shared[1], last)
	if fa, fb := a.Stats().Fetched, b.Stats().Fetched; fa != 3 || fb != 2 {
		t.Errorf("fetched by the dead daemon %d, by the one that took over %d; want 3 and 2", fa, fb)
	}
	if n := ticketCount(t, shared[1]); n != 5 {
		t.Errorf("%d tickets, want 5", n)
	}
}

// A daemon that stops releases its mailbox: another takes it over at once,
// not after the lease's TTL.
func TestMailboxLeaseReleasedOnStop(t *testing.T) {
	h := startIMAP(t, imapOpts{})
	shared := storetest.Shared(t, 2)
	o := h.baseOptions(t)
	o.MailboxLeaseTTL = time.Hour // a takeover before it ends needs the release
	a := startSource(t, shared[0], o)
	waitState(t, a, "first daemon", MailboxReading)
	o.MailboxLeaseTTL = 300 * time.Millisecond // the second tries every 100 ms
	b := startSource(t, shared[1], o)
	waitState(t, b, "second daemon", MailboxStandby)
	a.stop(t)
	waitState(t, b, "second daemon", MailboxReading)
	uid := h.appendMail("INBOX", testMail{subject: "After the stop"}.bytes())
	waitRead(t, shared[1], uid)
	if b.Stats().Fetched != 1 {
		t.Errorf("the second daemon fetched %d, want 1", b.Stats().Fetched)
	}
}
