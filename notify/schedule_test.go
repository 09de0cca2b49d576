package notify

import (
	"testing"
	"time"
)

// Every setting lands in its own Options field, and WithDefaults keeps what
// is set while filling only the zero values with the runner's defaults.
func TestScheduleFillsOptions(t *testing.T) {
	s := Schedule{MaxAttempts: 3, BackoffBase: 1 * time.Second, BackoffMax: 2 * time.Second,
		Lease: 3 * time.Second, PollInterval: 4 * time.Second, ShutdownGrace: 5 * time.Second}
	o := s.Options("x")
	if o.Sink != "x" || o.MaxAttempts != 3 || o.BackoffBase != time.Second || o.BackoffMax != 2*time.Second ||
		o.Lease != 3*time.Second || o.PollInterval != 4*time.Second || o.ShutdownGrace != 5*time.Second {
		t.Errorf("Options %+v from %+v", o, s)
	}
	if got := s.WithDefaults(); got != s {
		t.Errorf("WithDefaults changed set values: %+v", got)
	}
	want := Schedule{MaxAttempts: 8, BackoffBase: 30 * time.Second, BackoffMax: time.Hour,
		Lease: 2 * time.Minute, PollInterval: 30 * time.Second, ShutdownGrace: DefaultShutdownGrace}
	if got := (Schedule{}).WithDefaults(); got != want {
		t.Errorf("defaults %+v, want %+v", got, want)
	}
	if err := s.Options("x").Validate(); err != nil {
		t.Errorf("valid schedule: %v", err)
	}
	if err := (Schedule{PollInterval: -1}).Options("x").Validate(); err == nil {
		t.Error("negative pollInterval accepted")
	}
}
