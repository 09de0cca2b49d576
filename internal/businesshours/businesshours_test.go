package businesshours

import (
	"testing"
	"time"
)

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

var weekdays = []time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday}

func TestAdd(t *testing.T) {
	berlin := mustZone(t, "Europe/Berlin")
	ny := mustZone(t, "America/New_York")
	nineToFive, err := New(berlin, weekdays, "09:00", "17:00")
	if err != nil {
		t.Fatal(err)
	}
	sunToThu, err := New(ny, []time.Weekday{time.Sunday, time.Monday, time.Tuesday, time.Wednesday, time.Thursday}, "08:30", "12:00")
	if err != nil {
		t.Fatal(err)
	}
	// Open all day: Berlin's clocks skip 02:00-03:00 on Sunday 2026-03-29
	// inside the hours, so that business day has 23 real hours.
	allDay, err := New(berlin, []time.Weekday{time.Sunday, time.Monday}, "00:00", "24:00")
	if err != nil {
		t.Fatal(err)
	}
	b := func(y int, m time.Month, d, hh, mm int) time.Time { return time.Date(y, m, d, hh, mm, 0, 0, berlin) }
	n := func(y int, m time.Month, d, hh, mm int) time.Time { return time.Date(y, m, d, hh, mm, 0, 0, ny) }
	// 2026-12-01 is a Tuesday.
	for _, c := range []struct {
		name string
		s    *Schedule
		from time.Time
		add  time.Duration
		want time.Time
	}{
		{"inside hours, same day", nineToFive, b(2026, 12, 1, 10, 0), time.Hour, b(2026, 12, 1, 11, 0)},
		{"ending exactly at closing", nineToFive, b(2026, 12, 1, 16, 0), time.Hour, b(2026, 12, 1, 17, 0)},
		{"spills into the next morning", nineToFive, b(2026, 12, 1, 16, 0), 4 * time.Hour, b(2026, 12, 2, 12, 0)},
		{"created before opening", nineToFive, b(2026, 12, 1, 6, 15), time.Hour, b(2026, 12, 1, 10, 0)},
		{"created after closing", nineToFive, b(2026, 12, 1, 21, 0), time.Hour, b(2026, 12, 2, 10, 0)},
		{"created on Saturday", nineToFive, b(2026, 12, 5, 11, 0), time.Hour, b(2026, 12, 7, 10, 0)},
		{"Friday afternoon over the weekend", nineToFive, b(2026, 12, 4, 15, 0), 4 * time.Hour, b(2026, 12, 7, 11, 0)},
		{"one business day", nineToFive, b(2026, 12, 1, 10, 0), 8 * time.Hour, b(2026, 12, 2, 10, 0)},
		{"three business days from Thursday", nineToFive, b(2026, 12, 3, 13, 0), 24 * time.Hour, b(2026, 12, 8, 13, 0)},
		{"UTC input, Berlin hours", nineToFive, time.Date(2026, 12, 1, 8, 30, 0, 0, time.UTC), time.Hour, b(2026, 12, 1, 10, 30)},
		{"zero adds nothing", nineToFive, b(2026, 12, 5, 11, 0), 0, b(2026, 12, 5, 11, 0)},
		// Berlin goes to summer time on Sunday 2026-03-29: Friday 16:00 +
		// 4h is Monday 12:00 local (the change is outside hours).
		{"weekend with a DST change", nineToFive, b(2026, 3, 27, 16, 0), 4 * time.Hour, b(2026, 3, 30, 12, 0)},
		{"DST back in autumn", nineToFive, b(2026, 10, 23, 16, 0), 4 * time.Hour, b(2026, 10, 26, 12, 0)},
		// Inside the hours: Sunday 2026-03-29 has 23 real hours.
		{"DST change inside the hours", allDay, b(2026, 3, 29, 0, 0), 23 * time.Hour, b(2026, 3, 30, 0, 0)},
		{"other zone and week", sunToThu, n(2026, 12, 3, 11, 0), 2 * time.Hour, n(2026, 12, 6, 9, 30)},
		{"US DST change (2026-11-01, a Sunday)", sunToThu, n(2026, 10, 29, 11, 30), time.Hour, n(2026, 11, 1, 9, 0)},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := c.s.Add(c.from, c.add)
			if !got.Equal(c.want) {
				t.Errorf("Add(%v, %v) = %v, want %v", c.from, c.add, got.In(c.s.loc), c.want)
			}
			if c.add > 0 {
				if back := c.s.Between(c.from, got); back != c.add {
					t.Errorf("Between(%v, %v) = %v, want %v", c.from, got, back, c.add)
				}
			}
		})
	}
}

func TestBetweenAndOpen(t *testing.T) {
	berlin := mustZone(t, "Europe/Berlin")
	s, err := New(berlin, weekdays, "09:00", "17:00")
	if err != nil {
		t.Fatal(err)
	}
	b := func(d, hh, mm int) time.Time { return time.Date(2026, 12, d, hh, mm, 0, 0, berlin) }
	if got := s.Between(b(4, 16, 0), b(7, 10, 0)); got != 2*time.Hour {
		t.Errorf("Friday 16:00 to Monday 10:00: %v, want 2h", got)
	}
	if got := s.Between(b(5, 0, 0), b(6, 23, 0)); got != 0 {
		t.Errorf("a weekend: %v, want 0", got)
	}
	if got := s.Between(b(7, 10, 0), b(4, 16, 0)); got != 0 {
		t.Errorf("backwards: %v, want 0", got)
	}
	for _, c := range []struct {
		at   time.Time
		want bool
	}{{b(1, 9, 0), true}, {b(1, 16, 59), true}, {b(1, 17, 0), false}, {b(1, 8, 59), false}, {b(5, 12, 0), false}} {
		if got := s.Open(c.at); got != c.want {
			t.Errorf("Open(%v) = %v, want %v", c.at, got, c.want)
		}
	}
	if s.DayLength() != 8*time.Hour {
		t.Errorf("day length %v", s.DayLength())
	}
}

func TestNewRefusesBadSchedules(t *testing.T) {
	for _, c := range []struct {
		days       []time.Weekday
		start, end string
	}{
		{nil, "09:00", "17:00"},
		{weekdays, "17:00", "09:00"},
		{weekdays, "9", "17:00"},
		{weekdays, "09:00", "24:30"},
		{weekdays, "09:60", "17:00"},
		{[]time.Weekday{7}, "09:00", "17:00"},
	} {
		if _, err := New(time.UTC, c.days, c.start, c.end); err == nil {
			t.Errorf("New(%v, %q, %q) accepted", c.days, c.start, c.end)
		}
	}
	if _, err := New(time.UTC, weekdays, "00:00", "24:00"); err != nil {
		t.Errorf("a whole day: %v", err)
	}
}

func TestParseSpanAndWeekday(t *testing.T) {
	for in, want := range map[string]Span{"1h": {Dur: time.Hour}, "3d": {Days: 3}, " 90m ": {Dur: 90 * time.Minute}} {
		got, err := ParseSpan(in)
		if err != nil || got != want {
			t.Errorf("ParseSpan(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0h", "-1h", "0d", "1.5d", "d", "1w"} {
		if _, err := ParseSpan(bad); err == nil {
			t.Errorf("ParseSpan(%q) accepted", bad)
		}
	}
	s, _ := New(time.UTC, weekdays, "09:00", "17:30")
	if got := s.Length(Span{Days: 2, Dur: time.Hour}); got != 18*time.Hour {
		t.Errorf("2 days + 1h of 8.5h days = %v", got)
	}
	for in, want := range map[string]time.Weekday{"mon": time.Monday, "Sunday": time.Sunday, "SAT": time.Saturday} {
		if got, err := ParseWeekday(in); err != nil || got != want {
			t.Errorf("ParseWeekday(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseWeekday("mo"); err == nil {
		t.Error("ParseWeekday(mo) accepted")
	}
}
