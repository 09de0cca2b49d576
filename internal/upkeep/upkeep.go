// Package upkeep holds the scheduled jobs that keep the desk tidy on its
// own: closing resolved tickets the customer left alone, removing old
// records, and sweeping the outbox. Each is a plain function for
// internal/jobs to schedule; the store interfaces are declared here, where
// they are used.
package upkeep

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Batch is how many records one store query of a job handles, and
// MaxBatches how many batches one run handles at most: a run's work is
// bounded whatever has piled up; the next run goes on.
const (
	Batch      = 200
	MaxBatches = 50
)

// Names of the jobs, as they appear in the configuration, the leases, the
// admin listing and the metrics.
const (
	AutoCloseJob   = "autoClose"
	RetentionJob   = "retention"
	OutboxSweepJob = "outboxSweep"
)

// Closer finds and closes resolved tickets whose customer went quiet.
type Closer interface {
	IdleResolvedTickets(ctx context.Context, before time.Time, limit int) ([]bson.ObjectID, error)
	CloseIdleTicket(ctx context.Context, id bson.ObjectID, before time.Time, why string) (bool, error)
}

// AutoClose returns the auto-close job: every resolved ticket whose
// customer has written nothing for after is closed by the system, which
// announces it (status.changed), so the customer hears of it through the
// channel the ticket came from.
func AutoClose(st Closer, after time.Duration, now func() time.Time, log *slog.Logger) func(context.Context) error {
	why := fmt.Sprintf(" (no customer message for %s)", humanDuration(after))
	return func(ctx context.Context) error {
		before := now().Add(-after)
		closed := 0
		for range MaxBatches {
			ids, err := st.IdleResolvedTickets(ctx, before, Batch)
			if err != nil {
				return err
			}
			n := 0
			for _, id := range ids {
				ok, err := st.CloseIdleTicket(ctx, id, before, why)
				if err != nil {
					return err
				}
				if ok {
					n++
				}
			}
			closed += n
			// None closed: what is left changed under us; the next run
			// looks again.
			if len(ids) < Batch || n == 0 {
				break
			}
		}
		if closed > 0 {
			log.Info("auto-closed idle resolved tickets", "job", AutoCloseJob, "tickets", closed)
		}
		return nil
	}
}

// humanDuration says 7 days rather than 168h0m0s.
func humanDuration(d time.Duration) string {
	if d >= 24*time.Hour && d%(24*time.Hour) == 0 {
		if days := d / (24 * time.Hour); days > 1 {
			return fmt.Sprintf("%d days", days)
		}
		return "1 day"
	}
	return d.String()
}

// Pruner removes old records of a kind (store.Prune*).
type Pruner interface {
	Prune(ctx context.Context, kind string, before time.Time, limit int) (int, error)
}

// Retention returns the retention job: for each kind with a positive age,
// the records older than it are removed, at most MaxBatches batches per
// kind and run. A kind that fails does not stop the others; the errors are
// joined.
func Retention(st Pruner, ages map[string]time.Duration, now func() time.Time, log *slog.Logger) func(context.Context) error {
	return func(ctx context.Context) error {
		var errs []error
		for kind, age := range ages {
			if age <= 0 {
				continue // kept for ever
			}
			before := now().Add(-age)
			removed := 0
			for range MaxBatches {
				n, err := st.Prune(ctx, kind, before, Batch)
				removed += n
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", kind, err))
					break
				}
				if n < Batch {
					break
				}
			}
			if removed > 0 {
				log.Info("removed old records", "job", RetentionJob, "kind", kind, "records", removed, "olderThan", before.UTC().Format(time.RFC3339))
			}
		}
		return errors.Join(errs...)
	}
}

// Sweeper relays what the per-write signal missed and wakes the runners
// for deliveries due now.
type Sweeper interface {
	RelayAll(ctx context.Context) (int, error)
	WakeDueDeliveries(ctx context.Context) (int, error)
}

// OutboxSweep returns the outbox sweep job: relay every ticket's events
// left behind (a crash, a full signal channel, a race between daemons) and
// hand deliveries whose claim ran out to this daemon's runners.
func OutboxSweep(st Sweeper, log *slog.Logger) func(context.Context) error {
	return func(ctx context.Context) error {
		n, err := st.RelayAll(ctx)
		if err != nil {
			return err
		}
		if n > 0 {
			log.Info("sweep relayed events", "job", OutboxSweepJob, "events", n)
		}
		_, err = st.WakeDueDeliveries(ctx)
		return err
	}
}
