// Package fakeclock is a manual clock for tests of code that sleeps: the
// code under test takes Now and After from it, and the test moves time with
// Advance instead of sleeping itself.
package fakeclock

import (
	"sync"
	"time"
)

// Clock is a manual clock. The zero value is not usable; use New.
type Clock struct {
	mu       sync.Mutex
	now      time.Time
	sleepers []sleeper
}

type sleeper struct {
	at time.Time
	ch chan time.Time
}

// New returns a clock set to start.
func New(start time.Time) *Clock {
	return &Clock{now: start}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After is time.After on this clock: the channel receives once Advance
// reaches now+d (at once for d <= 0).
func (c *Clock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.sleepers = append(c.sleepers, sleeper{at: c.now.Add(d), ch: ch})
	return ch
}

// Advance moves the clock forward and fires every After that came due.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.sleepers[:0]
	for _, s := range c.sleepers {
		if s.at.After(c.now) {
			kept = append(kept, s)
		} else {
			s.ch <- c.now
		}
	}
	clear(c.sleepers[len(kept):])
	c.sleepers = kept
}

// Sleepers returns how many After channels wait for a later time: a test
// can wait for the code under test to be asleep before it moves time.
func (c *Clock) Sleepers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.sleepers)
}
