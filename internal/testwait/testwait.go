// Package testwait lets tests wait for the event they expect instead of
// sleeping for a time that is too long on a quiet machine and too short on
// a busy one.
package testwait

import (
	"testing"
	"time"
)

// Timeout is how long For waits before failing the test. It is a limit
// for a test that hangs, not a pace: a passing test waits only as long as
// the condition takes.
const Timeout = 30 * time.Second

// pollInterval is how often For checks the condition.
const pollInterval = 10 * time.Millisecond

// For checks cond until it holds, and fails the test (naming what it was
// waiting for) if it still does not after Timeout.
func For(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if cond() {
		return
	}
	deadline := time.NewTimer(Timeout)
	defer deadline.Stop()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		select {
		case <-deadline.C:
			if cond() {
				return
			}
			t.Fatalf("timed out after %s waiting for %s", Timeout, what)
		case <-tick.C:
			if cond() {
				return
			}
		}
	}
}
