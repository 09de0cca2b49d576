package email

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/ticketd/ticketd/store"
)

// Several daemons on one store read each IMAP mailbox one at a time: a
// worker reads only while it holds the mailbox's lease in the store, renews
// it every third of its TTL, and stops reading (the message in flight
// finishes, IDLE is closed) when it cannot. The others stand by and try to
// take the lease every renew interval, so one takes over within TTL plus
// one interval of the holder's death. A daemon that stops releases its
// lease, so a restart or a rolling upgrade hands over at once.

// DefaultMailboxLeaseTTL is how long a mailbox stays with a daemon that
// stopped renewing (it died): 45 s, renewed every 15 s, so another takes
// over within a minute.
const DefaultMailboxLeaseTTL = 45 * time.Second

// MailboxLeases are the store leases that let one daemon read a mailbox at
// a time. *store.Store satisfies it.
type MailboxLeases interface {
	AcquireLease(ctx context.Context, name, owner string, ttl time.Duration) (*store.Lease, error)
	RenewLease(ctx context.Context, l *store.Lease, ttl time.Duration) error
	ReleaseLease(ctx context.Context, l *store.Lease) error
	// DaemonID names this daemon as the leases' owner.
	DaemonID() string
}

// The states of a mailbox in MailboxStatus.
const (
	MailboxStarting = "starting" // not tried yet
	MailboxReading  = "reading"  // this daemon holds the lease and reads it
	MailboxStandby  = "standby"  // another daemon reads it (or the store did not answer): waiting to take over
)

// MailboxStatus is what this daemon is doing with one mailbox.
type MailboxStatus struct {
	ID     string // account/mailbox
	State  string // MailboxStarting, MailboxReading or MailboxStandby
	Reason string // for standby: who holds it, or the store's error
}

// Mailboxes reports each mailbox's state, for /readyz. Standing by is not
// a failure: another daemon reads the mailbox.
func (s *Source) Mailboxes() []MailboxStatus {
	out := make([]MailboxStatus, 0, len(s.workers))
	for _, w := range s.workers {
		out = append(out, w.status())
	}
	return out
}

// leaseName names a mailbox the same on every daemon, whatever the
// account's display name: host, user and mailbox.
func (w *worker) leaseName() string {
	return "imap:" + strings.ToLower(w.acct.Host) + "/" + w.acct.Username + "/" + w.mailbox
}

// workerState is a worker's lease state, read by Mailboxes.
type workerState struct {
	mu     sync.Mutex
	state  string
	reason string
}

func (w *worker) status() MailboxStatus {
	w.ls.mu.Lock()
	defer w.ls.mu.Unlock()
	st := w.ls.state
	if st == "" {
		st = MailboxStarting
	}
	return MailboxStatus{ID: w.id, State: st, Reason: w.ls.reason}
}

// setState records and logs a change of state (only changes: a standby
// daemon tries every renew interval).
func (w *worker) setState(state, reason string) {
	w.ls.mu.Lock()
	changed := w.ls.state != state
	w.ls.state, w.ls.reason = state, reason
	w.ls.mu.Unlock()
	if !changed {
		return
	}
	if state == MailboxReading {
		w.log.Info("mailbox reading: this daemon holds its lease", "lease", w.leaseName())
	} else {
		w.log.Info("mailbox standby: waiting to take its lease", "lease", w.leaseName(), "reason", reason)
	}
}

// run reads the mailbox whenever this daemon holds its lease, until ctx
// ends, and then releases the lease.
func (w *worker) run(ctx context.Context) {
	o := &w.src.opts
	for ctx.Err() == nil {
		l := w.acquire(ctx)
		if l == nil {
			return
		}
		w.setState(MailboxReading, "")
		hold, lost := context.WithCancel(ctx)
		renewed := make(chan struct{})
		go func() {
			defer close(renewed)
			w.keep(hold, lost, l)
		}()
		w.read(hold)
		lost()
		<-renewed
		if ctx.Err() != nil {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			if err := w.src.st.ReleaseLease(rctx, l); err != nil {
				w.log.Warn("could not release the mailbox lease; another daemon takes over when it expires", "err", err)
			}
			cancel()
			return
		}
		w.setState(MailboxStandby, "lost the lease")
		// Whoever took it over reads now; try again after an interval.
		if !w.pause(ctx, o.leaseRenew()) {
			return
		}
	}
}

// acquire tries to take the lease every renew interval until it does (or
// ctx ends: nil).
func (w *worker) acquire(ctx context.Context) *store.Lease {
	o := &w.src.opts
	for {
		l, err := w.src.st.AcquireLease(ctx, w.leaseName(), w.src.st.DaemonID(), o.MailboxLeaseTTL)
		if err == nil {
			return l
		}
		if ctx.Err() != nil {
			return nil
		}
		if !errors.Is(err, store.ErrLeaseHeld) {
			w.log.Warn("could not take the mailbox lease; will retry", "err", err)
		}
		w.setState(MailboxStandby, err.Error())
		if !w.pause(ctx, o.leaseRenew()) {
			return nil
		}
	}
}

// keep renews l every renew interval until ctx ends, and calls lost when
// the lease is gone: taken by another daemon, or no longer renewable before
// it expires (the store is down: another daemon may take it then, so
// reading must stop first).
func (w *worker) keep(ctx context.Context, lost context.CancelFunc, l *store.Lease) {
	o := &w.src.opts
	for w.pause(ctx, o.leaseRenew()) {
		err := w.src.st.RenewLease(ctx, l, o.MailboxLeaseTTL)
		switch {
		case err == nil:
			continue
		case ctx.Err() != nil:
			return
		case errors.Is(err, store.ErrLeaseLost):
			w.log.Warn("mailbox lease lost to another daemon; stopping reading", "err", err)
		case time.Until(l.Expires) > o.leaseRenew():
			w.log.Warn("could not renew the mailbox lease; will retry before it expires", "err", err)
			continue
		default:
			w.log.Error("could not renew the mailbox lease before it expires; stopping reading", "err", err)
		}
		lost()
		return
	}
}

// pause waits d, and reports false when ctx ended first.
func (w *worker) pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
