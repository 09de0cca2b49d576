package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Scheduled jobs record each run under a unique _id made of the job's name
// and the slot (the scheduled time) it runs for, so that a slot runs once
// across daemons even when their clocks differ a little or a lease expired
// in between; and each job's last run, for the admin listing, in one
// document per job whose writes are fenced by the lease token: a holder
// whose lease was taken over cannot overwrite its successor's record.

const (
	colJobRuns = "jobRuns"
	colJobs    = "jobs"
)

// JobOutcome says how a job run ended.
type JobOutcome string

// The job outcomes.
const (
	// JobRunning: started and not finished (or its daemon died).
	JobRunning JobOutcome = "running"
	JobOK      JobOutcome = "ok"
	JobFailed  JobOutcome = "failed"
)

// JobRun is one run of a scheduled job.
type JobRun struct {
	ID  string `bson:"_id"` // jobRunID(job, slot)
	Job string `bson:"job"`
	// Slot is the scheduled time the run is for.
	Slot time.Time `bson:"slot"`
	// Holder is the daemon that ran it, Token its lease's fencing token.
	Holder     string     `bson:"holder"`
	Token      int64      `bson:"token"`
	StartedAt  time.Time  `bson:"startedAt"`
	FinishedAt time.Time  `bson:"finishedAt,omitempty"`
	DurationMS int64      `bson:"durationMs"`
	Outcome    JobOutcome `bson:"outcome"`
	Error      string     `bson:"error,omitempty"`
}

// jobState is a job's last run, fenced by the token of the lease it ran
// under.
type jobState struct {
	ID    string `bson:"_id"` // the job's name
	Token int64  `bson:"token"`
	Last  JobRun `bson:"last"`
}

func jobRunID(job string, slot time.Time) string {
	return job + "@" + slot.UTC().Format(time.RFC3339Nano)
}

// StartJobRun records that job starts its run for slot under lease l. It
// fails with ErrConflict when the slot has run (or is running) already,
// and with ErrLeaseLost when l is no longer the lease's latest
// acquisition, or expired.
func (s *Store) StartJobRun(ctx context.Context, l *Lease, job string, slot time.Time) (*JobRun, error) {
	now := s.nowUTC()
	cur, err := s.currentLease(ctx, l.Name)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("start job %s: %w", job, err)
	}
	if cur == nil || cur.Token != l.Token || cur.Owner != l.Owner || !cur.ExpiresAt.After(now) {
		return nil, fmt.Errorf("start job %s (lease token %d): %w", job, l.Token, ErrLeaseLost)
	}
	slot = slot.UTC().Truncate(time.Millisecond)
	run := &JobRun{ID: jobRunID(job, slot), Job: job, Slot: slot, Holder: l.Owner, Token: l.Token, StartedAt: now, Outcome: JobRunning}
	if _, err := s.col(colJobRuns).InsertOne(ctx, run); err != nil {
		if mongo.IsDuplicateKeyError(err) {
			return nil, fmt.Errorf("start job %s for %s: %w: this slot has run already", job, slot.Format(time.RFC3339), ErrConflict)
		}
		return nil, fmt.Errorf("start job %s: %w", job, classify(err))
	}
	if err := s.recordJobState(ctx, run); err != nil {
		return nil, err
	}
	return run, nil
}

// FinishJobRun records how run ended (runErr nil means ok) and how long it
// took. ErrLeaseLost when a newer holder of the job's lease has recorded a
// run since: this run's own record is written all the same.
func (s *Store) FinishJobRun(ctx context.Context, run *JobRun, runErr error) error {
	run.FinishedAt = s.nowUTC()
	run.DurationMS = run.FinishedAt.Sub(run.StartedAt).Milliseconds()
	run.Outcome, run.Error = JobOK, ""
	if runErr != nil {
		run.Outcome, run.Error = JobFailed, runErr.Error()
	}
	_, err := s.col(colJobRuns).UpdateOne(ctx, bson.D{{Key: "_id", Value: run.ID}, {Key: "token", Value: run.Token}},
		bson.D{{Key: "$set", Value: bson.D{
			{Key: "finishedAt", Value: run.FinishedAt}, {Key: "durationMs", Value: run.DurationMS},
			{Key: "outcome", Value: run.Outcome}, {Key: "error", Value: run.Error},
		}}})
	if err != nil {
		return fmt.Errorf("finish job %s: %w", run.Job, classify(err))
	}
	return s.recordJobState(ctx, run)
}

// recordJobState makes run its job's last run, unless a run under a newer
// lease token is recorded (ErrLeaseLost).
func (s *Store) recordJobState(ctx context.Context, run *JobRun) error {
	res, err := s.col(colJobs).UpdateOne(ctx,
		bson.D{{Key: "_id", Value: run.Job}, {Key: "token", Value: bson.D{{Key: "$lte", Value: run.Token}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "token", Value: run.Token}, {Key: "last", Value: run}}}})
	if err != nil {
		return fmt.Errorf("record job %s: %w", run.Job, classify(err))
	}
	if res.MatchedCount > 0 {
		return nil
	}
	_, err = s.col(colJobs).InsertOne(ctx, jobState{ID: run.Job, Token: run.Token, Last: *run})
	if mongo.IsDuplicateKeyError(err) {
		return fmt.Errorf("record job %s (token %d): %w: a newer holder recorded its run", run.Job, run.Token, ErrLeaseLost)
	}
	if err != nil {
		return fmt.Errorf("record job %s: %w", run.Job, classify(err))
	}
	return nil
}

// LastJobRuns returns each job's last recorded run, by job name.
func (s *Store) LastJobRuns(ctx context.Context) (map[string]JobRun, error) {
	cur, err := s.col(colJobs).Find(ctx, bson.D{})
	if err != nil {
		return nil, fmt.Errorf("list job runs: %w", classify(err))
	}
	var states []jobState
	if err := cur.All(ctx, &states); err != nil {
		return nil, fmt.Errorf("list job runs: %w", classify(err))
	}
	out := make(map[string]JobRun, len(states))
	for _, st := range states {
		out[st.ID] = st.Last
	}
	return out, nil
}

// JobRunFor returns the record of job's run for slot; ErrNotFound when the
// slot did not run.
func (s *Store) JobRunFor(ctx context.Context, job string, slot time.Time) (*JobRun, error) {
	return findByID[JobRun](ctx, s.col(colJobRuns), jobRunID(job, slot.UTC().Truncate(time.Millisecond)))
}
