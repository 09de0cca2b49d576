// Package notify delivers what the store announced: one Runner per sink
// (email, slack, webhooks later) claims the sink's deliveries from the
// outbox and hands each to the sink's Adapter, which only knows how to
// deliver one event to its channel and whether a failure is permanent.
//
// The Runner owns everything else: leases (the store's atomic claim, so two
// daemons never deliver the same one at once; a crashed daemon's lease
// expires and another retries), exponential backoff with jitter, dead
// letters, rate-limit pauses, waking on the store's signal rather than
// polling, and shutdown grace. Delivery is at least once; an adapter makes
// a repeat recognisable (a derived Message-ID, Slack message metadata).
package notify

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
)

// OutboxStore is the delivery queue a Runner drains. *store.Store
// satisfies it.
type OutboxStore interface {
	ClaimDelivery(ctx context.Context, sink string, lease time.Duration) (*store.Delivery, error)
	CompleteDelivery(ctx context.Context, d *store.Delivery) error
	RetryDelivery(ctx context.Context, d *store.Delivery, cause error, at time.Time) error
	KillDelivery(ctx context.Context, d *store.Delivery, cause error) error
	DeliveriesReady(sink string) <-chan struct{}
}

// Adapter delivers one event to one channel. nil means delivered; wrap the
// error with Permanent, RetryAfter or Skipped to say more. Any other error
// is temporary: retried with backoff, dead after Options.MaxAttempts.
// Deliver must respect ctx: it ends on the lease and after the shutdown
// grace.
type Adapter interface {
	Deliver(ctx context.Context, d *store.Delivery) error
}

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as final: the delivery goes to the dead letters at
// once (a refused recipient, a channel the bot is not in, a bad token).
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

type retryAfterError struct {
	err   error
	after time.Duration
}

func (e retryAfterError) Error() string { return e.err.Error() }
func (e retryAfterError) Unwrap() error { return e.err }

// RetryAfter marks err as a rate limit: the delivery is tried again no
// sooner than after, and the Runner claims nothing else for its sink until
// then (a rate limit holds for the whole channel). It does not count
// toward MaxAttempts: being told to wait is not a failure of the delivery.
func RetryAfter(err error, after time.Duration) error {
	if err == nil {
		return nil
	}
	return retryAfterError{err, max(after, 0)}
}

type skippedError struct{ reason string }

func (e skippedError) Error() string { return "not delivered: " + e.reason }

// Skipped says the adapter deliberately delivered nothing (policy: an
// internal note is not mailed, the customer's own reply is not echoed): the
// delivery is done, counted as skipped, and no outcome is reported.
func Skipped(reason string) error { return skippedError{reason} }

// IsSkipped reports whether err is (or wraps) a Skipped: an adapter that
// delivers one event to several places tells "nothing to do here" from a
// failure.
func IsSkipped(err error) bool {
	var skipped skippedError
	return errors.As(err, &skipped)
}

// Options configures a Runner. Zero values mean the documented defaults.
type Options struct {
	// Sink is the outbox sink drained ("email", "slack"). Required.
	Sink string
	// Lease is how long a claimed delivery is ours; a delivery attempt is
	// cut off when it ends, and after a crash another runner retries it
	// then. Default 2m.
	Lease time.Duration
	// MaxAttempts is how many failed attempts move a delivery to the dead
	// letters. Default 8.
	MaxAttempts int
	// BackoffBase is the wait after the first failure; it doubles with
	// every further failure (with up to 50% jitter). Default 30s.
	BackoffBase time.Duration
	// BackoffMax caps the wait between attempts. Default 1h.
	BackoffMax time.Duration
	// PollInterval is how often the queue is checked without a signal, for
	// retries scheduled by other daemons and expired leases. Default 30s.
	PollInterval time.Duration
	// ShutdownGrace is how long a delivery in flight may still run after
	// Run's context ends before it is cut short (and retried later, never
	// dead-lettered). Default 10s.
	ShutdownGrace time.Duration

	// Outcome, if set, is told whether each delivery reached its channel
	// (delivered) or was given up (dead letter, with the reason). It is
	// called before the outcome is booked in the store, so a crash in
	// between repeats the call rather than losing it. Not called for
	// Skipped deliveries or ones cut short by shutdown.
	Outcome func(ctx context.Context, d *store.Delivery, delivered bool, reason string)

	// Now and After are the clock (tests pass a fake one); nil means the
	// real one. The store's claim uses the store's clock: give both the
	// same.
	Now   func() time.Time
	After func(time.Duration) <-chan time.Time
	// Idle, if set, is called each time the Runner has drained what was due
	// and is about to wait (tests wait on it instead of sleeping).
	Idle func()
}

// DefaultShutdownGrace is how long a delivery in flight may finish on
// shutdown when Options.ShutdownGrace is zero.
const DefaultShutdownGrace = 10 * time.Second

// WithDefaults returns o with every zero value replaced by its default.
func (o Options) WithDefaults() Options {
	if o.Lease == 0 {
		o.Lease = 2 * time.Minute
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 8
	}
	if o.BackoffBase == 0 {
		o.BackoffBase = 30 * time.Second
	}
	if o.BackoffMax == 0 {
		o.BackoffMax = time.Hour
	}
	if o.PollInterval == 0 {
		o.PollInterval = 30 * time.Second
	}
	if o.ShutdownGrace == 0 {
		o.ShutdownGrace = DefaultShutdownGrace
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.After == nil {
		o.After = time.After
	}
	return o
}

// Validate reports every bad value at once, each with its option name.
func (o Options) Validate() error {
	o = o.WithDefaults()
	var errs []error
	if o.Sink == "" {
		errs = append(errs, errors.New("sink: required"))
	}
	if o.Lease < 0 {
		errs = append(errs, fmt.Errorf("lease: %v is negative", o.Lease))
	}
	if o.MaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("maxAttempts: %d: want at least 1", o.MaxAttempts))
	}
	if o.BackoffBase < 0 {
		errs = append(errs, fmt.Errorf("backoffBase: %v is negative", o.BackoffBase))
	}
	if o.BackoffMax < o.BackoffBase {
		errs = append(errs, fmt.Errorf("backoffMax: %v is less than backoffBase %v", o.BackoffMax, o.BackoffBase))
	}
	if o.PollInterval <= 0 {
		errs = append(errs, fmt.Errorf("pollInterval: %v: want a positive duration", o.PollInterval))
	}
	if o.ShutdownGrace < 0 {
		errs = append(errs, fmt.Errorf("shutdownGrace: %v is negative", o.ShutdownGrace))
	}
	return errors.Join(errs...)
}

// Stats counts what a Runner did since it was made.
type Stats struct {
	Sent    int64 // deliveries the channel accepted
	Skipped int64 // deliveries completed without sending (Skipped)
	Retried int64 // failed attempts scheduled again (rate limits included)
	// RateLimited counts attempts the channel refused for its rate limit
	// (Slack's 429), each waited out for its Retry-After.
	RateLimited int64
	Dead        int64 // deliveries moved to the dead letters
}

// Runner drains one sink. Make it with NewRunner; run it with Run.
type Runner struct {
	o   Options
	st  OutboxStore
	a   Adapter
	log *slog.Logger

	sent, skipped, retried, rateLimited, dead atomic.Int64

	running     atomic.Bool
	mu          sync.Mutex
	retries     []time.Time // when retries this runner scheduled come due, soonest first
	pausedUntil time.Time   // a rate limit: claim nothing before
}

// NewRunner returns a Runner for opts.Sink; it delivers nothing until Run.
// A nil log means slog.Default().
func NewRunner(opts Options, st OutboxStore, a Adapter, log *slog.Logger) (*Runner, error) {
	if st == nil || a == nil {
		return nil, errors.New("notify runner: nil store or adapter")
	}
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("notify runner options: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	return &Runner{o: opts.WithDefaults(), st: st, a: a, log: log.With("component", "notify", "sink", opts.Sink)}, nil
}

// Stats returns the counters; safe to call while Run runs.
func (r *Runner) Stats() Stats {
	return Stats{Sent: r.sent.Load(), Skipped: r.skipped.Load(), Retried: r.retried.Load(), RateLimited: r.rateLimited.Load(), Dead: r.dead.Load()}
}

// Run delivers as the relay queues deliveries until ctx ends, then returns
// nil once the delivery in flight has finished (or been cut short after
// ShutdownGrace; it is then due again at once, for the next run). It waits
// on the store's DeliveriesReady signal (relayed events, requeued dead
// letters) and on a timer for retries coming due and for PollInterval
// (other daemons' retries, expired leases); it never busy-polls. Run must
// not be called twice at once.
func (r *Runner) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("notify runner: Run is already running")
	}
	defer r.running.Store(false)
	r.log.Info("delivery runner started")
	defer r.log.Info("delivery runner stopped")
	ready := r.st.DeliveriesReady(r.o.Sink)
	for {
		r.drain(ctx)
		if ctx.Err() != nil {
			return nil
		}
		wake := r.o.After(r.nextWake())
		if r.o.Idle != nil {
			r.o.Idle()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ready:
		case <-wake:
		}
	}
}

// drain delivers every due delivery, one at a time, until none is due.
func (r *Runner) drain(ctx context.Context) {
	r.dropDueRetries()
	for ctx.Err() == nil && !r.paused() {
		d, err := r.st.ClaimDelivery(ctx, r.o.Sink, r.o.Lease)
		if errors.Is(err, store.ErrNotFound) {
			return
		}
		if err != nil {
			if ctx.Err() == nil {
				wait := min(r.o.PollInterval, 5*time.Second)
				r.log.Error("claim delivery failed; will retry", "in", wait, "err", err)
				r.noteRetry(r.o.Now().Add(wait))
			}
			return
		}
		r.handle(ctx, d)
	}
}

// handle delivers one claimed delivery and books the outcome. The work runs
// on a context that outlives ctx by ShutdownGrace, so a shutdown lets the
// delivery in flight finish; it is bounded by the lease, after which
// another runner may claim the delivery anyway.
func (r *Runner) handle(ctx context.Context, d *store.Delivery) {
	work, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.o.Lease)
	defer cancel()
	finished := make(chan struct{})
	defer close(finished)
	stop := context.AfterFunc(ctx, func() {
		select {
		case <-r.o.After(r.o.ShutdownGrace):
			cancel()
		case <-finished:
		}
	})
	defer stop()
	log := r.log.With("delivery", d.ID, "kind", string(d.Event.Kind), "ticket", d.Event.TicketID.Hex(), "attempt", d.Attempts)

	err := r.deliver(work, d)

	// Book the outcome even when shutting down, briefly.
	bctx, bcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer bcancel()
	var skipped skippedError
	var limited retryAfterError
	switch {
	case err == nil || errors.As(err, &skipped):
		if err == nil {
			r.sent.Add(1)
			r.outcome(bctx, d, true, "")
			log.Info("delivered")
		} else {
			r.skipped.Add(1)
			log.Debug("not delivered", "reason", skipped.reason)
		}
		if cerr := r.st.CompleteDelivery(bctx, d); errors.Is(cerr, store.ErrClaimLost) {
			// Our lease ran out mid-send and another runner claimed it:
			// that one books it (and may send it again, as at least once
			// allows).
			log.Warn("delivery was claimed again while in flight; leaving it to the new claimant", "err", cerr)
		} else if cerr != nil {
			// The lease will expire and it is delivered again; the adapter
			// makes the repeat recognisable.
			log.Error("complete delivery failed; it will be delivered again", "err", cerr)
		}
	case ctx.Err() != nil && work.Err() != nil:
		// Cut short by our own shutdown: never the channel's fault, never
		// a dead letter, whatever the attempt count. Due again at once.
		r.retry(bctx, d, err, r.o.Now(), log)
	case errors.As(err, &limited):
		r.rateLimited.Add(1)
		at := r.o.Now().Add(limited.after)
		r.pause(at)
		r.retry(bctx, d, err, at, log)
	case IsPermanent(err):
		r.kill(bctx, d, err, log)
	case d.Attempts >= r.o.MaxAttempts:
		r.kill(bctx, d, fmt.Errorf("gave up after %d attempts: %w", d.Attempts, err), log)
	default:
		r.retry(bctx, d, err, r.o.Now().Add(r.backoff(d.Attempts)), log)
	}
}

// deliver calls the adapter, turning a panic into an error.
func (r *Runner) deliver(ctx context.Context, d *store.Delivery) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic while delivering: %v", p)
		}
	}()
	return r.a.Deliver(ctx, d)
}

func (r *Runner) outcome(ctx context.Context, d *store.Delivery, delivered bool, reason string) {
	if r.o.Outcome != nil {
		r.o.Outcome(ctx, d, delivered, reason)
	}
}

func (r *Runner) retry(ctx context.Context, d *store.Delivery, cause error, at time.Time, log *slog.Logger) {
	if err := r.st.RetryDelivery(ctx, d, cause, at); errors.Is(err, store.ErrClaimLost) {
		log.Warn("delivery failed, and was claimed again meanwhile; leaving it to the new claimant", "send_err", cause, "err", err)
		return
	} else if err != nil {
		log.Error("record retry failed; the lease will expire and it is retried", "send_err", cause, "err", err)
		return
	}
	r.retried.Add(1)
	r.noteRetry(at)
	log.Warn("delivery failed; will retry", "at", at.UTC().Format(time.RFC3339Nano), "err", cause)
}

func (r *Runner) kill(ctx context.Context, d *store.Delivery, cause error, log *slog.Logger) {
	r.outcome(ctx, d, false, cause.Error())
	if err := r.st.KillDelivery(ctx, d, cause); errors.Is(err, store.ErrClaimLost) {
		log.Warn("delivery failed for good, but was claimed again meanwhile; leaving it to the new claimant", "send_err", cause, "err", err)
		return
	} else if err != nil {
		log.Error("move to dead letters failed; the lease will expire and it is retried", "send_err", cause, "err", err)
		return
	}
	r.dead.Add(1)
	log.Error("delivery moved to dead letters", "err", cause)
}

// backoff is the wait after the attempt-th failure: BackoffBase doubled per
// further failure, capped at BackoffMax, of which a random half is jitter
// (so daemons that failed together do not retry together).
func (r *Runner) backoff(attempt int) time.Duration {
	d := r.o.BackoffBase
	for i := 1; i < attempt && d < r.o.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, r.o.BackoffMax)
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// maxTrackedRetries bounds the remembered retry times; beyond it the poll
// interval catches the rest.
const maxTrackedRetries = 1024

func (r *Runner) noteRetry(at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i, _ := slices.BinarySearchFunc(r.retries, at, time.Time.Compare)
	r.retries = slices.Insert(r.retries, i, at)
	if len(r.retries) > maxTrackedRetries {
		r.retries = r.retries[:maxTrackedRetries]
	}
}

func (r *Runner) dropDueRetries() {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.o.Now()
	i := 0
	for i < len(r.retries) && !r.retries[i].After(now) {
		i++
	}
	r.retries = r.retries[i:]
}

func (r *Runner) pause(until time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if until.After(r.pausedUntil) {
		r.pausedUntil = until
	}
}

func (r *Runner) paused() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.o.Now().Before(r.pausedUntil)
}

// nextWake is how long to sleep: until the soonest retry we scheduled (or
// the end of a rate-limit pause), at most PollInterval.
func (r *Runner) nextWake() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.o.Now()
	wait := r.o.PollInterval
	if len(r.retries) > 0 {
		wait = min(wait, max(r.retries[0].Sub(now), 0))
	}
	if r.pausedUntil.After(now) {
		wait = max(wait, r.pausedUntil.Sub(now))
	}
	return wait
}
