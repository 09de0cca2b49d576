package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ticketd/ticketd/api"
	"github.com/ticketd/ticketd/internal/jobs"
	"github.com/ticketd/ticketd/internal/upkeep"
	"github.com/ticketd/ticketd/store"
)

// JobsConfig configures the scheduled jobs. Each job has its own
// sub-section with a cron schedule and an on/off switch (JobSchedule) and
// its own settings.
type JobsConfig struct {
	// TimeZone of the schedules (an IANA name); every daemon must use the
	// same, or they would disagree on the slots.
	TimeZone string `yaml:"timeZone"`
	// LeaseTTL: how long a daemon that died running a job holds it up.
	LeaseTTL    time.Duration      `yaml:"leaseTTL"`
	AutoClose   AutoCloseJobConfig `yaml:"autoClose"`
	Retention   RetentionJobConfig `yaml:"retention"`
	OutboxSweep JobSchedule        `yaml:"outboxSweep"`
	// The first-response and digest jobs (slaconfig.go).
	SLAJobsConfig `yaml:",inline"`
}

// JobSchedule is when a job runs, and whether at all.
type JobSchedule struct {
	Enabled  bool   `yaml:"enabled"`
	Schedule string `yaml:"schedule"`
}

// AutoCloseJobConfig configures auto-close.
type AutoCloseJobConfig struct {
	JobSchedule `yaml:",inline"`
	// AutoCloseAfter: how long a resolved ticket waits for its customer.
	AutoCloseAfter time.Duration `yaml:"autoCloseAfter"`
}

// RetentionJobConfig gives the age after which each kind of record is
// removed; 0 keeps it for ever.
type RetentionJobConfig struct {
	JobSchedule     `yaml:",inline"`
	DeliveredKeys   time.Duration `yaml:"deliveredKeys"`
	DeadLetters     time.Duration `yaml:"deadLetters"`
	IgnoredMail     time.Duration `yaml:"ignoredMail"`
	QuarantinedMail time.Duration `yaml:"quarantinedMail"`
	JobRuns         time.Duration `yaml:"jobRuns"`
}

const day = 24 * time.Hour

func defaultJobsConfig() JobsConfig {
	return JobsConfig{
		TimeZone: "UTC",
		LeaseTTL: jobs.DefaultLeaseTTL,
		AutoClose: AutoCloseJobConfig{
			JobSchedule:    JobSchedule{Enabled: true, Schedule: "@hourly"},
			AutoCloseAfter: 7 * day,
		},
		Retention: RetentionJobConfig{
			JobSchedule:   JobSchedule{Enabled: true, Schedule: "17 * * * *"},
			DeliveredKeys: 7 * day, DeadLetters: 30 * day, IgnoredMail: 30 * day, QuarantinedMail: 90 * day, JobRuns: 7 * day,
		},
		OutboxSweep:   JobSchedule{Enabled: true, Schedule: "@every 1m"},
		SLAJobsConfig: defaultSLAJobsConfig(),
	}
}

func (j *JobsConfig) validate(bad func(key, format string, args ...any)) {
	if _, err := time.LoadLocation(j.TimeZone); err != nil || j.TimeZone == "" {
		bad("jobs.timeZone", "must be a time zone name such as UTC or Europe/Berlin, got %q", j.TimeZone)
	}
	if j.LeaseTTL < 10*time.Second {
		bad("jobs.leaseTTL", "must be a duration of at least 10s, got %s", j.LeaseTTL)
	}
	schedules := []struct {
		key string
		s   JobSchedule
	}{{"jobs.autoClose", j.AutoClose.JobSchedule}, {"jobs.retention", j.Retention.JobSchedule}, {"jobs.outboxSweep", j.OutboxSweep}}
	for _, s := range schedules {
		if err := jobs.ParseSpec(s.s.Schedule); err != nil {
			bad(s.key+".schedule", "must be a cron spec such as \"*/5 * * * *\", \"@hourly\" or \"@every 10m\", got %q (%v)", s.s.Schedule, err)
		}
	}
	if j.AutoClose.AutoCloseAfter < time.Hour {
		bad("jobs.autoClose.autoCloseAfter", "must be a duration of at least 1h (168h is 7 days), got %s", j.AutoClose.AutoCloseAfter)
	}
	r := j.Retention
	for _, a := range []struct {
		key string
		age time.Duration
	}{{"deliveredKeys", r.DeliveredKeys}, {"deadLetters", r.DeadLetters}, {"ignoredMail", r.IgnoredMail}, {"quarantinedMail", r.QuarantinedMail}, {"jobRuns", r.JobRuns}} {
		if a.age != 0 && a.age < time.Hour {
			bad("jobs.retention."+a.key, "must be 0 (keep for ever) or a duration of at least 1h, got %s", a.age)
		}
	}
}

// relaySweep is how often each daemon's relay sweeps on its own: never
// when the outbox-sweep job does it, once across daemons.
func (c Config) relaySweep() time.Duration {
	if c.Jobs.OutboxSweep.Enabled {
		return 0
	}
	return c.Outbox.SweepInterval
}

// scheduledJob is a job with its switch.
type scheduledJob struct {
	jobs.Job
	enabled bool
}

// daemonJobs lists the daemon's scheduled jobs. A new job is one more
// entry here, with its sub-section in JobsConfig.
func daemonJobs(cfg Config, st *store.Store, log *slog.Logger, sj *slaJobs) []scheduledJob {
	j := cfg.Jobs
	r := j.Retention
	ages := map[string]time.Duration{
		store.PruneDelivered: r.DeliveredKeys, store.PruneDeadLetters: r.DeadLetters, store.PruneIgnored: r.IgnoredMail,
		store.PruneQuarantined: r.QuarantinedMail, store.PruneJobRuns: r.JobRuns,
	}
	list := []scheduledJob{
		{jobs.Job{Name: upkeep.AutoCloseJob, Spec: j.AutoClose.Schedule, Run: upkeep.AutoClose(st, j.AutoClose.AutoCloseAfter, time.Now, log)}, j.AutoClose.Enabled},
		{jobs.Job{Name: upkeep.RetentionJob, Spec: r.Schedule, Run: upkeep.Retention(st, ages, time.Now, log)}, r.Enabled},
		{jobs.Job{Name: upkeep.OutboxSweepJob, Spec: j.OutboxSweep.Schedule, Run: upkeep.OutboxSweep(st, log)}, j.OutboxSweep.Enabled},
	}
	for _, job := range sj.Jobs {
		list = append(list, scheduledJob{job, true})
	}
	return list
}

// newScheduler builds the scheduler with list, its metrics in reg; the
// caller starts it (after joining the deployment) and stops it.
func newScheduler(cfg Config, st *store.Store, log *slog.Logger, reg prometheus.Registerer, list []scheduledJob) (*jobs.Scheduler, error) {
	loc, err := time.LoadLocation(cfg.Jobs.TimeZone)
	if err != nil {
		return nil, fmt.Errorf("jobs.timeZone: %w", err)
	}
	m := newJobMetrics(reg)
	sched, err := jobs.New(st, jobs.Options{Owner: st.DaemonID(), LeaseTTL: cfg.Jobs.LeaseTTL, Location: loc, Logger: log, OnRun: m.observe})
	if err != nil {
		return nil, err
	}
	for _, j := range list {
		if err := sched.Add(j.Job, j.enabled); err != nil {
			return nil, err
		}
	}
	return sched, nil
}

// stopJobs lets a running job finish, for at most the shutdown timeout.
func stopJobs(ctx context.Context, sched *jobs.Scheduler, timeout time.Duration, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	if err := sched.Stop(ctx); err != nil {
		log.Error("scheduled job cut short at shutdown", "err", err)
	}
}

// jobMetrics counts runs, failures and durations per job.
type jobMetrics struct {
	runs     *prometheus.CounterVec
	failures *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newJobMetrics(reg prometheus.Registerer) *jobMetrics {
	m := &jobMetrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ticketd_job_runs_total",
			Help: "Attempts at a scheduled job's slot on this daemon, by outcome: ok and failed ran here; held (another daemon holds the job), already-ran (the slot ran elsewhere) and store-error did not."}, []string{"job", "outcome"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ticketd_job_failures_total",
			Help: "Runs of a scheduled job on this daemon that failed (an error, a panic, a lost lease)."}, []string{"job"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ticketd_job_duration_seconds",
			Help: "How long runs of a scheduled job on this daemon took.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}, []string{"job"}),
	}
	reg.MustRegister(m.runs, m.failures, m.duration)
	return m
}

func (m *jobMetrics) observe(r jobs.Report) {
	m.runs.WithLabelValues(r.Job, string(r.Outcome)).Inc()
	switch r.Outcome {
	case jobs.Failed:
		m.failures.WithLabelValues(r.Job).Inc()
		m.duration.WithLabelValues(r.Job).Observe(r.Duration.Seconds())
	case jobs.Ran:
		m.duration.WithLabelValues(r.Job).Observe(r.Duration.Seconds())
	}
}

// jobStateStore is what the admin listing reads.
type jobStateStore interface {
	LastJobRuns(ctx context.Context) (map[string]store.JobRun, error)
	Leases(ctx context.Context) ([]store.Lease, error)
}

// jobStatuses lists sched's jobs with their last runs and current holders,
// for GET /api/ticket/admin-jobs.
func jobStatuses(sched *jobs.Scheduler, st jobStateStore, now func() time.Time) func(context.Context) ([]api.JobStatus, error) {
	return func(ctx context.Context) ([]api.JobStatus, error) {
		last, err := st.LastJobRuns(ctx)
		if err != nil {
			return nil, err
		}
		leases, err := st.Leases(ctx)
		if err != nil {
			return nil, err
		}
		holders := map[string]string{}
		for _, l := range leases {
			if l.Expires.After(now()) {
				holders[l.Name] = l.Owner
			}
		}
		var out []api.JobStatus
		for _, info := range sched.Jobs() {
			js := api.JobStatus{Name: info.Name, Schedule: info.Spec, Enabled: info.Enabled, NextRun: info.Next, Holder: holders[jobs.LeaseName(info.Name)]}
			if r, ok := last[info.Name]; ok {
				js.LastRun = &api.JobRunStatus{Slot: r.Slot, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt,
					Duration: time.Duration(r.DurationMS) * time.Millisecond, Outcome: string(r.Outcome), Error: r.Error, Holder: r.Holder, Token: r.Token}
			}
			out = append(out, js)
		}
		return out, nil
	}
}
