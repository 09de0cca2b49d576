// Package jobs runs scheduled jobs (robfig/cron specs) once across the
// daemons of a deployment: each run takes the job's lease in the store,
// records itself under the job's name and scheduled slot (so a slot runs
// once even after a lease expired), runs, and records its outcome under the
// lease's fencing token.
package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/ticketd/ticketd/store"
)

// Job is one scheduled job: Run is called once per slot of Spec (a cron
// spec such as "0 8 * * 1-5" or "@every 5m") on one daemon of the
// deployment, with a context that ends when the daemon gives up waiting
// for it at shutdown or loses the job's lease.
type Job struct {
	Name, Spec string
	Run        func(ctx context.Context) error
}

// Store is what the scheduler needs from the store. *store.Store
// satisfies it.
type Store interface {
	AcquireLease(ctx context.Context, name, owner string, ttl time.Duration) (*store.Lease, error)
	RenewLease(ctx context.Context, l *store.Lease, ttl time.Duration) error
	ReleaseLease(ctx context.Context, l *store.Lease) error
	StartJobRun(ctx context.Context, l *store.Lease, job string, slot time.Time) (*store.JobRun, error)
	FinishJobRun(ctx context.Context, run *store.JobRun, runErr error) error
}

// DefaultLeaseTTL is how long a job's lease lasts unless renewed: a daemon
// that dies while running a job holds it up that long.
const DefaultLeaseTTL = time.Minute

// Options configures a Scheduler.
type Options struct {
	// Owner names this daemon in leases and run records (store.DaemonID).
	// Required.
	Owner string
	// LeaseTTL is the lease's lifetime, renewed every third of it while a
	// job runs; 0 means DefaultLeaseTTL.
	LeaseTTL time.Duration
	// Location is the time zone of the specs; nil means UTC. Every daemon
	// must use the same, or their slots differ.
	Location *time.Location
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock that slots are computed from; nil means time.Now.
	Now func() time.Time
	// OnRun, if set, is called after every attempt at a slot, whatever
	// came of it (metrics count them; tests wait on them).
	OnRun func(Report)
}

// Outcome is what came of one attempt at a slot.
type Outcome string

// The outcomes.
const (
	// Ran: the job ran and returned nil.
	Ran Outcome = "ok"
	// Failed: the job ran and failed (an error, a panic, a lost lease).
	Failed Outcome = "failed"
	// Held: another daemon holds the job's lease (it runs the slot, or
	// its previous run is still going).
	Held Outcome = "held"
	// AlreadyRan: the slot has run (on another daemon).
	AlreadyRan Outcome = "already-ran"
	// StoreError: the store could not be asked; the slot did not run here.
	StoreError Outcome = "store-error"
)

// Report describes one attempt at a slot.
type Report struct {
	Job     string
	Slot    time.Time
	Outcome Outcome
	// Err is the job's error (Failed) or the store's (StoreError).
	Err error
	// Duration is how long the job ran (Ran, Failed).
	Duration time.Duration
	// Token is the lease's fencing token the job ran under.
	Token int64
}

// Info describes a registered job, for listings.
type Info struct {
	Name, Spec string
	Enabled    bool
	// Next is the next slot; zero when disabled or not started.
	Next time.Time
}

type entry struct {
	job     Job
	enabled bool
	sched   cron.Schedule
	id      cron.EntryID
}

// Scheduler runs registered jobs on their schedules.
type Scheduler struct {
	st    Store
	o     Options
	log   *slog.Logger
	cron  *cron.Cron
	mu    sync.Mutex
	jobs  map[string]*entry
	order []string
	// runCtx is the jobs' context: it outlives the daemon's so that a
	// shutdown lets a running job finish, and ends when Stop gives up.
	runCtx     context.Context
	cancelRuns context.CancelFunc
	started    bool
	// stopping closes when Stop begins (for tests of the shutdown).
	stopping     chan struct{}
	stoppingOnce sync.Once
}

// New returns a scheduler with no jobs.
func New(st Store, o Options) (*Scheduler, error) {
	if o.Owner == "" {
		return nil, errors.New("jobs: Options.Owner is required")
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	if o.Location == nil {
		o.Location = time.UTC
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Scheduler{st: st, o: o, log: o.Logger.With("component", "jobs"), jobs: map[string]*entry{}, stopping: make(chan struct{})}
	s.runCtx, s.cancelRuns = context.WithCancel(context.Background())
	logger := cron.PrintfLogger(slog.NewLogLogger(s.log.Handler(), slog.LevelError))
	s.cron = cron.New(
		cron.WithLocation(o.Location),
		cron.WithParser(parser),
		cron.WithChain(cron.Recover(logger), cron.SkipIfStillRunning(cron.DiscardLogger)),
	)
	return s, nil
}

// parser reads the five-field standard specs and the descriptors (@daily,
// @every 10m).
var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseSpec checks a cron spec the way the scheduler reads it, for
// configuration checks.
func ParseSpec(spec string) error {
	_, err := parseSpec(spec)
	return err
}

func parseSpec(spec string) (cron.Schedule, error) {
	sched, err := parser.Parse(spec)
	if err != nil {
		return nil, err
	}
	if every, ok := sched.(cron.ConstantDelaySchedule); ok {
		// "@every d" counts from when each daemon started; slots aligned
		// on multiples of d are the same on every daemon.
		return alignedEvery(every.Delay), nil
	}
	return sched, nil
}

// alignedEvery fires at every multiple of its duration since the zero time.
type alignedEvery time.Duration

func (a alignedEvery) Next(t time.Time) time.Time {
	return t.Truncate(time.Duration(a)).Add(time.Duration(a))
}

// Add registers a job; a disabled one is listed but never runs. Names must
// be unique. Add must be called before Start.
func (s *Scheduler) Add(j Job, enabled bool) error {
	if j.Name == "" || j.Run == nil {
		return errors.New("jobs: a job needs a name and a Run function")
	}
	sched, err := parseSpec(j.Spec)
	if err != nil {
		return fmt.Errorf("job %s: schedule %q: %w", j.Name, j.Spec, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return fmt.Errorf("job %s: added after Start", j.Name)
	}
	if _, dup := s.jobs[j.Name]; dup {
		return fmt.Errorf("job %s: registered twice", j.Name)
	}
	e := &entry{job: j, enabled: enabled, sched: sched}
	if enabled {
		name := j.Name
		e.id = s.cron.Schedule(sched, cron.FuncJob(func() { s.runScheduled(name) }))
	}
	s.jobs[j.Name] = e
	s.order = append(s.order, j.Name)
	return nil
}

// Start starts scheduling.
func (s *Scheduler) Start() {
	s.mu.Lock()
	s.started = true
	s.mu.Unlock()
	s.cron.Start()
}

// Stop stops scheduling and waits for running jobs to finish. When ctx
// ends first, their context is cancelled and Stop returns ctx's error
// without waiting further.
func (s *Scheduler) Stop(ctx context.Context) error {
	done := s.cron.Stop()
	s.stoppingOnce.Do(func() { close(s.stopping) })
	select {
	case <-done.Done():
		s.cancelRuns()
		return nil
	case <-ctx.Done():
		s.cancelRuns()
		return fmt.Errorf("jobs still running at shutdown: %w", ctx.Err())
	}
}

// Jobs lists the registered jobs in registration order.
func (s *Scheduler) Jobs() []Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Info, 0, len(s.order))
	for _, name := range s.order {
		e := s.jobs[name]
		info := Info{Name: name, Spec: e.job.Spec, Enabled: e.enabled}
		if e.enabled {
			info.Next = e.sched.Next(s.o.Now().In(s.o.Location))
		}
		out = append(out, info)
	}
	return out
}

// LeaseName is the store lease a job's runs take.
func LeaseName(job string) string { return "job:" + job }

func (s *Scheduler) runScheduled(name string) {
	s.mu.Lock()
	e := s.jobs[name]
	s.mu.Unlock()
	slot := lastActivation(e.sched, s.o.Now().In(s.o.Location))
	s.RunSlot(s.runCtx, name, slot)
}

// lastActivation is the latest time at or before now that sched fires:
// the slot that cron's timer just fired for, whatever the delay since.
func lastActivation(sched cron.Schedule, now time.Time) time.Time {
	if a, ok := sched.(alignedEvery); ok {
		return now.Truncate(time.Duration(a))
	}
	for back := time.Minute; back <= 400*24*time.Hour; back *= 2 {
		t := sched.Next(now.Add(-back))
		if t.After(now) {
			continue
		}
		for n := sched.Next(t); !n.After(now); n = sched.Next(t) {
			t = n
		}
		return t
	}
	return now.Truncate(time.Second)
}

// RunSlot runs job name for slot, unless another daemon holds its lease or
// the slot has run; it reports what came of it (also to Options.OnRun).
// The scheduler calls it at each slot; tests and operators may call it
// directly.
func (s *Scheduler) RunSlot(ctx context.Context, name string, slot time.Time) Report {
	rep := s.runSlot(ctx, name, slot)
	if s.o.OnRun != nil {
		s.o.OnRun(rep)
	}
	return rep
}

func (s *Scheduler) runSlot(ctx context.Context, name string, slot time.Time) Report {
	rep := Report{Job: name, Slot: slot}
	s.mu.Lock()
	e := s.jobs[name]
	s.mu.Unlock()
	log := s.log.With("job", name, "slot", slot.UTC().Format(time.RFC3339))
	if e == nil {
		rep.Outcome, rep.Err = StoreError, fmt.Errorf("no job named %q", name)
		return rep
	}
	l, err := s.st.AcquireLease(ctx, LeaseName(name), s.o.Owner, s.o.LeaseTTL)
	if errors.Is(err, store.ErrLeaseHeld) {
		log.Debug("another daemon holds the job", "err", err)
		rep.Outcome = Held
		return rep
	}
	if err != nil {
		log.Error("could not take the job's lease; the slot is skipped here", "err", err)
		rep.Outcome, rep.Err = StoreError, err
		return rep
	}
	rep.Token = l.Token
	// Released even when stopping, so that another daemon need not wait
	// for the lease to expire.
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := s.st.ReleaseLease(rctx, l); err != nil {
			log.Warn("could not release the job's lease; it expires", "err", err)
		}
	}()
	run, err := s.st.StartJobRun(ctx, l, name, slot)
	if errors.Is(err, store.ErrConflict) {
		log.Debug("the slot has run already")
		rep.Outcome = AlreadyRan
		return rep
	}
	if err != nil {
		log.Error("could not record the run; the slot is skipped here", "err", err)
		rep.Outcome, rep.Err = StoreError, err
		return rep
	}

	jobCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	lost := make(chan error, 1)
	renewed := s.keepLease(jobCtx, l, lost, cancel)
	start := time.Now()
	runErr := safeRun(jobCtx, e.job.Run)
	rep.Duration = time.Since(start)
	cancel()
	<-renewed
	select {
	case err := <-lost:
		runErr = errors.Join(runErr, fmt.Errorf("stopped: %w", err))
	default:
	}

	fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer fcancel()
	if err := s.st.FinishJobRun(fctx, run, runErr); err != nil {
		log.Warn("could not record the run's outcome", "err", err)
	}
	if runErr != nil {
		rep.Outcome, rep.Err = Failed, runErr
		log.Error("job failed", "took", rep.Duration, "token", l.Token, "err", runErr)
		return rep
	}
	rep.Outcome = Ran
	log.Info("job ran", "took", rep.Duration, "token", l.Token)
	return rep
}

// keepLease renews l every third of its lifetime until ctx ends; when the
// lease is lost it says so on lost and cancels the job. The returned
// channel closes when it has stopped.
func (s *Scheduler) keepLease(ctx context.Context, l *store.Lease, lost chan<- error, cancel context.CancelFunc) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(s.o.LeaseTTL / 3)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				err := s.st.RenewLease(ctx, l, s.o.LeaseTTL)
				if errors.Is(err, store.ErrLeaseLost) {
					lost <- err
					cancel()
					return
				}
				if err != nil && ctx.Err() == nil {
					s.log.Warn("could not renew the job's lease; will retry", "job", l.Name, "err", err)
				}
			}
		}
	}()
	return done
}

// safeRun calls run, turning a panic into an error.
func safeRun(ctx context.Context, run func(context.Context) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	return run(ctx)
}
