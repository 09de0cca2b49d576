package jobs

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ticketd/ticketd/internal/fakeclock"
	"github.com/ticketd/ticketd/store"
	"github.com/ticketd/ticketd/store/storetest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// daemons returns n stores on one database (as n daemons see it), on clock.
func daemons(t *testing.T, n int, clock *fakeclock.Clock) []*store.Store {
	t.Helper()
	first, _ := storetest.OpenWith(t, store.OpenOptions{Now: clock.Now, Logger: quiet})
	out := []*store.Store{first}
	db := first.Database()
	for range n - 1 {
		s, err := store.New(context.Background(), db.Client(), db, store.Options{Now: clock.Now, Serialized: true, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func scheduler(t *testing.T, st Store, owner string, clock *fakeclock.Clock, jobs ...Job) *Scheduler {
	t.Helper()
	s, err := New(st, Options{Owner: owner, Logger: quiet, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if err := s.Add(j, true); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func TestSlotRunsOnceAcrossDaemons(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC))
	stores := daemons(t, 3, clock)
	var runs atomic.Int32
	job := Job{Name: "count", Spec: "@every 1m", Run: func(context.Context) error { runs.Add(1); return nil }}
	var scheds []*Scheduler
	for i, st := range stores {
		scheds = append(scheds, scheduler(t, st, string(rune('A'+i)), clock, job))
	}
	ctx := context.Background()
	for slot := range 5 {
		at := clock.Now().Add(time.Duration(slot) * time.Minute)
		outcomes := make(chan Outcome, len(scheds))
		var wg sync.WaitGroup
		for _, s := range scheds {
			wg.Add(1)
			go func() { defer wg.Done(); outcomes <- s.RunSlot(ctx, "count", at).Outcome }()
		}
		wg.Wait()
		close(outcomes)
		ran := 0
		for o := range outcomes {
			switch o {
			case Ran:
				ran++
			case Held, AlreadyRan:
			default:
				t.Errorf("slot %d: outcome %s", slot, o)
			}
		}
		if ran != 1 {
			t.Errorf("slot %d ran %d times", slot, ran)
		}
		// A daemon whose clock is late fires the same slot after the
		// others released the lease: the slot has run.
		if rep := scheds[slot%3].RunSlot(ctx, "count", at); rep.Outcome != AlreadyRan {
			t.Errorf("slot %d again: %s", slot, rep.Outcome)
		}
	}
	if n := runs.Load(); n != 5 {
		t.Errorf("5 slots ran the job %d times", n)
	}
}

func TestDeadHolderIsReplacedAfterTheLease(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC))
	st := daemons(t, 1, clock)[0]
	ctx := context.Background()
	// A daemon took the job's lease and died.
	if _, err := st.AcquireLease(ctx, LeaseName("x"), "dead", DefaultLeaseTTL); err != nil {
		t.Fatal(err)
	}
	ran := make(chan struct{}, 2)
	s := scheduler(t, st, "alive", clock, Job{Name: "x", Spec: "@every 1m", Run: func(context.Context) error { ran <- struct{}{}; return nil }})
	if rep := s.RunSlot(ctx, "x", clock.Now()); rep.Outcome != Held {
		t.Fatalf("while the dead daemon's lease lasts: %s", rep.Outcome)
	}
	clock.Advance(DefaultLeaseTTL)
	rep := s.RunSlot(ctx, "x", clock.Now())
	if rep.Outcome != Ran || rep.Token != 2 || len(ran) != 1 {
		t.Fatalf("after the lease: %+v, ran %d", rep, len(ran))
	}
	last, err := st.LastJobRuns(ctx)
	if err != nil || last["x"].Holder != "alive" || last["x"].Outcome != store.JobOK {
		t.Errorf("last run: %+v %v", last["x"], err)
	}
}

func TestFailuresAndPanicsAreRecorded(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC))
	st := daemons(t, 1, clock)[0]
	ctx := context.Background()
	var reports []Report
	s, err := New(st, Options{Owner: "A", Logger: quiet, Now: clock.Now, OnRun: func(r Report) { reports = append(reports, r) }})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Add(Job{Name: "fails", Spec: "@hourly", Run: func(context.Context) error { return errors.New("disk full") }}, true)
	_ = s.Add(Job{Name: "panics", Spec: "@hourly", Run: func(context.Context) error { panic("nil map") }}, true)
	s.RunSlot(ctx, "fails", clock.Now())
	s.RunSlot(ctx, "panics", clock.Now())
	if len(reports) != 2 || reports[0].Outcome != Failed || reports[1].Outcome != Failed || !strings.Contains(reports[1].Err.Error(), "panic: nil map") {
		t.Fatalf("reports: %+v", reports)
	}
	last, _ := st.LastJobRuns(ctx)
	if last["fails"].Outcome != store.JobFailed || last["fails"].Error != "disk full" || !strings.HasPrefix(last["panics"].Error, "panic: nil map") {
		t.Errorf("recorded: %+v", last)
	}
}

func TestAddChecksJobs(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC))
	s, err := New(nil, Options{Owner: "A", Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	run := func(context.Context) error { return nil }
	if err := s.Add(Job{Name: "a", Spec: "every day", Run: run}, true); err == nil || !strings.Contains(err.Error(), `"every day"`) {
		t.Errorf("bad spec: %v", err)
	}
	if err := s.Add(Job{Name: "a", Spec: "0 8 * * 1-5", Run: run}, true); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(Job{Name: "a", Spec: "@daily", Run: run}, true); err == nil {
		t.Error("a second job named a was accepted")
	}
	if err := s.Add(Job{Name: "off", Spec: "@daily", Run: run}, false); err != nil {
		t.Fatal(err)
	}
	infos := s.Jobs()
	// Monday 2 March 2026, 08:00: the next working-day 08:00 is Tuesday.
	if len(infos) != 2 || !infos[0].Next.Equal(time.Date(2026, 3, 3, 8, 0, 0, 0, time.UTC)) || infos[1].Enabled || !infos[1].Next.IsZero() {
		t.Errorf("jobs: %+v", infos)
	}
	if _, err := New(nil, Options{}); err == nil {
		t.Error("a scheduler without an owner was accepted")
	}
}

func TestLastActivationIsTheSlotCronFiredFor(t *testing.T) {
	at := func(h, m, s, ms int) time.Time { return time.Date(2026, 3, 2, h, m, s, ms*1e6, time.UTC) }
	cases := []struct {
		spec string
		now  time.Time
		want time.Time
	}{
		{"0 8 * * *", at(8, 0, 0, 3), at(8, 0, 0, 0)},
		{"0 8 * * *", at(8, 2, 10, 0), at(8, 0, 0, 0)}, // fired late
		{"*/5 * * * *", at(10, 7, 30, 0), at(10, 5, 0, 0)},
		{"@every 10m", at(10, 27, 0, 1), at(10, 20, 0, 0)},
		{"@weekly", at(10, 0, 0, 0), time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)},
	}
	for _, c := range cases {
		sched, err := parseSpec(c.spec)
		if err != nil {
			t.Fatal(err)
		}
		if got := lastActivation(sched, c.now); !got.Equal(c.want) {
			t.Errorf("%s at %s: slot %s, want %s", c.spec, c.now.Format(time.TimeOnly), got, c.want)
		}
	}
	// @every is aligned: daemons started at different times agree.
	sched, _ := parseSpec("@every 1m")
	if n := sched.Next(at(9, 0, 42, 0)); !n.Equal(at(9, 1, 0, 0)) {
		t.Errorf("@every 1m after 09:00:42: %s", n)
	}
}

// The scheduler fires on its own, and a shutdown lets the running job
// finish: its context is not cancelled while Stop waits.
func TestSchedulerFiresAndStopsGracefully(t *testing.T) {
	st := daemons(t, 1, fakeclock.New(time.Now()))[0]
	reports := make(chan Report, 10)
	started := make(chan struct{}, 10)
	release := make(chan struct{})
	s, err := New(st, Options{Owner: "A", Logger: quiet, OnRun: func(r Report) { reports <- r }})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Add(Job{Name: "slow", Spec: "@every 1s", Run: func(ctx context.Context) error {
		started <- struct{}{}
		<-release
		return ctx.Err()
	}}, true)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	<-started // the test's own timeout guards a scheduler that never fires
	stopped := make(chan error, 1)
	go func() { stopped <- s.Stop(context.Background()) }()
	<-s.stopping
	close(release)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if r := <-reports; r.Outcome != Ran {
		t.Errorf("the job cut short by shutdown: %+v", r)
	}
}

// When the shutdown grace runs out, the job's context is cancelled.
func TestStopCancelsAJobThatOutlastsTheGrace(t *testing.T) {
	st := daemons(t, 1, fakeclock.New(time.Now()))[0]
	started := make(chan struct{}, 10)
	reports := make(chan Report, 10)
	s, err := New(st, Options{Owner: "A", Logger: quiet, OnRun: func(r Report) { reports <- r }})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Add(Job{Name: "stuck", Spec: "@every 1s", Run: func(ctx context.Context) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}}, true)
	s.Start()
	<-started
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Stop(gone); !errors.Is(err, context.Canceled) {
		t.Errorf("stop: %v", err)
	}
	if r := <-reports; r.Outcome != Failed || !errors.Is(r.Err, context.Canceled) {
		t.Errorf("report: %+v", r)
	}
}
