package main

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/slack-go/slack"

	"github.com/ticketd/ticketd/internal/jobs"
	"github.com/ticketd/ticketd/internal/sla"
	"github.com/ticketd/ticketd/store"
)

// Proven here, where every package is known.
var (
	_ sla.FirstResponseStore = (*store.Store)(nil)
	_ sla.DigestStore        = (*store.Store)(nil)
	_ sla.Poster             = (*slack.Client)(nil)
)

// Job names of the first-response and digest jobs.
const (
	jobFirstResponse = "first-response"
	jobDigest        = "digest"
)

// slaJobs are the enabled first-response and digest jobs of this daemon
// (the zero value: none).
type slaJobs struct {
	Jobs []jobs.Job
	// firstResponse is nil when that job is off.
	firstResponse *sla.FirstResponse
}

// buildSLAJobs builds the enabled jobs from validated configuration.
// agentsChannel is slack.channel; api is the Slack bot's client (nil when
// Slack is off: the digest is then off too, validate says so). now is the
// clock (time.Now in the daemon).
func buildSLAJobs(c SLAJobsConfig, agentsChannel string, st *store.Store, api sla.Poster, now func() time.Time, log *slog.Logger) (*slaJobs, error) {
	out := &slaJobs{}
	if !c.FirstResponse.Enabled && !c.Digest.Enabled {
		return out, nil
	}
	targets, err := c.targets()
	if err != nil {
		return nil, err
	}
	if c.FirstResponse.Enabled {
		fr, err := sla.NewFirstResponse(st, sla.FirstResponseOptions{Targets: targets, Batch: c.FirstResponse.Batch, Now: now, Logger: log})
		if err != nil {
			return nil, err
		}
		out.firstResponse = fr
		out.Jobs = append(out.Jobs, jobs.Job{Name: jobFirstResponse, Spec: c.FirstResponse.Schedule, Run: fr.Run})
	}
	if c.Digest.Enabled {
		dg, err := sla.NewDigest(st, api, sla.DigestOptions{
			Channel: agentsChannel, Targets: targets, PerSection: c.Digest.PerSection, MaxTickets: c.Digest.MaxTickets, Now: now, Logger: log,
		})
		if err != nil {
			return nil, err
		}
		out.Jobs = append(out.Jobs, jobs.Job{Name: jobDigest, Spec: c.digestSpec(), Run: dg.Run})
	}
	return out, nil
}

// register adds the first-response counters to /metrics (when the job is
// on): reminders queued, breaches recorded, and older tickets found
// answered, by this daemon.
func (j *slaJobs) register(reg prometheus.Registerer) {
	if j == nil || j.firstResponse == nil {
		return
	}
	reg.MustRegister(newStatsCollector("ticketd_first_response_total",
		"First-response targets recorded by this daemon, by outcome: reminded (a reminder queued), breached (a missed target recorded), backfilled (an older ticket found answered).",
		j.firstResponse.Stats))
}

// slackPoster is the Slack client the digest posts with; nil when the
// Slack bridge is off (the digest is then refused by validate).
func (d *slackDesk) slackPoster() sla.Poster {
	if d == nil {
		return nil
	}
	return d.client
}
