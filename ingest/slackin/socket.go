package slackin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"
)

// Defaults used for zero SocketOptions fields.
const (
	DefaultAPIURL       = "https://slack.com/api/"
	DefaultReconnectMin = time.Second
	DefaultReconnectMax = 2 * time.Minute
	DefaultMaxInFlight  = 8
)

// SocketOptions configure a Socket Mode connection.
type SocketOptions struct {
	BotToken string // xoxb-
	AppToken string // xapp-, with connections:write
	APIURL   string // DefaultAPIURL when empty
	// ReconnectMin and ReconnectMax bound the backoff between connection
	// attempts (doubling, with jitter); reset once connected.
	ReconnectMin, ReconnectMax time.Duration
	// HandlerTimeout bounds one Handler call; DefaultHandlerTimeout when zero.
	HandlerTimeout time.Duration
	// MaxInFlight bounds the payloads handled at once; further ones wait,
	// unacked, in slack-go's queue.
	MaxInFlight int
	Logger      *slog.Logger
}

// Socket is a Socket Mode connection: it reads Slack's envelopes, hands each
// to the Handler and acks it once the Handler returned nil.
//
// slack-go's socketmode client reconnects by itself after a dropped socket,
// but gives up on the first failed reconnect; Socket therefore runs one client
// at a time in a loop of its own, with backoff, and reports the state.
type Socket struct {
	h      Handler
	opts   SocketOptions
	log    *slog.Logger
	stats  counters
	status statusBox
}

// NewSocket makes a Socket Mode connection; Run connects.
func NewSocket(h Handler, opts SocketOptions) *Socket {
	if opts.APIURL == "" {
		opts.APIURL = DefaultAPIURL
	}
	opts.ReconnectMin = orDefault(opts.ReconnectMin, DefaultReconnectMin)
	if opts.ReconnectMax < opts.ReconnectMin {
		opts.ReconnectMax = max(DefaultReconnectMax, opts.ReconnectMin)
	}
	opts.HandlerTimeout = orDefault(opts.HandlerTimeout, DefaultHandlerTimeout)
	opts.MaxInFlight = orDefault(opts.MaxInFlight, DefaultMaxInFlight)
	s := &Socket{h: h, opts: opts, log: componentLogger(opts.Logger, "slack-socket")}
	s.status.set(StateConnecting, "")
	return s
}

// Stats returns the counters.
func (s *Socket) Stats() Stats { return s.stats.snapshot() }

// Status returns the connection state.
func (s *Socket) Status() Status { return s.status.get() }

// Run connects and handles envelopes until ctx ends, reconnecting with backoff
// for as long as it runs: an unreachable Slack or a refused token makes the
// state degraded, never an error. Payloads in flight when ctx ends are
// finished (within HandlerTimeout) before Run returns nil.
func (s *Socket) Run(ctx context.Context) error {
	var inflight sync.WaitGroup
	defer inflight.Wait()
	sem := make(chan struct{}, s.opts.MaxInFlight)
	delay := s.opts.ReconnectMin
	everConnected := false
	for ctx.Err() == nil {
		connected, err := s.runClient(ctx, sem, &inflight, &everConnected)
		if ctx.Err() != nil {
			break
		}
		if connected {
			delay = s.opts.ReconnectMin
		}
		reason := describe(err)
		s.status.set(StateDegraded, reason)
		wait := delay/2 + rand.N(delay/2+1)
		s.log.Warn("slack connection lost; reconnecting", "err", reason, "in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		delay = min(delay*2, s.opts.ReconnectMax)
	}
	return nil
}

// runClient runs one socketmode client until it fails a (re)connection or ctx
// ends; connected says whether it was connected at some point.
func (s *Socket) runClient(ctx context.Context, sem chan struct{}, inflight *sync.WaitGroup, everConnected *bool) (connected bool, err error) {
	api := slack.New(s.opts.BotToken, slack.OptionAPIURL(s.opts.APIURL), slack.OptionAppLevelToken(s.opts.AppToken))
	smc := socketmode.New(api)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				runErr <- fmt.Errorf("socket mode client panicked: %v", p)
			}
		}()
		runErr <- smc.RunContext(cctx)
	}()
	for {
		select {
		case err := <-runErr:
			if err == nil {
				err = errors.New("socket mode client stopped")
			}
			return connected, err
		case <-ctx.Done():
			cancel()
			<-runErr
			return connected, ctx.Err()
		case ev := <-smc.Events:
			switch ev.Type {
			case socketmode.EventTypeConnected:
				if *everConnected {
					s.stats.reconnects.Add(1)
				}
				*everConnected, connected = true, true
				s.status.set(StateConnected, "")
				s.log.Info("slack socket mode connected")
			case socketmode.EventTypeConnectionError:
				// slack-go would retry with its own backoff, invisible to us;
				// this client ends here and Run's loop takes over.
				var cerr error = errors.New("connection error")
				if ce, ok := ev.Data.(*slack.ConnectionErrorEvent); ok && ce.ErrorObj != nil {
					cerr = ce.ErrorObj
				}
				cancel()
				<-runErr
				return connected, cerr
			case socketmode.EventTypeInvalidAuth:
				s.status.set(StateDegraded, "app token rejected")
			case socketmode.EventTypeEventsAPI, socketmode.EventTypeInteractive, socketmode.EventTypeSlashCommand:
				if ev.Request == nil {
					continue
				}
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					continue
				}
				inflight.Add(1)
				go func() {
					defer inflight.Done()
					defer func() { <-sem }()
					s.handle(ctx, smc, ev)
				}()
			}
		}
	}
}

// handle applies one envelope and acks it when the Handler stored it.
func (s *Socket) handle(ctx context.Context, smc *socketmode.Client, ev socketmode.Event) {
	s.stats.received.Add(1)
	req := ev.Request
	var answer any
	err := apply(ctx, s.opts.HandlerTimeout, func(hctx context.Context) error {
		switch data := ev.Data.(type) {
		case slackevents.EventsAPIEvent:
			return s.h.HandleEvent(hctx, data, eventID(data))
		case slack.InteractionCallback:
			return s.h.HandleInteraction(hctx, data)
		case slack.SlashCommand:
			msg, err := s.h.HandleCommand(hctx, data)
			if msg != nil {
				answer = msg
			}
			return err
		}
		return fmt.Errorf("unexpected %s payload %T", ev.Type, ev.Data)
	})
	if err != nil {
		s.stats.handlerErrors.Add(1)
		s.log.Warn("slack payload not applied; Slack will deliver it again",
			"type", ev.Type, "envelope", req.EnvelopeID, "retry", req.RetryAttempt, "err", err)
		return
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := smc.AckCtx(actx, req.EnvelopeID, answer); err != nil {
		s.log.Warn("slack ack not sent; Slack will deliver the payload again", "envelope", req.EnvelopeID, "err", err)
		return
	}
	s.stats.acked.Add(1)
}

// eventID is the event_id of an event_callback ("" for other types).
func eventID(ev slackevents.EventsAPIEvent) string {
	if cb, ok := ev.Data.(*slackevents.EventsAPICallbackEvent); ok {
		return cb.EventID
	}
	return ""
}

// describe says what went wrong and what to fix, for the status and the log.
func describe(err error) string {
	if err == nil {
		return "disconnected"
	}
	var rl *slack.RateLimitedError
	var sc slack.StatusCodeError
	switch {
	case errors.As(err, &rl):
		return fmt.Sprintf("rate limited by Slack (retry after %s)", rl.RetryAfter)
	case errors.As(err, &sc):
		return fmt.Sprintf("Slack answered HTTP %d", sc.Code)
	}
	switch err.Error() {
	case "invalid_auth", "not_authed", "token_revoked", "account_inactive":
		return "slack.appToken rejected (" + err.Error() + "): check the app-level token (xapp-, scope connections:write)"
	case "not_allowed_token_type":
		return "slack.appToken is not an app-level token (xapp-)"
	}
	return "cannot reach Slack: " + err.Error()
}
