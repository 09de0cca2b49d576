package email

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/ticketd/ticketd/store"
)

// fullStore is the real store whose disk fills up: while full, tickets
// cannot be created and Ready says so. Quarantining still works, so a mail
// wrongly held against its sender would end up there.
type fullStore struct {
	*store.Store
	full      atomic.Bool
	createErr error
}

func (f *fullStore) CreateTicket(ctx context.Context, in store.NewTicket) (*store.Ticket, bool, error) {
	if f.full.Load() {
		return nil, false, f.createErr
	}
	return f.Store.CreateTicket(ctx, in)
}

func (f *fullStore) Ready(ctx context.Context) error {
	if f.full.Load() {
		return errors.Join(store.ErrUnavailable, errors.New("database refuses writes: database or disk is full (13)"))
	}
	return f.Store.Ready(ctx)
}

// A good mail that arrives while the disk is full is retried, never
// quarantined however often it fails, and becomes a ticket once the store
// writes again: whether the store names the failure an outage or not.
func TestStoreFailureNeverQuarantinesMail(t *testing.T) {
	for name, createErr := range map[string]error{
		"classified":   errors.Join(store.ErrUnavailable, errors.New("(InternalError) database or disk is full (13)")),
		"unclassified": errors.New("(InternalError) write failed in a way the store does not recognize"),
	} {
		t.Run(name, func(t *testing.T) {
			h := startIMAP(t, imapOpts{})
			st := newStore(t)
			fs := &fullStore{Store: st, createErr: createErr}
			fs.full.Store(true)
			h.appendMail("INBOX", testMail{subject: "Written while the disk was full"}.bytes())
			o := h.baseOptions(t)
			o.MaxDeliveryAttempts = 2
			src := startSource(t, fs, o)
			waitFor(t, "three times MaxDeliveryAttempts failures, or a quarantine", func() bool {
				s := src.Stats()
				return s.StoreErrors >= 6 || s.Quarantined > 0
			})
			if q := quarantined(t, st); len(q) != 0 {
				t.Fatalf("a good mail was quarantined because the store was full: %+v", q)
			}
			fs.full.Store(false)
			ticketWithSubject(t, st, "Written while the disk was full")
			if q := quarantined(t, st); len(q) != 0 {
				t.Errorf("quarantine = %+v", q)
			}
		})
	}
}
