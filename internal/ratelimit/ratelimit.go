// Package ratelimit caps how many new tickets one writer may open per
// window: shared by the ways in (mail senders, Slack users).
package ratelimit

import (
	"strings"
	"sync"
	"time"
)

// Limiter caps how many tickets one sender may open per window, with a
// sliding window kept in memory. It is deliberately not persisted: after a
// restart a sender starts afresh, which errs on the side of opening tickets.
type Limiter struct {
	limit  int // <= 0: unlimited
	window time.Duration
	now    func() time.Time

	mu    sync.Mutex
	seen  map[string][]time.Time
	calls int
}

// New returns a Limiter of limit tickets per window (<= 0: unlimited); now
// nil means time.Now.
func New(limit int, window time.Duration, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{limit: limit, window: window, now: now, seen: make(map[string][]time.Time)}
}

// Allow reports whether sender may open one more ticket now, and if so
// counts it.
func (r *Limiter) Allow(sender string) bool {
	if r.limit <= 0 {
		return true
	}
	sender = strings.ToLower(sender) // mail addresses match in any case
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.calls%1024 == 0 {
		r.gcLocked(now)
	}
	ts := r.pruneLocked(sender, now)
	if len(ts) >= r.limit {
		return false
	}
	r.seen[sender] = append(ts, now)
	return true
}

// Refund takes back the last Allow of sender: the message did not open a
// ticket after all (it had opened one before a crash, say).
func (r *Limiter) Refund(sender string) {
	if r.limit <= 0 {
		return
	}
	sender = strings.ToLower(sender) // mail addresses match in any case
	r.mu.Lock()
	defer r.mu.Unlock()
	if ts := r.seen[sender]; len(ts) > 0 {
		r.seen[sender] = ts[:len(ts)-1]
	}
}

func (r *Limiter) pruneLocked(sender string, now time.Time) []time.Time {
	ts := r.seen[sender]
	i := 0
	for i < len(ts) && now.Sub(ts[i]) >= r.window {
		i++
	}
	ts = ts[i:]
	if len(ts) == 0 {
		delete(r.seen, sender)
		return nil
	}
	r.seen[sender] = ts
	return ts
}

func (r *Limiter) gcLocked(now time.Time) {
	for s := range r.seen {
		r.pruneLocked(s, now)
	}
}
