// Package email is the outbound email notifier: it drains the outbox's
// "email" deliveries and mails the customer through an SMTP submission
// server (github.com/wneessen/go-mail).
//
// What is mailed (see compose for the full policy): an acknowledgement when
// a customer opens a ticket, every agent response that is not an internal
// note, and every status change not made by the customer. Priority changes
// and anything the customer did are not mailed.
//
// Delivery is at least once. A delivery is claimed with a lease (the
// store's atomic claim, so two daemons never send the same one at once);
// its Message-ID is derived from the event, recorded on the ticket before
// the send, and identical on every attempt, so a repeat after a crash or a
// lost acknowledgement is recognisably the same message. Temporary failures
// (4xx, network, timeouts, connection-level errors) are retried with
// exponential backoff and jitter; a 5xx refusal of the message, or
// Options.MaxAttempts failures, move it to the dead letters
// (store.Deliveries(ctx, store.DeliveryDead, n)).
package email

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ticketd/ticketd/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// Sink is the outbox sink this notifier drains; cmd lists it among the
// relay's sinks when email notifications are enabled.
const Sink = "email"

// OutboxStore is what the notifier needs from the store: the delivery
// queue, and read access to tickets and people to compose the mail.
// *store.Store satisfies it.
type OutboxStore interface {
	ClaimDelivery(ctx context.Context, sink string, lease time.Duration) (*store.Delivery, error)
	CompleteDelivery(ctx context.Context, id string) error
	RetryDelivery(ctx context.Context, id string, cause error, at time.Time) error
	KillDelivery(ctx context.Context, id string, cause error) error
	DeliveriesReady(sink string) <-chan struct{}

	Ticket(ctx context.Context, id bson.ObjectID, scope store.Scope) (*store.Ticket, error)
	Customer(ctx context.Context, id bson.ObjectID) (*store.Customer, error)
	Agent(ctx context.Context, id bson.ObjectID) (*store.Agent, error)
	AddMessageID(ctx context.Context, ticket bson.ObjectID, messageID string) error
}

// Stats counts what a Notifier did since it was made.
type Stats struct {
	Sent    int64 // mails accepted by the server
	Skipped int64 // deliveries completed without mail (policy, no customer)
	Retried int64 // failed attempts scheduled again
	Dead    int64 // deliveries moved to the dead letters
}

// Notifier drains the email outbox. Make it with New; run it with Run.
type Notifier struct {
	cfg  *config
	st   OutboxStore
	log  *slog.Logger
	smtp sender

	sent, skipped, retried, dead atomic.Int64

	running atomic.Bool
	mu      sync.Mutex
	retries []time.Time // when retries this notifier scheduled come due, soonest first
}

// New checks opts (every problem at once, as Validate) and returns a
// Notifier; it sends nothing until Run. A nil log means slog.Default().
func New(opts Options, st OutboxStore, log *slog.Logger) (*Notifier, error) {
	if st == nil {
		return nil, errors.New("email notifier: nil store")
	}
	cfg, err := opts.compile()
	if err != nil {
		return nil, fmt.Errorf("email notifier options: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	return &Notifier{cfg: cfg, st: st, log: log.With("component", "notify-email"), smtp: sender{cfg: cfg}}, nil
}

// Stats returns the counters; safe to call while Run runs.
func (n *Notifier) Stats() Stats {
	return Stats{Sent: n.sent.Load(), Skipped: n.skipped.Load(), Retried: n.retried.Load(), Dead: n.dead.Load()}
}

// Run sends deliveries as the relay queues them until ctx ends, then
// returns nil once the send in flight has finished (or been aborted after
// Options.ShutdownGrace; an aborted delivery is retried later). It waits on
// the store's DeliveriesReady signal and on a timer for retries coming due
// and for Options.PollInterval (other daemons' retries, expired leases);
// it never busy-polls. Run must not be called twice at once.
func (n *Notifier) Run(ctx context.Context) error {
	if !n.running.CompareAndSwap(false, true) {
		return errors.New("email notifier: Run is already running")
	}
	defer n.running.Store(false)
	n.log.Info("email notifier started", "smtp", fmt.Sprintf("%s:%d", n.cfg.SMTP.Host, n.cfg.SMTP.Port),
		"security", n.cfg.SMTP.Security, "from", n.cfg.from.Address)
	defer n.log.Info("email notifier stopped")
	ready := n.st.DeliveriesReady(Sink)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		n.drain(ctx)
		if ctx.Err() != nil {
			return nil
		}
		timer.Reset(n.nextWake())
		select {
		case <-ctx.Done():
			return nil
		case <-ready:
		case <-timer.C:
		}
	}
}

// drain sends every due delivery, one at a time, until none is due.
func (n *Notifier) drain(ctx context.Context) {
	n.dropDueRetries()
	for ctx.Err() == nil {
		d, err := n.st.ClaimDelivery(ctx, Sink, n.cfg.Lease)
		if errors.Is(err, store.ErrNotFound) {
			return
		}
		if err != nil {
			if ctx.Err() == nil {
				wait := min(n.cfg.PollInterval, 5*time.Second)
				n.log.Error("claim delivery failed; will retry", "in", wait, "err", err)
				n.noteRetry(time.Now().Add(wait))
			}
			return
		}
		n.handle(ctx, d)
	}
}

// handle sends one claimed delivery and records the outcome. The work runs
// on a context that outlives ctx by ShutdownGrace, so a shutdown lets the
// send in flight finish; it is bounded by the lease, after which another
// sender may claim the delivery anyway.
func (n *Notifier) handle(ctx context.Context, d *store.Delivery) {
	work, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.cfg.Lease)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(n.cfg.ShutdownGrace, cancel) })
	defer stop()
	log := n.log.With("delivery", d.ID, "kind", string(d.Event.Kind), "ticket", d.Event.TicketID.Hex(), "attempt", d.Attempts)

	err := n.deliver(work, d, log)

	// Book the outcome even when shutting down, briefly.
	bctx, bcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer bcancel()
	switch {
	case err == nil:
		if cerr := n.st.CompleteDelivery(bctx, d.ID); cerr != nil {
			// The mail went out; the lease will expire and it goes out again
			// with the same Message-ID, which receivers deduplicate.
			log.Error("complete delivery failed; it will be sent again", "err", cerr)
		}
	case isPermanent(err):
		n.kill(bctx, d, err, log)
	case d.Attempts >= n.cfg.MaxAttempts:
		n.kill(bctx, d, fmt.Errorf("gave up after %d attempts: %w", d.Attempts, err), log)
	default:
		at := time.Now().Add(n.backoff(d.Attempts))
		if ctx.Err() != nil {
			at = time.Now() // aborted by our shutdown, not the server's fault
		}
		if rerr := n.st.RetryDelivery(bctx, d.ID, err, at); rerr != nil {
			log.Error("record retry failed; the lease will expire and it is retried", "send_err", err, "err", rerr)
			return
		}
		n.retried.Add(1)
		n.noteRetry(at)
		log.Warn("send failed; will retry", "at", at.UTC().Format(time.RFC3339Nano), "err", err)
	}
}

func (n *Notifier) kill(ctx context.Context, d *store.Delivery, cause error, log *slog.Logger) {
	if err := n.st.KillDelivery(ctx, d.ID, cause); err != nil {
		log.Error("move to dead letters failed; the lease will expire and it is retried", "send_err", cause, "err", err)
		return
	}
	n.dead.Add(1)
	log.Error("delivery moved to dead letters", "err", cause)
}

// deliver composes, records the Message-ID on the ticket, and sends.
// nil means done: sent, or deliberately not mailed.
func (n *Notifier) deliver(ctx context.Context, d *store.Delivery, log *slog.Logger) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic while delivering: %v", p)
		}
	}()
	out, sk, err := n.compose(ctx, d)
	if err != nil {
		return fmt.Errorf("compose mail: %w", err)
	}
	if sk != nil {
		n.skipped.Add(1)
		if sk.quiet {
			log.Debug("not mailed", "reason", sk.reason)
		} else {
			log.Info("not mailed", "reason", sk.reason)
		}
		return nil
	}
	// Record before sending: a reply to this mail must find the ticket even
	// if we crash right after the server accepted it. Idempotent.
	if err := n.st.AddMessageID(ctx, d.Event.TicketID, out.messageID); err != nil {
		return fmt.Errorf("record message id: %w", err)
	}
	start := time.Now()
	if err := n.smtp.send(ctx, out.msg); err != nil {
		return err
	}
	n.sent.Add(1)
	log.Info("mail sent", "mail", string(out.kind), "ref", out.refID, "message_id", out.messageID, "took", time.Since(start))
	return nil
}

// backoff is the wait after the attempt-th failure: BackoffBase doubled per
// further failure, capped at BackoffMax, of which a random half is jitter
// (so daemons that failed together do not retry together).
func (n *Notifier) backoff(attempt int) time.Duration {
	d := n.cfg.BackoffBase
	for i := 1; i < attempt && d < n.cfg.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, n.cfg.BackoffMax)
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// maxTrackedRetries bounds the remembered retry times; beyond it the poll
// interval catches the rest.
const maxTrackedRetries = 1024

func (n *Notifier) noteRetry(at time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	i, _ := slices.BinarySearchFunc(n.retries, at, time.Time.Compare)
	n.retries = slices.Insert(n.retries, i, at)
	if len(n.retries) > maxTrackedRetries {
		n.retries = n.retries[:maxTrackedRetries]
	}
}

func (n *Notifier) dropDueRetries() {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := time.Now()
	i := 0
	for i < len(n.retries) && !n.retries[i].After(now) {
		i++
	}
	n.retries = n.retries[i:]
}

// nextWake is how long to sleep: until the soonest retry we scheduled, at
// most PollInterval.
func (n *Notifier) nextWake() time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	wait := n.cfg.PollInterval
	if len(n.retries) > 0 {
		wait = min(wait, max(time.Until(n.retries[0]), 0))
	}
	return wait
}
