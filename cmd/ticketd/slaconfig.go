package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/ticketd/ticketd/internal/businesshours"
	"github.com/ticketd/ticketd/internal/sla"
	"github.com/ticketd/ticketd/store"
)

// SLAJobsConfig holds the keys of the first-response and digest jobs
// (issue 10). They belong in the jobs: section, beside the other jobs'
// keys: jobs.businessHours, jobs.firstResponse, jobs.digest.
type SLAJobsConfig struct {
	// BusinessHours are the office hours first-response targets count in,
	// and whose zone tells the digest which day it is.
	BusinessHours BusinessHoursConfig `yaml:"businessHours"`
	// FirstResponse watches each open ticket's first-response target.
	FirstResponse FirstResponseJobConfig `yaml:"firstResponse"`
	// Digest is the morning message in the agents' Slack channel.
	Digest DigestJobConfig `yaml:"digest"`
}

// BusinessHoursConfig is one week of office hours in one zone.
type BusinessHoursConfig struct {
	// TimeZone is an IANA zone name (Europe/Berlin, America/New_York, UTC).
	TimeZone string `yaml:"timeZone"`
	// Days are the working days: mon, tue, ... (or full names).
	Days []string `yaml:"days"`
	// Start and End are the opening hours of each working day, HH:MM
	// (End may be 24:00).
	Start string `yaml:"start"`
	End   string `yaml:"end"`
}

// FirstResponseJobConfig configures the first-response job.
type FirstResponseJobConfig struct {
	Enabled bool `yaml:"enabled"`
	// Schedule is a cron spec (robfig/cron, 5 fields, CRON_TZ= allowed).
	Schedule string `yaml:"schedule"`
	// Targets per priority: business hours ("4h") or business days ("3d",
	// a day being one day of BusinessHours).
	Targets FirstResponseTargets `yaml:"targets"`
	// RemindBefore is when the reminder goes out: a share of the target
	// elapsed ("80%") or business time left before it ("30m").
	RemindBefore string `yaml:"remindBefore"`
	// EscalationChannel is the Slack channel ID missed targets are posted
	// to besides the ticket's thread; empty: the thread only.
	EscalationChannel string `yaml:"escalationChannel"`
	// Batch bounds the tickets one run looks at, oldest first.
	Batch int `yaml:"batch"`
}

// FirstResponseTargets are the targets by priority.
type FirstResponseTargets struct {
	Urgent string `yaml:"urgent"`
	High   string `yaml:"high"`
	Medium string `yaml:"medium"`
	Low    string `yaml:"low"`
}

// DigestJobConfig configures the morning digest.
type DigestJobConfig struct {
	Enabled bool `yaml:"enabled"`
	// Schedule is a cron spec; without CRON_TZ= it is read in
	// BusinessHours' zone.
	Schedule string `yaml:"schedule"`
	// PerSection bounds the tickets listed in each section.
	PerSection int `yaml:"perSection"`
	// MaxTickets bounds the open tickets read for one digest.
	MaxTickets int `yaml:"maxTickets"`
}

func defaultSLAJobsConfig() SLAJobsConfig {
	return SLAJobsConfig{
		BusinessHours: BusinessHoursConfig{TimeZone: "UTC", Days: []string{"mon", "tue", "wed", "thu", "fri"}, Start: "09:00", End: "17:00"},
		FirstResponse: FirstResponseJobConfig{
			Schedule:     "*/5 * * * *",
			Targets:      FirstResponseTargets{Urgent: "1h", High: "4h", Medium: "1d", Low: "3d"},
			RemindBefore: "80%", Batch: sla.DefaultBatch,
		},
		Digest: DigestJobConfig{Schedule: "0 8 * * 1-5", PerSection: sla.DefaultPerSection, MaxTickets: sla.DefaultMaxTickets},
	}
}

// validate reports every bad key under prefix ("jobs."). slackEnabled
// says whether the Slack bridge is on: the digest needs it.
func (c *SLAJobsConfig) validate(bad func(key, format string, args ...any), prefix string, slackEnabled bool) {
	if _, err := c.BusinessHours.schedule(); err != nil {
		for _, l := range errLines(err) {
			bad(prefix+"businessHours", "%s", strings.TrimPrefix(strings.TrimSpace(l), "business hours: "))
		}
	}
	fr := &c.FirstResponse
	checkSpec(bad, prefix+"firstResponse.schedule", fr.Schedule)
	targets := fr.Targets.byPriority()
	for _, p := range store.Priorities {
		if _, err := businesshours.ParseSpan(targets[p]); err != nil {
			bad(prefix+"firstResponse.targets."+string(p), "%v", err)
		}
	}
	if _, err := sla.ParseRemindBefore(fr.RemindBefore); err != nil {
		bad(prefix+"firstResponse.remindBefore", "%v", err)
	}
	if fr.EscalationChannel != "" && !slackChannelID.MatchString(fr.EscalationChannel) {
		bad(prefix+"firstResponse.escalationChannel", "must be empty or a channel ID like C0123456789, got %q", fr.EscalationChannel)
	}
	if fr.Enabled && fr.EscalationChannel != "" && !slackEnabled {
		bad(prefix+"firstResponse.escalationChannel", "needs slack.enabled: true")
	}
	if fr.Batch < 1 || fr.Batch > 100000 {
		bad(prefix+"firstResponse.batch", "must be from 1 to 100000, got %d", fr.Batch)
	}
	dg := &c.Digest
	checkSpec(bad, prefix+"digest.schedule", c.digestSpec())
	if dg.Enabled && !slackEnabled {
		bad(prefix+"digest.enabled", "the digest is posted in Slack: it needs slack.enabled: true")
	}
	if dg.PerSection < 1 || dg.PerSection > 30 {
		bad(prefix+"digest.perSection", "must be from 1 to 30 (one Slack section holds about 30 lines), got %d", dg.PerSection)
	}
	if dg.MaxTickets < 1 || dg.MaxTickets > 100000 {
		bad(prefix+"digest.maxTickets", "must be from 1 to 100000, got %d", dg.MaxTickets)
	}
}

func checkSpec(bad func(key, format string, args ...any), key, spec string) {
	if _, err := cron.ParseStandard(spec); err != nil {
		bad(key, "must be a cron spec like \"*/5 * * * *\" or \"CRON_TZ=Europe/Berlin 0 8 * * 1-5\": %v", err)
	}
}

// digestSpec is the digest's schedule, read in the business-hours zone
// unless it names its own.
func (c *SLAJobsConfig) digestSpec() string {
	spec := strings.TrimSpace(c.Digest.Schedule)
	if strings.HasPrefix(spec, "CRON_TZ=") || strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "@") {
		return spec
	}
	return "CRON_TZ=" + c.BusinessHours.TimeZone + " " + spec
}

// EscalationChannel is the channel the Slack sink posts missed targets
// to (slackout.Options.EscalationChannel): empty unless the first-response
// job is on.
func (c *SLAJobsConfig) EscalationChannel() string {
	if !c.FirstResponse.Enabled {
		return ""
	}
	return c.FirstResponse.EscalationChannel
}

func (t FirstResponseTargets) byPriority() map[store.Priority]string {
	return map[store.Priority]string{
		store.PriorityUrgent: t.Urgent, store.PriorityHigh: t.High, store.PriorityMedium: t.Medium, store.PriorityLow: t.Low,
	}
}

// schedule compiles the office hours.
func (b BusinessHoursConfig) schedule() (*businesshours.Schedule, error) {
	loc, err := time.LoadLocation(b.TimeZone)
	if err != nil || b.TimeZone == "" {
		return nil, fmt.Errorf("timeZone: want an IANA zone like Europe/Berlin or UTC, got %q", b.TimeZone)
	}
	var days []time.Weekday
	for _, d := range b.Days {
		wd, err := businesshours.ParseWeekday(d)
		if err != nil {
			return nil, fmt.Errorf("days: %w", err)
		}
		days = append(days, wd)
	}
	return businesshours.New(loc, days, b.Start, b.End)
}

// targets compiles the first-response targets (after validate).
func (c *SLAJobsConfig) targets() (*sla.Targets, error) {
	hours, err := c.BusinessHours.schedule()
	if err != nil {
		return nil, fmt.Errorf("jobs.businessHours: %w", err)
	}
	spans := map[store.Priority]businesshours.Span{}
	for p, v := range c.FirstResponse.Targets.byPriority() {
		if spans[p], err = businesshours.ParseSpan(v); err != nil {
			return nil, fmt.Errorf("jobs.firstResponse.targets.%s: %w", p, err)
		}
	}
	remind, err := sla.ParseRemindBefore(c.FirstResponse.RemindBefore)
	if err != nil {
		return nil, fmt.Errorf("jobs.firstResponse.remindBefore: %w", err)
	}
	return sla.NewTargets(hours, spans, remind), nil
}
