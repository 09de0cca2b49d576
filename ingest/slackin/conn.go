// Package slackin brings Slack into ticketd: the connection to Slack (Socket
// Mode, or the HTTP Events API) in this file's neighbours socket.go and
// events.go, and the handlers that turn Slack payloads into tickets and
// responses. The package is not called slack so that slack-go's package keeps
// its name.
//
// The connection layer's one rule: a payload is acknowledged to Slack only
// after the Handler stored its effect. Anything else (a failing or slow
// Handler, a dropped connection, our own shutdown) leaves it unacknowledged,
// and Slack delivers it again; the Handler deduplicates by event id.
package slackin

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
)

// Handler applies Slack payloads. Each method returns only after its effect is
// stored; an error means "not applied": the envelope is not acked (Socket Mode)
// or the request answers 5xx (Events API), so Slack delivers it again.
type Handler interface {
	HandleEvent(ctx context.Context, ev slackevents.EventsAPIEvent, eventID string) error
	HandleInteraction(ctx context.Context, cb slack.InteractionCallback) error
	HandleCommand(ctx context.Context, cmd slack.SlashCommand) (*slack.Msg, error) // the ephemeral answer
}

// DefaultHandlerTimeout bounds one Handler call. Slack wants an answer within
// 3 s; what is not stored by then is answered as a failure (Events API) or left
// unacked (Socket Mode), and Slack retries.
const DefaultHandlerTimeout = 2500 * time.Millisecond

// Stats are a connection's counters since it was made, for /metrics.
type Stats struct {
	Received      uint64 // payloads that reached the Handler (events, interactions, commands)
	Rejected      uint64 // Events API requests refused before that: bad or stale signature, bad body
	Acked         uint64 // payloads applied and acknowledged
	HandlerErrors uint64 // Handler failures and timeouts: not acknowledged, Slack retries
	Reconnects    uint64 // Socket Mode connections opened after the first
}

type counters struct {
	received, rejected, acked, handlerErrors, reconnects atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Received: c.received.Load(), Rejected: c.rejected.Load(), Acked: c.acked.Load(),
		HandlerErrors: c.handlerErrors.Load(), Reconnects: c.reconnects.Load(),
	}
}

// Connection states, for /readyz.
const (
	StateConnecting = "connecting" // not connected yet, no failure so far
	StateConnected  = "connected"
	StateDegraded   = "degraded" // Slack unreachable or refusing us; Reason says why and what to fix
)

// Status is the connection's state for /readyz and the log.
type Status struct {
	State  string
	Reason string    // for StateDegraded
	Since  time.Time // when State last changed
}

// statusBox holds the current Status.
type statusBox struct {
	mu sync.Mutex
	st Status
}

func (b *statusBox) set(state, reason string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.st.State != state || b.st.Reason != reason {
		b.st = Status{State: state, Reason: reason, Since: time.Now()}
	}
}

func (b *statusBox) get() Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.st
}

// orDefault is v, or def when v is not positive (a zero option).
func orDefault[T int | int64 | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// componentLogger is l (or a discarding logger) tagged with the component.
func componentLogger(l *slog.Logger, component string) *slog.Logger {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return l.With("component", component)
}

// apply runs fn with a deadline of timeout, detached from the caller's
// cancellation so that a shutdown lets the write in flight finish (it is
// bounded by timeout anyway). A Handler that ignores its context is not waited
// for past the deadline: the payload counts as not applied, and the retry is
// deduplicated if the late write lands.
func apply(ctx context.Context, timeout time.Duration, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	done := make(chan error, 1)
	go func() {
		defer cancel()
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("slack handler panicked: %v", p)
			}
		}()
		done <- fn(ctx)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		// fn's own return cancels ctx too, after sending its result.
		select {
		case err := <-done:
			return err
		default:
			return fmt.Errorf("slack handler: %w", ctx.Err())
		}
	}
}
