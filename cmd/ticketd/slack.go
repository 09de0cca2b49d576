package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"

	"github.com/ticketd/ticketd/api"
	"github.com/ticketd/ticketd/ingest/slackin"
	"github.com/ticketd/ticketd/notify"
	"github.com/ticketd/ticketd/notify/slackout"
	"github.com/ticketd/ticketd/store"
)

// Proven here, where every package is known: the store is what the Slack
// bridge needs in both directions.
var (
	_ slackin.Store         = (*store.Store)(nil)
	_ slackout.TicketReader = (*store.Store)(nil)
	_ slackin.SlackAPI      = (*slack.Client)(nil)
)

// The waits between auth.test attempts while Slack refuses the bot token or
// cannot be reached: doubling, with jitter, reset by a restart.
const (
	slackIdentifyMin = time.Second
	slackIdentifyMax = 2 * time.Minute
)

// errSlackNotReady answers Slack's requests that arrive before auth.test
// said who the bot is: not applied, so Slack delivers them again.
var errSlackNotReady = errors.New("slack bridge not ready: auth.test has not succeeded yet")

// slackDesk is the Slack bridge of one daemon: it identifies the bot with
// auth.test, then runs the handlers (Socket Mode, or the Events API on the
// API listener) and the slack sink. Slack being unreachable or refusing
// the bot token never stops the daemon: the desk keeps retrying with
// backoff and reports itself degraded, with what to fix, on /readyz,
// /metrics and in the log.
type slackDesk struct {
	cfg    SlackConfig
	limits store.Limits
	// maxAttachment is the per-file limit for files agents attach
	// (email.inbound.maxAttachmentBytes, so a file is stored or left out
	// alike whichever way it came); 0 means the bridge's default.
	maxAttachment int64
	// newTicketsPerHour is email.inbound.rateLimitPerHour: one person opens
	// as many tickets by Slack as by mail.
	newTicketsPerHour int
	// publicURL is http.publicURL, the start of the links posted to Slack.
	publicURL string
	// escalationChannel is where missed first-response targets are posted
	// too (jobs.firstResponse.escalationChannel); empty for none.
	escalationChannel string
	st                *store.Store
	base              *slog.Logger // for the parts, which tag their own component
	log               *slog.Logger
	client            *slack.Client

	// Set once auth.test succeeded (and again after a worker restart).
	bridge atomic.Pointer[slackin.Bridge]
	runner atomic.Pointer[notify.Runner]
	socket atomic.Pointer[slackin.Socket]
	// events is the Events API endpoint, mounted from the start in events
	// mode (nil in socket mode): before auth.test succeeded it verifies
	// signatures and answers 500, so Slack retries.
	events *slackin.Events

	mu     sync.Mutex
	state  string // until identified: slackin.StateConnecting or StateDegraded
	reason string
}

// newSlackDesk prepares the bridge; nil when slack.enabled is false. It
// talks to nobody until start.
func newSlackDesk(cfg Config, st *store.Store, log *slog.Logger) *slackDesk {
	if !cfg.Slack.Enabled {
		return nil
	}
	d := &slackDesk{
		cfg: cfg.Slack, limits: st.Limits(), maxAttachment: cfg.Email.Inbound.MaxAttachmentBytes, st: st,
		newTicketsPerHour: cfg.Email.Inbound.RateLimitPerHour, publicURL: cfg.HTTP.PublicURL,
		escalationChannel: cfg.Jobs.SLAJobsConfig.EscalationChannel(),
		base:              log, log: log.With("component", "slack"),
		client: slack.New(cfg.Slack.BotToken, slack.OptionAPIURL(cfg.Slack.APIURL)),
		state:  slackin.StateConnecting,
	}
	if cfg.Slack.Mode == slackModeEvents {
		d.events = slackin.NewEvents(lateHandler{&d.bridge}, slackin.EventsOptions{SigningSecret: cfg.Slack.SigningSecret, Logger: log})
	}
	return d
}

// mount puts the Events API endpoint (events mode) in front of the API's
// handler: Slack's own paths, signed by Slack rather than authenticated
// with our JWTs, and not part of the REST API's OpenAPI document.
func (d *slackDesk) mount(apiHandler http.Handler) http.Handler {
	if d == nil || d.events == nil {
		return apiHandler
	}
	mux := http.NewServeMux()
	for _, p := range []string{slackin.PathEvents, slackin.PathInteractivity, slackin.PathCommands} {
		mux.Handle(p, d.events)
	}
	mux.Handle("/", apiHandler)
	return mux
}

// components reports the bridge for /readyz.
func (d *slackDesk) components() []api.ComponentStatus {
	return []api.ComponentStatus{d.status()}
}

func (d *slackDesk) status() api.ComponentStatus {
	c := api.ComponentStatus{Name: "slack"}
	d.mu.Lock()
	c.State, c.Reason = d.state, d.reason
	d.mu.Unlock()
	if d.bridge.Load() != nil {
		c.State, c.Reason = slackin.StateConnected, ""
		if s := d.socket.Load(); s != nil {
			st := s.Status()
			c.State, c.Reason = st.State, st.Reason
		}
	}
	c.Degraded = c.State == slackin.StateDegraded
	return c
}

func (d *slackDesk) setState(state, reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.state, d.reason = state, reason
}

// start registers the metrics and runs the bridge as a worker.
func (d *slackDesk) start(ctx context.Context, wg *sync.WaitGroup, reg prometheus.Registerer) {
	if d == nil {
		return
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ticketd_slack_connected",
			Help: "1 when the Slack bridge is identified (auth.test) and connected; 0 while degraded or connecting (see /readyz for why).",
		}, func() float64 {
			if d.status().State == slackin.StateConnected {
				return 1
			}
			return 0
		}),
		newStatsCollector("ticketd_slack_payloads_total", "Slack payloads (events, interactions, commands) by outcome: received, rejected (bad or stale signature), acked, handlererrors (Slack retries), reconnects.", d.connStats),
		newStatsCollector("ticketd_slack_handled_total", "What became of the Slack payloads handled: applied, deduplicated, refused (not an agent), ignored.", d.handled),
		newStatsCollector("ticketd_slack_deliveries_total", "Slack posts (outbox deliveries) by outcome: sent, skipped, retried, ratelimited (429), dead.", d.deliveries),
	)
	runWorker(ctx, wg, d.log, "slack", d.run)
}

// run identifies the bot, then runs the sink and (socket mode) the
// connection until ctx ends.
func (d *slackDesk) run(ctx context.Context) error {
	id, ok := d.identify(ctx)
	if !ok {
		return nil // ctx ended
	}
	bridge, err := slackin.New(slackin.Options{
		Store: d.st, Slack: d.client, Channel: d.cfg.Channel,
		BotUserID: id.BotUserID, BotID: id.BotID, TeamID: id.TeamID,
		ReplyDefault: slackin.ReplyDefault(d.cfg.ReplyDefault), NotePrefix: d.cfg.NotePrefix,
		MaxAttachmentBytes: d.maxAttachment, Limits: d.limits, Logger: d.base,
		IntakeChannels: d.cfg.IntakeChannels, DirectMessages: d.cfg.DirectMessages,
		ChannelTeams: d.cfg.ChannelTeams, IntakeCategory: d.cfg.IntakeCategory,
		NewTicketsPerHour: d.newTicketsPerHour,
	})
	if err != nil {
		return err
	}
	adapter, err := slackout.New(slackout.Options{
		Client: d.client, Channel: d.cfg.Channel, BotUserID: id.BotUserID,
		MaxUploadBytes: d.cfg.MaxUploadBytes, APIBaseURL: d.publicURL, Store: d.st, Logger: d.base,
		EscalationChannel: d.escalationChannel,
	})
	if err != nil {
		return err
	}
	ro := d.cfg.Delivery.Options(slackout.Sink)
	ro.Outcome = recordOutcome(d.st, d.log) // replies to customers in Slack
	runner, err := notify.NewRunner(ro, d.st, adapter, d.base)
	if err != nil {
		return fmt.Errorf("slack.delivery: %w", err)
	}
	var socket *slackin.Socket
	if d.cfg.Mode == slackModeSocket {
		socket = slackin.NewSocket(bridge, slackin.SocketOptions{
			BotToken: d.cfg.BotToken, AppToken: d.cfg.AppToken, APIURL: d.cfg.APIURL, Logger: d.base,
		})
		d.socket.Store(socket)
	}
	d.runner.Store(runner)
	d.bridge.Store(bridge)
	d.log.Info("slack bridge running", "mode", d.cfg.Mode, "channel", d.cfg.Channel, "bot_user", id.BotUserID, "team", id.TeamID)

	var wg sync.WaitGroup
	errs := make(chan error, 2)
	// The sink's writes are deferred work: on the embedded store they yield
	// to the writes of incoming messages (store.Deferrable).
	sink := func(ctx context.Context) error { return runner.Run(store.Deferrable(ctx)) }
	for _, fn := range []func(context.Context) error{sink, func(ctx context.Context) error {
		if socket == nil {
			<-ctx.Done()
			return nil
		}
		return socket.Run(ctx)
	}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- fn(ctx)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// identify calls auth.test until it succeeds or ctx ends, with backoff,
// reporting why it fails: the bridge cannot tell its own messages from
// agents' before it knows the bot's ids.
func (d *slackDesk) identify(ctx context.Context) (slackin.Identity, bool) {
	delay := slackIdentifyMin
	for {
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		id, err := slackin.Identify(actx, d.client)
		cancel()
		if err == nil {
			d.setState(slackin.StateConnected, "")
			return id, true
		}
		if ctx.Err() != nil {
			return slackin.Identity{}, false
		}
		reason := d.describeIdentify(err)
		d.setState(slackin.StateDegraded, reason)
		wait := delay/2 + rand.N(delay/2+1)
		d.log.Error("slack bridge degraded; email and the API keep working", "reason", reason, "retry_in", wait)
		select {
		case <-ctx.Done():
			return slackin.Identity{}, false
		case <-time.After(wait):
		}
		delay = min(2*delay, slackIdentifyMax)
	}
}

// describeIdentify says what failed and what to fix.
func (d *slackDesk) describeIdentify(err error) string {
	var se slack.SlackErrorResponse
	if errors.As(err, &se) {
		switch se.Err {
		case "invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive", "not_allowed_token_type":
			return "slack.botToken rejected by auth.test (" + se.Err + "): set the app's bot token (xoxb-..., OAuth & Permissions page; or TICKETD_SLACK_BOT_TOKEN)"
		}
		return "auth.test failed (" + se.Err + ")"
	}
	var rl *slack.RateLimitedError
	if errors.As(err, &rl) {
		return fmt.Sprintf("auth.test rate limited by Slack (retry after %s)", rl.RetryAfter)
	}
	return fmt.Sprintf("cannot reach Slack at %s (%v): check slack.apiURL and the network", d.cfg.APIURL, err)
}

// connStats are the connection's counters: the socket's, or the Events
// API endpoint's.
func (d *slackDesk) connStats() slackin.Stats {
	if d.events != nil {
		return d.events.Stats()
	}
	if s := d.socket.Load(); s != nil {
		return s.Stats()
	}
	return slackin.Stats{}
}

// handledStats is slackin.Counts read into plain numbers for the collector.
type handledStats struct{ Applied, Deduplicated, Refused, Ignored int64 }

func (d *slackDesk) handled() handledStats {
	b := d.bridge.Load()
	if b == nil {
		return handledStats{}
	}
	return handledStats{
		Applied: b.Counts.Applied.Load(), Deduplicated: b.Counts.Deduplicated.Load(),
		Refused: b.Counts.Refused.Load(), Ignored: b.Counts.Ignored.Load(),
	}
}

func (d *slackDesk) deliveries() notify.Stats {
	if r := d.runner.Load(); r != nil {
		return r.Stats()
	}
	return notify.Stats{}
}

// lateHandler hands Events API payloads to the bridge once it exists;
// before, they are not applied and Slack retries them.
type lateHandler struct {
	b *atomic.Pointer[slackin.Bridge]
}

func (l lateHandler) HandleEvent(ctx context.Context, ev slackevents.EventsAPIEvent, eventID string) error {
	if b := l.b.Load(); b != nil {
		return b.HandleEvent(ctx, ev, eventID)
	}
	return errSlackNotReady
}

func (l lateHandler) HandleInteraction(ctx context.Context, cb slack.InteractionCallback) error {
	if b := l.b.Load(); b != nil {
		return b.HandleInteraction(ctx, cb)
	}
	return errSlackNotReady
}

func (l lateHandler) HandleCommand(ctx context.Context, cmd slack.SlashCommand) (*slack.Msg, error) {
	if b := l.b.Load(); b != nil {
		return b.HandleCommand(ctx, cmd)
	}
	return nil, errSlackNotReady
}
