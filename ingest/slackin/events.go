package slackin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
)

// DefaultMaxEventBytes bounds an Events API request body. Slack's payloads
// are a few kilobytes; a block_actions payload carries the whole message
// (up to 50 blocks), still far below this.
const DefaultMaxEventBytes = 1 << 20

// The paths Events serves, on the API listener.
const (
	PathEvents        = "/slack/events"
	PathInteractivity = "/slack/interactivity"
	PathCommands      = "/slack/commands"
)

// EventsOptions configure the Events API endpoint.
type EventsOptions struct {
	SigningSecret  string // the app's signing secret
	MaxBodyBytes   int64  // DefaultMaxEventBytes when zero
	HandlerTimeout time.Duration
	Logger         *slog.Logger
}

// Events is the HTTP Events API endpoint: an http.Handler for POST
// PathEvents, PathInteractivity and PathCommands. Every request must carry
// Slack's v0 signature over "v0:timestamp:body", made within 5 minutes (checked
// with slack-go's SecretsVerifier, which compares in constant time); anything
// else is answered 401 and reaches nothing. A payload is answered 200 only
// after the Handler stored it, within HandlerTimeout (below Slack's 3 s);
// otherwise 500, and Slack retries with X-Slack-Retry-Num and the same
// event_id, which the Handler deduplicates.
type Events struct {
	h     Handler
	opts  EventsOptions
	log   *slog.Logger
	stats counters
}

// NewEvents makes the Events API endpoint.
func NewEvents(h Handler, opts EventsOptions) *Events {
	opts.MaxBodyBytes = orDefault(opts.MaxBodyBytes, DefaultMaxEventBytes)
	opts.HandlerTimeout = orDefault(opts.HandlerTimeout, DefaultHandlerTimeout)
	return &Events{h: h, opts: opts, log: componentLogger(opts.Logger, "slack-events")}
}

// Stats returns the counters.
func (e *Events) Stats() Stats { return e.stats.snapshot() }

// Status is always connected: in events mode Slack comes to us.
func (e *Events) Status() Status { return Status{State: StateConnected} }

func (e *Events) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if path != PathEvents && path != PathInteractivity && path != PathCommands {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, e.opts.MaxBodyBytes))
	if err != nil {
		e.stats.rejected.Add(1)
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "cannot read the request", http.StatusBadRequest)
		return
	}
	if err := e.verify(r.Header, body); err != nil {
		e.stats.rejected.Add(1)
		e.log.Warn("slack request refused", "path", path, "err", err, "remote", r.RemoteAddr)
		http.Error(w, "invalid signature", http.StatusUnauthorized)
		return
	}
	switch path {
	case PathEvents:
		e.serveEvent(w, r, body)
	case PathInteractivity:
		e.serveInteraction(w, r, body)
	default:
		e.serveCommand(w, r, body)
	}
}

func (e *Events) verify(h http.Header, body []byte) error {
	sv, err := slack.NewSecretsVerifier(h, e.opts.SigningSecret)
	if err != nil {
		return err
	}
	if _, err := sv.Write(body); err != nil {
		return err
	}
	return sv.Ensure()
}

func (e *Events) serveEvent(w http.ResponseWriter, r *http.Request, body []byte) {
	var outer struct {
		Type      string `json:"type"`
		Challenge string `json:"challenge"`
	}
	if err := json.Unmarshal(body, &outer); err != nil {
		e.stats.rejected.Add(1)
		http.Error(w, "invalid JSON", http.StatusBadRequest)
		return
	}
	if outer.Type == slackevents.URLVerification {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, outer.Challenge)
		return
	}
	ev, err := slackevents.ParseEvent(body, slackevents.OptionNoVerifyToken())
	if err != nil {
		e.stats.rejected.Add(1)
		http.Error(w, "unreadable event", http.StatusBadRequest)
		return
	}
	id := eventID(ev)
	e.apply(w, r, "event", id, func(ctx context.Context) error { return e.h.HandleEvent(ctx, ev, id) })
}

func (e *Events) serveInteraction(w http.ResponseWriter, r *http.Request, body []byte) {
	form, err := url.ParseQuery(string(body))
	var cb slack.InteractionCallback
	if err == nil {
		err = json.Unmarshal([]byte(form.Get("payload")), &cb)
	}
	if err != nil {
		e.stats.rejected.Add(1)
		http.Error(w, "unreadable interaction", http.StatusBadRequest)
		return
	}
	e.apply(w, r, "interaction", cb.TriggerID, func(ctx context.Context) error { return e.h.HandleInteraction(ctx, cb) })
}

func (e *Events) serveCommand(w http.ResponseWriter, r *http.Request, body []byte) {
	req := r.Clone(r.Context())
	req.Body = io.NopCloser(strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	cmd, err := slack.SlashCommandParse(req)
	if err != nil || cmd.Command == "" {
		e.stats.rejected.Add(1)
		http.Error(w, "unreadable command", http.StatusBadRequest)
		return
	}
	var answer *slack.Msg
	ok := e.apply(w, r, "command", cmd.TriggerID, func(ctx context.Context) error {
		msg, err := e.h.HandleCommand(ctx, cmd)
		answer = msg
		return err
	})
	if !ok {
		return
	}
	if answer == nil {
		w.WriteHeader(http.StatusOK)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(answer)
}

// apply runs the Handler within the deadline and answers 500 when it did not
// store the payload; it reports whether it did (the caller then answers 200).
func (e *Events) apply(w http.ResponseWriter, r *http.Request, kind, id string, fn func(context.Context) error) bool {
	e.stats.received.Add(1)
	if err := apply(r.Context(), e.opts.HandlerTimeout, fn); err != nil {
		e.stats.handlerErrors.Add(1)
		e.log.Warn("slack payload not applied; answering 500 so that Slack retries", "kind", kind, "id", id,
			"retry", r.Header.Get("X-Slack-Retry-Num"), "err", err)
		http.Error(w, "not applied, retry", http.StatusInternalServerError)
		return false
	}
	e.stats.acked.Add(1)
	if kind != "command" {
		w.WriteHeader(http.StatusOK)
	}
	return true
}
