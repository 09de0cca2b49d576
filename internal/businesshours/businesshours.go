// Package businesshours does the arithmetic of working time: the same
// opening hours on each working day of the week, in one time zone. It
// measures real elapsed time inside the opening hours, so a day on which
// the clocks change inside the hours is an hour shorter or longer, like the
// agents' day; a change outside them (the usual 02:00 or 03:00) changes
// nothing. Holidays are not known.
package businesshours

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Schedule is a week of opening hours. Make it with New; it is immutable
// and safe for concurrent use.
type Schedule struct {
	loc  *time.Location
	days [7]bool // by time.Weekday
	// open and close are wall-clock offsets from midnight; close may be 24h.
	open, close time.Duration
}

// New returns the schedule open from start to end ("09:00", "17:30"; end
// may be "24:00") on days, in the zone loc.
func New(loc *time.Location, days []time.Weekday, start, end string) (*Schedule, error) {
	if loc == nil {
		return nil, errors.New("business hours: no time zone")
	}
	s := &Schedule{loc: loc}
	var errs []error
	if len(days) == 0 {
		errs = append(errs, errors.New("business hours: no working day"))
	}
	for _, d := range days {
		if d < time.Sunday || d > time.Saturday {
			errs = append(errs, fmt.Errorf("business hours: weekday %d", int(d)))
			continue
		}
		s.days[d] = true
	}
	var err error
	if s.open, err = ParseClock(start); err != nil {
		errs = append(errs, fmt.Errorf("business hours: start: %w", err))
	}
	if s.close, err = ParseClock(end); err != nil {
		errs = append(errs, fmt.Errorf("business hours: end: %w", err))
	}
	if len(errs) == 0 && s.close <= s.open {
		errs = append(errs, fmt.Errorf("business hours: end %s is not after start %s", end, start))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// ParseClock reads "HH:MM" (00:00 to 24:00) as an offset from midnight.
func ParseClock(s string) (time.Duration, error) {
	h, m, ok := strings.Cut(strings.TrimSpace(s), ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || len(m) != 2 || hh < 0 || mm < 0 || mm > 59 || hh > 24 || (hh == 24 && mm != 0) {
		return 0, fmt.Errorf("want a time of day like 09:00 (00:00 to 24:00), got %q", s)
	}
	return time.Duration(hh)*time.Hour + time.Duration(mm)*time.Minute, nil
}

// ParseWeekday reads an English weekday name or its first three letters,
// in any case ("mon", "Monday").
func ParseWeekday(s string) (time.Weekday, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	for d := time.Sunday; d <= time.Saturday; d++ {
		name := strings.ToLower(d.String())
		if s == name || s == name[:3] {
			return d, nil
		}
	}
	return 0, fmt.Errorf("want a weekday like mon or monday, got %q", s)
}

// Location is the schedule's time zone.
func (s *Schedule) Location() *time.Location { return s.loc }

// DayLength is one business day: the opening hours of one working day, as
// the wall clock counts them.
func (s *Schedule) DayLength() time.Duration { return s.close - s.open }

// maxDays bounds every walk over the calendar: ten years. A valid schedule
// has a working day each week, so only a span of years of business time
// gets near it.
const maxDays = 3660

// hours returns the opening interval of the working day that holds the
// calendar date of t (in the schedule's zone); ok=false on a day off.
func (s *Schedule) hours(y int, m time.Month, d int) (open, close time.Time, ok bool) {
	day := time.Date(y, m, d, 0, 0, 0, 0, s.loc)
	if !s.days[day.Weekday()] {
		return time.Time{}, time.Time{}, false
	}
	return s.at(y, m, d, s.open), s.at(y, m, d, s.close), true
}

// at is the instant of a wall-clock offset on a date. On a date whose
// clocks skip that time, time.Date moves it past the gap; 24:00 is the
// next day's midnight.
func (s *Schedule) at(y int, m time.Month, d int, off time.Duration) time.Time {
	return time.Date(y, m, d, int(off/time.Hour), int(off%time.Hour/time.Minute), 0, 0, s.loc)
}

// Add returns the instant when d of business time has passed after t: t
// itself for d <= 0, else the moment inside opening hours where the
// count reaches d. Time before the first opening after t does not count,
// so a ticket created on Saturday starts counting on Monday morning.
func (s *Schedule) Add(t time.Time, d time.Duration) time.Time {
	if d <= 0 {
		return t
	}
	lt := t.In(s.loc)
	y, m, day := lt.Date()
	for i := 0; i < maxDays; i++ {
		open, close, ok := s.hours(y, m, day+i)
		if !ok || !t.Before(close) {
			continue
		}
		from := open
		if t.After(open) {
			from = t
		}
		left := close.Sub(from)
		if d <= left {
			return from.Add(d)
		}
		d -= left
	}
	return lt.AddDate(0, 0, maxDays) // beyond any target: never due in practice
}

// Between returns the business time from a to b (0 when b is not after a).
func (s *Schedule) Between(a, b time.Time) time.Duration {
	if !b.After(a) {
		return 0
	}
	la := a.In(s.loc)
	y, m, day := la.Date()
	var sum time.Duration
	for i := 0; i < maxDays; i++ {
		open, close, ok := s.hours(y, m, day+i)
		if !ok {
			continue
		}
		if !open.Before(b) {
			break
		}
		from, to := open, close
		if a.After(from) {
			from = a
		}
		if b.Before(to) {
			to = b
		}
		if to.After(from) {
			sum += to.Sub(from)
		}
	}
	return sum
}

// Open reports whether t lies inside opening hours (closing time itself
// does not).
func (s *Schedule) Open(t time.Time) bool {
	y, m, d := t.In(s.loc).Date()
	open, close, ok := s.hours(y, m, d)
	return ok && !t.Before(open) && t.Before(close)
}

// Span is a length of business time: whole business days (each
// DayLength long) plus a duration of business time.
type Span struct {
	Days int
	Dur  time.Duration
}

// ParseSpan reads "3d" (business days) or a Go duration of business time
// ("1h", "90m", "4h30m"). It must be positive.
func ParseSpan(s string) (Span, error) {
	s = strings.TrimSpace(s)
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 1 || days > 365 {
			return Span{}, fmt.Errorf("want business days like 3d (1d to 365d), got %q", s)
		}
		return Span{Days: days}, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return Span{}, fmt.Errorf("want a positive duration like 4h or a number of business days like 3d, got %q", s)
	}
	return Span{Dur: d}, nil
}

// String is the span as ParseSpan reads it.
func (sp Span) String() string {
	switch {
	case sp.Days > 0 && sp.Dur > 0:
		return strconv.Itoa(sp.Days) + "d+" + sp.Dur.String()
	case sp.Days > 0:
		return strconv.Itoa(sp.Days) + "d"
	}
	return sp.Dur.String()
}

// Length is the span as business time on this schedule.
func (s *Schedule) Length(sp Span) time.Duration {
	return time.Duration(sp.Days)*s.DayLength() + sp.Dur
}
