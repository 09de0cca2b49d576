// Package sla holds the bodies of two scheduled jobs: FirstResponse, which
// watches the first-response target of each open ticket (a reminder before
// it, a recorded breach after it), and Digest, the morning message in the
// agents' channel. The job framework (cron, leases, run records) calls
// their Run methods; this package only decides and records.
//
// Targets are measured in business hours (package businesshours) from the
// ticket's creation to the first response of an agent that the customer
// sees (store.Ticket.FirstAgentResponse).
package sla

import (
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/ticketd/ticketd/internal/businesshours"
	"github.com/ticketd/ticketd/store"
)

// DefaultTargets are the first-response targets of the issue: urgent 1 h,
// high 4 h, medium 1 business day, low 3 business days, all in business
// time.
func DefaultTargets() map[store.Priority]businesshours.Span {
	return map[store.Priority]businesshours.Span{
		store.PriorityUrgent: {Dur: time.Hour},
		store.PriorityHigh:   {Dur: 4 * time.Hour},
		store.PriorityMedium: {Days: 1},
		store.PriorityLow:    {Days: 3},
	}
}

// RemindBefore says when a reminder is due: after Fraction of the target's
// business time has passed (0.8 for "80%"), or Before the target (in
// business time) when Fraction is zero.
type RemindBefore struct {
	Fraction float64
	Before   time.Duration
}

// DefaultRemindBefore reminds at 80% of the target.
var DefaultRemindBefore = RemindBefore{Fraction: 0.8}

// ParseRemindBefore reads "80%" (of the target elapsed, 1% to 99%) or a
// duration of business time before the target ("30m").
func ParseRemindBefore(s string) (RemindBefore, error) {
	s = strings.TrimSpace(s)
	if p, ok := strings.CutSuffix(s, "%"); ok {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 || n > 99 {
			return RemindBefore{}, fmt.Errorf("want a percentage of the target from 1%% to 99%%, like 80%%, got %q", s)
		}
		return RemindBefore{Fraction: float64(n) / 100}, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return RemindBefore{}, fmt.Errorf("want a percentage like 80%% or a positive duration like 30m, got %q", s)
	}
	return RemindBefore{Before: d}, nil
}

// Targets computes a ticket's first-response due time and reminder time.
type Targets struct {
	hours  *businesshours.Schedule
	spans  map[store.Priority]businesshours.Span
	remind RemindBefore
}

// NewTargets returns the targets on a schedule; a priority missing from
// spans gets its DefaultTargets value, a zero remind DefaultRemindBefore.
func NewTargets(hours *businesshours.Schedule, spans map[store.Priority]businesshours.Span, remind RemindBefore) *Targets {
	all := DefaultTargets()
	maps.Copy(all, spans)
	if remind == (RemindBefore{}) {
		remind = DefaultRemindBefore
	}
	return &Targets{hours: hours, spans: all, remind: remind}
}

// Hours is the schedule targets are measured on.
func (tg *Targets) Hours() *businesshours.Schedule { return tg.hours }

// length is the ticket's target as business time (an unknown priority
// counts as low).
func (tg *Targets) length(t *store.Ticket) time.Duration {
	sp, ok := tg.spans[t.Priority]
	if !ok {
		sp = tg.spans[store.PriorityLow]
	}
	return tg.hours.Length(sp)
}

// Due is when the ticket must have had its first agent response: its
// target, in business time, after it was created.
func (tg *Targets) Due(t *store.Ticket) time.Time {
	return tg.hours.Add(t.CreatedAt, tg.length(t))
}

// RemindAt is when the ticket's reminder is due.
func (tg *Targets) RemindAt(t *store.Ticket) time.Time {
	n := tg.length(t)
	if tg.remind.Fraction > 0 {
		return tg.hours.Add(t.CreatedAt, time.Duration(float64(n)*tg.remind.Fraction))
	}
	return tg.hours.Add(t.CreatedAt, max(0, n-tg.remind.Before))
}
