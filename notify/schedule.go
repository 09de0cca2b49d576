package notify

import "time"

// Schedule is a sink's delivery schedule as an operator configures it: the
// retry and lease settings of its Runner, under the same yaml keys for every
// sink (email.outbound, slack.delivery). The zero value of every field is
// its documented default; the defaults and checks are Options' own.
type Schedule struct {
	// MaxAttempts is how many failed sends move a delivery to the dead
	// letters. Default 8.
	MaxAttempts int `yaml:"maxAttempts"`
	// BackoffBase is the wait after the first failure; it doubles with
	// every further failure (with up to 50% jitter). Default 30s.
	BackoffBase time.Duration `yaml:"backoffBase"`
	// BackoffMax caps the wait between attempts. Default 1h.
	BackoffMax time.Duration `yaml:"backoffMax"`
	// Lease is how long a claimed delivery is ours: after a crash another
	// sender retries it when the lease ends. Default 2m.
	Lease time.Duration `yaml:"lease"`
	// PollInterval is how often the queue is checked without a signal, for
	// retries scheduled by other daemons and expired leases. Default 30s.
	PollInterval time.Duration `yaml:"pollInterval"`
	// ShutdownGrace is how long a send in flight may still run after Run's
	// context ends before it is aborted (and retried later). Default 10s.
	ShutdownGrace time.Duration `yaml:"shutdownGrace"`
}

// Options are the Runner's options for sink on this schedule, zero values
// left for WithDefaults (or NewRunner) to fill. Validate's errors name the
// settings by their yaml keys.
func (s Schedule) Options(sink string) Options {
	return Options{
		Sink: sink, MaxAttempts: s.MaxAttempts, BackoffBase: s.BackoffBase, BackoffMax: s.BackoffMax,
		Lease: s.Lease, PollInterval: s.PollInterval, ShutdownGrace: s.ShutdownGrace,
	}
}

// WithDefaults returns s with every zero value replaced by the Runner's
// default (Options.WithDefaults, the one place they are kept).
func (s Schedule) WithDefaults() Schedule {
	o := s.Options("").WithDefaults()
	return Schedule{
		MaxAttempts: o.MaxAttempts, BackoffBase: o.BackoffBase, BackoffMax: o.BackoffMax,
		Lease: o.Lease, PollInterval: o.PollInterval, ShutdownGrace: o.ShutdownGrace,
	}
}
