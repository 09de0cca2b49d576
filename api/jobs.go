package api

import (
	"net/http"
	"time"
)

// JobStatus is one scheduled job as GET /api/ticket/admin-jobs shows it.
// The daemon assembles it (from its scheduler and the store) and passes
// Options.Jobs.
type JobStatus struct {
	Name     string
	Schedule string
	Enabled  bool
	// NextRun is the next slot; zero when disabled.
	NextRun time.Time
	// Holder is the daemon holding the job's lease now; empty when none.
	Holder string
	// LastRun is nil before the first run.
	LastRun *JobRunStatus
}

// JobRunStatus is a job's last run.
type JobRunStatus struct {
	Slot, StartedAt time.Time
	// FinishedAt is zero while running (or when its daemon died).
	FinishedAt time.Time
	Duration   time.Duration
	Outcome    string // running, ok, failed
	Error      string
	Holder     string
	Token      int64
}

type jobJSON struct {
	Name     string      `json:"name"`
	Schedule string      `json:"schedule"`
	Enabled  bool        `json:"enabled"`
	NextRun  *jsonTime   `json:"nextRun"`
	Holder   string      `json:"holder"`
	LastRun  *jobRunJSON `json:"lastRun"`
}

type jobRunJSON struct {
	Slot       jsonTime  `json:"slot"`
	StartedAt  jsonTime  `json:"startedAt"`
	FinishedAt *jsonTime `json:"finishedAt"`
	DurationMS int64     `json:"durationMs"`
	Outcome    string    `json:"outcome"`
	Error      string    `json:"error"`
	Holder     string    `json:"holder"`
	Token      int64     `json:"token"`
}

func optTime(t time.Time) *jsonTime {
	if t.IsZero() {
		return nil
	}
	j := jsonTime(t)
	return &j
}

func (s *Server) jobs(w http.ResponseWriter, r *http.Request) error {
	var list []JobStatus
	if s.opts.Jobs != nil {
		var err error
		if list, err = s.opts.Jobs(r.Context()); err != nil {
			return err
		}
	}
	out := make([]jobJSON, len(list))
	for i, j := range list {
		out[i] = jobJSON{Name: j.Name, Schedule: j.Schedule, Enabled: j.Enabled, NextRun: optTime(j.NextRun), Holder: j.Holder}
		if lr := j.LastRun; lr != nil {
			out[i].LastRun = &jobRunJSON{
				Slot: jsonTime(lr.Slot), StartedAt: jsonTime(lr.StartedAt), FinishedAt: optTime(lr.FinishedAt),
				DurationMS: lr.Duration.Milliseconds(), Outcome: lr.Outcome, Error: lr.Error, Holder: lr.Holder, Token: lr.Token,
			}
		}
	}
	ok(w, http.StatusOK, "Jobs fetched successfully!", out)
	return nil
}
