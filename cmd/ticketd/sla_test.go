package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/ticketd/ticketd/internal/slackfake"
	"github.com/ticketd/ticketd/store/storetest"
)

func validateSLA(c SLAJobsConfig, slackEnabled bool) []string {
	var errs []string
	c.validate(func(key, format string, args ...any) { errs = append(errs, key+": "+fmt.Sprintf(format, args...)) }, "jobs.", slackEnabled)
	return errs
}

// Every bad key is reported with its path, at once.
func TestSLAConfigReportsEveryBadKey(t *testing.T) {
	c := defaultSLAJobsConfig()
	c.BusinessHours = BusinessHoursConfig{TimeZone: "Mars/Olympus", Days: []string{"mon"}, Start: "09:00", End: "17:00"}
	c.FirstResponse = FirstResponseJobConfig{Enabled: true, Schedule: "every now and then",
		Targets:      FirstResponseTargets{Urgent: "soon", High: "4h", Medium: "0d", Low: "3d"},
		RemindBefore: "120%", EscalationChannel: "#escalations", Batch: 0}
	c.Digest = DigestJobConfig{Enabled: true, Schedule: "0 25 * * *", PerSection: 0, MaxTickets: -1}
	got := strings.Join(validateSLA(c, false), "\n")
	for _, key := range []string{"jobs.businessHours: timeZone", "jobs.firstResponse.schedule", "jobs.firstResponse.targets.urgent",
		"jobs.firstResponse.targets.medium", "jobs.firstResponse.remindBefore", "jobs.firstResponse.escalationChannel: must be",
		"jobs.firstResponse.batch", "jobs.digest.schedule", "jobs.digest.enabled", "jobs.digest.perSection", "jobs.digest.maxTickets"} {
		if !strings.Contains(got, key) {
			t.Errorf("no error for %s in:\n%s", key, got)
		}
	}
	if strings.Contains(got, "targets.high") || strings.Contains(got, "targets.low") {
		t.Errorf("valid targets reported:\n%s", got)
	}
	c = defaultSLAJobsConfig()
	c.BusinessHours.Days = []string{"someday"}
	c.BusinessHours.End = "08:00"
	if got := validateSLA(c, true); len(got) != 1 || !strings.Contains(got[0], "jobs.businessHours: days") {
		t.Errorf("bad days: %v", got)
	}
}

// The wiring builds the enabled jobs: their names and specs (the digest's
// in the office's zone), runnable on a store and the fake Slack.
func TestBuildSLAJobs(t *testing.T) {
	ctx := context.Background()
	st := storetest.Open(t)
	f := slackfake.New(t)
	client := slack.New(slackfake.BotToken, slack.OptionAPIURL(f.APIURL()))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var noSlack *slackDesk
	if noSlack.slackPoster() != nil {
		t.Error("a poster without Slack")
	}
	c := defaultSLAJobsConfig()
	off, err := buildSLAJobs(c, slackfake.ChannelID, st, client, time.Now, log)
	if err != nil || len(off.Jobs) != 0 {
		t.Fatalf("all off: %+v, %v", off, err)
	}
	c.BusinessHours.TimeZone = "Europe/Berlin"
	c.FirstResponse.Enabled, c.Digest.Enabled = true, true
	c.FirstResponse.EscalationChannel = "C0ESCALATE"
	if c.EscalationChannel() != "C0ESCALATE" {
		t.Errorf("escalation channel %q", c.EscalationChannel())
	}
	on, err := buildSLAJobs(c, slackfake.ChannelID, st, client, time.Now, log)
	if err != nil {
		t.Fatal(err)
	}
	var specs []string
	for _, j := range on.Jobs {
		specs = append(specs, j.Name+" "+j.Spec)
		if err := j.Run(ctx); err != nil {
			t.Errorf("%s: %v", j.Name, err)
		}
	}
	if want := []string{"first-response */5 * * * *", "digest CRON_TZ=Europe/Berlin 0 8 * * 1-5"}; !reflect.DeepEqual(specs, want) {
		t.Errorf("jobs %q, want %q", specs, want)
	}
	if n := len(f.CallsTo("chat.postMessage")); n != 1 {
		t.Errorf("the digest made %d posts, want 1", n)
	}
	c.FirstResponse.RemindBefore = "never"
	if _, err := buildSLAJobs(c, slackfake.ChannelID, st, client, time.Now, log); err == nil || !strings.Contains(err.Error(), "remindBefore") {
		t.Errorf("bad remindBefore built: %v", err)
	}
}
