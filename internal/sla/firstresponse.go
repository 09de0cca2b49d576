package sla

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/store"
)

// FirstResponseStore is what the first-response job needs from the store.
// *store.Store satisfies it.
type FirstResponseStore interface {
	FirstResponseCandidates(ctx context.Context, limit int) ([]store.Ticket, error)
	MarkFirstResponded(ctx context.Context, id bson.ObjectID, at time.Time) error
	RecordFirstResponseReminder(ctx context.Context, id bson.ObjectID, due time.Time) (bool, error)
	RecordFirstResponseBreach(ctx context.Context, id bson.ObjectID, due time.Time) (bool, error)
}

// DefaultBatch is how many tickets one run of the first-response job looks
// at, oldest first.
const DefaultBatch = 1000

// FirstResponseOptions configure the first-response job.
type FirstResponseOptions struct {
	Targets *Targets
	// Batch bounds the tickets one run looks at (oldest first); 0 means
	// DefaultBatch. The next run sees the rest once older ones are
	// answered, breached or closed.
	Batch  int
	Now    func() time.Time // nil means time.Now
	Logger *slog.Logger
}

// FirstResponseStats counts what this process recorded, for metrics.
type FirstResponseStats struct {
	Reminded uint64 // reminders queued
	Breached uint64 // breaches recorded
	// Backfilled counts tickets answered before respondedAt was recorded
	// (older data), recorded now.
	Backfilled uint64
}

// FirstResponse is the job that reminds before and records after a missed
// first-response target. Each reminder and breach is one conditional store
// write carrying its announcement (sla.reminder, sla.breached), so it is
// queued once whichever daemon runs the job, however often; the Slack sink
// posts it.
type FirstResponse struct {
	st      FirstResponseStore
	targets *Targets
	batch   int
	now     func() time.Time
	log     *slog.Logger

	reminded, breached, backfilled atomic.Uint64
}

// NewFirstResponse returns the job.
func NewFirstResponse(st FirstResponseStore, o FirstResponseOptions) (*FirstResponse, error) {
	if st == nil || o.Targets == nil {
		return nil, errors.New("first-response job: no store or no targets")
	}
	if o.Batch <= 0 {
		o.Batch = DefaultBatch
	}
	now, log := clockAndLogger(o.Now, o.Logger, "first-response")
	return &FirstResponse{st: st, targets: o.Targets, batch: o.Batch, now: now, log: log}, nil
}

// Stats returns the counts so far.
func (f *FirstResponse) Stats() FirstResponseStats {
	return FirstResponseStats{Reminded: f.reminded.Load(), Breached: f.breached.Load(), Backfilled: f.backfilled.Load()}
}

// maxRunErrors bounds the errors one run reports (the rest are counted).
const maxRunErrors = 5

// Run looks at the tickets awaiting a first response once: it records a
// breach for those past their target and queues a reminder for those past
// their reminder time. A failure on one ticket does not stop the others;
// the run returns them joined.
func (f *FirstResponse) Run(ctx context.Context) error {
	now := f.now()
	tickets, err := f.st.FirstResponseCandidates(ctx, f.batch)
	if err != nil {
		return fmt.Errorf("first-response job: %w", err)
	}
	if len(tickets) == f.batch {
		f.log.Warn("more tickets await a first response than one run looks at; the newest wait for the next runs", "batch", f.batch)
	}
	var errs []error
	failed := 0
	for i := range tickets {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := f.check(ctx, &tickets[i], now); err != nil {
			if failed++; failed <= maxRunErrors {
				errs = append(errs, err)
			}
		}
	}
	if failed > maxRunErrors {
		errs = append(errs, fmt.Errorf("and %d more tickets failed", failed-maxRunErrors))
	}
	return errors.Join(errs...)
}

func (f *FirstResponse) check(ctx context.Context, t *store.Ticket, now time.Time) error {
	if r := t.FirstAgentResponse(); r != nil {
		if err := f.st.MarkFirstResponded(ctx, t.ID, r.CreatedAt); err != nil {
			return err
		}
		f.backfilled.Add(1)
		return nil
	}
	due := f.targets.Due(t)
	switch {
	case !now.Before(due):
		return f.record(ctx, t, due, f.st.RecordFirstResponseBreach, &f.breached, "first-response target missed")
	case t.FirstResponse != nil && t.FirstResponse.RemindedAt != nil:
	case !now.Before(f.targets.RemindAt(t)):
		return f.record(ctx, t, due, f.st.RecordFirstResponseReminder, &f.reminded, "first-response reminder queued")
	}
	return nil
}

// record makes one of the store's once-only records and counts it when it
// was this call that made it.
func (f *FirstResponse) record(ctx context.Context, t *store.Ticket, due time.Time,
	rec func(context.Context, bson.ObjectID, time.Time) (bool, error), n *atomic.Uint64, what string) error {
	ok, err := rec(ctx, t.ID, due)
	if err != nil {
		return err
	}
	if ok {
		n.Add(1)
		f.log.Info(what, "ticket", t.ID.Hex(), "ref", t.RefID, "priority", t.Priority, "due", due)
	}
	return nil
}

// clockAndLogger fills a job's clock (nil: time.Now) and logger (nil:
// slog.Default), tagged with its component.
func clockAndLogger(now func() time.Time, log *slog.Logger, component string) (func() time.Time, *slog.Logger) {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	return now, log.With("component", component)
}
