package slackin

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"

	"github.com/ticketd/ticketd/internal/slackfake"
)

// connTestHandler records what it applied and fails while told to.
type connTestHandler struct {
	mu       sync.Mutex
	failNext int            // the next calls that fail
	block    chan struct{}  // when set, calls wait for it (or their context)
	events   []string       // event ids, one per successful call
	attempts map[string]int // calls by event id, successful or not
	commands []slack.SlashCommand
	actions  []slack.InteractionCallback
}

var errNotStored = errors.New("store unavailable")

func (h *connTestHandler) enter(ctx context.Context, id string) error {
	h.mu.Lock()
	if h.attempts == nil {
		h.attempts = map[string]int{}
	}
	h.attempts[id]++
	block := h.block
	fail := h.failNext > 0
	if fail {
		h.failNext--
	}
	h.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail {
		return errNotStored
	}
	return nil
}

func (h *connTestHandler) HandleEvent(ctx context.Context, ev slackevents.EventsAPIEvent, eventID string) error {
	if err := h.enter(ctx, eventID); err != nil {
		return err
	}
	h.mu.Lock()
	h.events = append(h.events, eventID)
	h.mu.Unlock()
	return nil
}

func (h *connTestHandler) HandleInteraction(ctx context.Context, cb slack.InteractionCallback) error {
	if err := h.enter(ctx, cb.TriggerID); err != nil {
		return err
	}
	h.mu.Lock()
	h.actions = append(h.actions, cb)
	h.mu.Unlock()
	return nil
}

func (h *connTestHandler) HandleCommand(ctx context.Context, cmd slack.SlashCommand) (*slack.Msg, error) {
	if err := h.enter(ctx, cmd.TriggerID); err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.commands = append(h.commands, cmd)
	h.mu.Unlock()
	return &slack.Msg{ResponseType: slack.ResponseTypeEphemeral, Text: "#42 is open"}, nil
}

func (h *connTestHandler) applied() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.events...)
}

func startSocket(t *testing.T, f *slackfake.Fake, h Handler) *Socket {
	t.Helper()
	s := NewSocket(h, SocketOptions{BotToken: slackfake.BotToken, AppToken: slackfake.AppToken, APIURL: f.APIURL(),
		ReconnectMin: 5 * time.Millisecond, ReconnectMax: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s
}

// A failing Handler leaves the envelope unacked; Slack's redelivery is applied
// once the Handler works, and only then acked.
func TestSocketAcksOnlyAfterTheHandlerStored(t *testing.T) {
	f := slackfake.New(t)
	h := &connTestHandler{failNext: 1}
	s := startSocket(t, f, h)
	f.WaitConnections(t, 1)

	first := f.MessageEvent(slackfake.MessageSpec{User: "U1", Text: "first"})
	f.MustSend(t, first)
	f.Until(t, "the handler error", func() bool { return s.Stats().HandlerErrors == 1 })
	// Acks travel in order on the connection: once the second is acked, an
	// ack of the first would have arrived.
	second := f.MessageEvent(slackfake.MessageSpec{User: "U1", Text: "second"})
	f.MustSend(t, second)
	f.WaitAck(t, second.EnvelopeID)
	if acks := f.AcksFor(first.EnvelopeID); len(acks) != 0 {
		t.Fatalf("envelope acked although the handler failed: %+v", acks)
	}

	if err := f.Redeliver(first.EnvelopeID); err != nil {
		t.Fatal(err)
	}
	f.WaitAck(t, first.EnvelopeID)
	if got := h.applied(); len(got) != 2 || got[0] != second.EventID || got[1] != first.EventID {
		t.Fatalf("applied %v, want [%s %s]", got, second.EventID, first.EventID)
	}
	if h.attempts[first.EventID] != 2 {
		t.Fatalf("first event tried %d times, want 2", h.attempts[first.EventID])
	}
	// The fake records an ack as it arrives, which can be before the
	// runner counts it: wait for the count rather than read it once.
	f.Until(t, "two acks counted", func() bool { return s.Stats().Acked == 2 })
	st := s.Stats()
	if st.Received != 3 || st.Acked != 2 || st.HandlerErrors != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// A Handler slower than the deadline counts as failed: no ack.
func TestSocketSlowHandlerIsNotAcked(t *testing.T) {
	f := slackfake.New(t)
	h := &connTestHandler{block: make(chan struct{})}
	s := NewSocket(h, SocketOptions{BotToken: slackfake.BotToken, AppToken: slackfake.AppToken, APIURL: f.APIURL(),
		HandlerTimeout: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	f.WaitConnections(t, 1)
	env := f.MessageEvent(slackfake.MessageSpec{User: "U1", Text: "slow"})
	f.MustSend(t, env)
	f.Until(t, "the timeout", func() bool { return s.Stats().HandlerErrors == 1 })
	close(h.block)
	cmd := f.SlashCommandEnvelope("U1", slackfake.ChannelID, "/ticket", "42")
	f.MustSend(t, cmd)
	f.WaitAck(t, cmd.EnvelopeID)
	if acks := f.AcksFor(env.EnvelopeID); len(acks) != 0 {
		t.Fatalf("slow envelope acked: %+v", acks)
	}
}

func TestSocketAnswersCommandsAndInteractions(t *testing.T) {
	f := slackfake.New(t)
	f.AddUser(slackfake.User{ID: "U1", RealName: "Ada"})
	h := &connTestHandler{}
	startSocket(t, f, h)
	f.WaitConnections(t, 1)
	cmd := f.SlashCommandEnvelope("U1", slackfake.ChannelID, "/ticket", "42")
	f.MustSend(t, cmd)
	if ack := f.WaitAck(t, cmd.EnvelopeID); !strings.Contains(string(ack.Payload), "#42 is open") {
		t.Fatalf("command ack %s", ack.Payload)
	}
	root := f.MessageEvent(slackfake.MessageSpec{User: "U1", Text: "root"})
	act := f.BlockActionEnvelope("U1", slackfake.ChannelID, root.MessageTS, slackfake.Action{ActionID: "status", Type: "button", Value: "resolved"})
	f.MustSend(t, act)
	f.WaitAck(t, act.EnvelopeID)
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.commands) != 1 || h.commands[0].Text != "42" || len(h.actions) != 1 || h.actions[0].ActionCallback.BlockActions[0].Value != "resolved" {
		t.Fatalf("commands %+v actions %+v", h.commands, h.actions)
	}
}

// After the fake drops the socket, Run reconnects and envelopes flow again.
// While Slack is unreachable the status is degraded with the reason.
func TestSocketReconnects(t *testing.T) {
	f := slackfake.New(t)
	h := &connTestHandler{}
	s := startSocket(t, f, h)
	f.WaitConnections(t, 1)
	f.Until(t, "connected", func() bool { return s.Status().State == StateConnected })

	f.DropSockets()
	f.WaitConnections(t, 2)
	env := f.MessageEvent(slackfake.MessageSpec{User: "U1", Text: "after the drop"})
	f.MustSend(t, env)
	f.WaitAck(t, env.EnvelopeID)
	f.Until(t, "one reconnect counted", func() bool { return s.Stats().Reconnects == 1 })

	// Slack unreachable: slack-go's client fails its reconnect and ends; our
	// loop keeps trying and says why.
	f.Refuse()
	f.Until(t, "degraded", func() bool {
		st := s.Status()
		return st.State == StateDegraded && strings.Contains(st.Reason, "cannot reach Slack")
	})
	f.Restore()
	f.WaitConnections(t, 3)
	f.Until(t, "connected again", func() bool { return s.Status().State == StateConnected })
	env = f.MessageEvent(slackfake.MessageSpec{User: "U1", Text: "after the outage"})
	f.MustSend(t, env)
	f.WaitAck(t, env.EnvelopeID)
	if got := h.applied(); len(got) != 2 {
		t.Fatalf("applied %v", got)
	}
}

// A rejected app token degrades the status with what to fix; Run keeps going.
func TestSocketBadAppToken(t *testing.T) {
	f := slackfake.New(t)
	s := NewSocket(&connTestHandler{}, SocketOptions{BotToken: slackfake.BotToken, AppToken: "xapp-wrong", APIURL: f.APIURL(),
		ReconnectMin: 5 * time.Millisecond, ReconnectMax: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	f.Until(t, "degraded for the token", func() bool {
		st := s.Status()
		return st.State == StateDegraded && strings.Contains(st.Reason, "slack.appToken rejected")
	})
	f.WaitCalls(t, "apps.connections.open", 2) // it retries
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
