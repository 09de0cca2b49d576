// Package webhook is the sink for API clients: an adapter for the delivery
// runner (package notify) that POSTs each announced change of a ticket as
// JSON to one endpoint, signed the Standard Webhooks way (see Sign and
// Verify). Every endpoint is a sink of its own ("webhook:" and its name),
// with its own runner, so a slow or failing receiver holds back nobody
// else's deliveries.
//
// Sent: ticket.created, response.added (internal notes only to an
// endpoint that asks for them), status.changed, priority.changed and
// assignee.changed, filtered by the kinds the endpoint wants. Delivery is
// at least once: the runner retries with backoff and dead-letters after
// its attempts, and every attempt of a delivery carries the same
// webhook-id, derived from the delivery, so a receiver can drop repeats.
//
// Only a 2xx answer counts as delivered. Redirects are not followed (a 3xx
// is a failure, retried); 410 Gone is permanent (dead at once); 429 and
// 503 with Retry-After are waited out; anything else is retried.
package webhook

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/notify"
	"github.com/ticketd/ticketd/store"
)

// SinkPrefix starts the sink name of every endpoint.
const SinkPrefix = "webhook:"

// Sink is the outbox sink of the endpoint with this name.
func Sink(name string) string { return SinkPrefix + name }

// Kinds lists the event kinds a webhook can carry, the default set of an
// endpoint.
var Kinds = []store.EventKind{
	store.EventTicketCreated, store.EventResponseAdded, store.EventStatusChanged,
	store.EventPriorityChanged, store.EventAssigneeChanged,
}

// DefaultTimeout bounds one POST, connecting included, when
// Options.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// maxRetryAfter caps a receiver's Retry-After: a wait beyond it is likelier
// a mistake than a plan, and the runner's backoff takes over.
const maxRetryAfter = time.Hour

// The bounds on reading an answer: its first bytes are kept for the
// error (shown in the dead letters), the rest of a modest body is read so
// the connection can be reused, and a larger one is cut off.
const (
	errorSnippetBytes = 256
	maxDrainBytes     = 64 << 10
)

// TicketReader is what the adapter reads: the ticket of each event.
// *store.Store satisfies it.
type TicketReader interface {
	Ticket(ctx context.Context, id bson.ObjectID, scope store.Scope) (*store.Ticket, error)
}

// Options configures one endpoint.
type Options struct {
	// Name names the endpoint in its sink, logs and metrics. Required.
	Name string
	// URL receives the POSTs (http or https). Required.
	URL string
	// Secret is "whsec_" and the base64 of a 24 to 64 byte key. Required.
	Secret string
	// Events are the kinds sent (of Kinds); empty means all of them.
	Events []store.EventKind
	// IncludeInternalNotes sends response.added for agents' internal notes
	// too (and counts them in the ticket's responseCount).
	IncludeInternalNotes bool
	// Timeout bounds one POST. Default DefaultTimeout.
	Timeout time.Duration

	// Store reads tickets. Required.
	Store TicketReader
	// Client sends the requests; nil means one of the adapter's own. A
	// given client is used as is (tests: its redirect policy too).
	Client *http.Client
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock of webhook-timestamp; nil means time.Now.
	Now func() time.Time
}

// Adapter delivers one endpoint's deliveries. Make it with New.
type Adapter struct {
	o      Options
	key    []byte
	events map[store.EventKind]bool
	client *http.Client
	log    *slog.Logger
}

var _ notify.Adapter = (*Adapter)(nil)

// New checks o and returns the endpoint's adapter.
func New(o Options) (*Adapter, error) {
	if o.Store == nil {
		return nil, errors.New("webhook: nil store")
	}
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("webhook %s: %w", o.Name, err)
	}
	key, _ := DecodeSecret(o.Secret)
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	a := &Adapter{o: o, key: key, events: map[store.EventKind]bool{}, client: o.Client,
		log: o.Logger.With("component", "notify-webhook", "endpoint", o.Name)}
	for _, k := range o.Events {
		a.events[k] = true
	}
	if len(o.Events) == 0 {
		for _, k := range Kinds {
			a.events[k] = true
		}
	}
	if a.client == nil {
		a.client = &http.Client{
			Timeout: o.Timeout,
			// A redirect is the receiver's misconfiguration: following it
			// would POST the signed body to wherever it points.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return a, nil
}

// Validate reports every bad value at once, each with its option name.
func (o Options) Validate() error {
	var errs []error
	if !ValidName(o.Name) {
		errs = append(errs, fmt.Errorf("name: must be 1 to 40 lower-case letters, digits and dashes, starting with a letter or digit, got %q", o.Name))
	}
	if err := CheckURL(o.URL); err != nil {
		errs = append(errs, fmt.Errorf("url: %w", err))
	}
	if _, err := DecodeSecret(o.Secret); err != nil {
		errs = append(errs, fmt.Errorf("secret: %w", err))
	}
	for i, k := range o.Events {
		if !slices.Contains(Kinds, k) {
			errs = append(errs, fmt.Errorf("events[%d]: must be one of %v, got %q", i, Kinds, k))
		} else if slices.Index(o.Events, k) < i {
			errs = append(errs, fmt.Errorf("events[%d]: %s is listed twice", i, k))
		}
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout: %v is negative", o.Timeout))
	}
	return errors.Join(errs...)
}

// ValidName reports whether name may name an endpoint (it becomes part of
// the sink name and of the secret's environment variable).
func ValidName(name string) bool {
	if name == "" || len(name) > 40 || name[0] == '-' {
		return false
	}
	return !strings.ContainsFunc(name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-')
	})
}

// CheckURL says what is wrong with an endpoint URL, or nil.
func CheckURL(raw string) error {
	req, err := http.NewRequest(http.MethodPost, raw, nil)
	if err != nil {
		return fmt.Errorf("%q is not a URL", raw)
	}
	if (req.URL.Scheme != "https" && req.URL.Scheme != "http") || req.URL.Host == "" {
		return fmt.Errorf("must be an http(s) URL such as https://crm.example.com/hooks/ticketd, got %q", raw)
	}
	if req.URL.User != nil {
		return errors.New("must not carry credentials: the signature authenticates the request")
	}
	return nil
}

// MessageID is the webhook-id of a delivery: derived from the delivery
// (its event and sink), so every attempt carries the same one.
func MessageID(deliveryID string) string {
	sum := sha256.Sum256([]byte(deliveryID))
	return "msg_" + hex.EncodeToString(sum[:16])
}

// Deliver POSTs the delivery's event, unless the endpoint does not want it
// (notify.Skipped).
func (a *Adapter) Deliver(ctx context.Context, d *store.Delivery) error {
	e := d.Event
	if !a.events[e.Kind] {
		return notify.Skipped(string(e.Kind) + " is not among the endpoint's events")
	}
	t, err := a.o.Store.Ticket(ctx, e.TicketID, store.AllTickets)
	if errors.Is(err, store.ErrNotFound) {
		return notify.Skipped("the ticket was deleted")
	}
	if err != nil {
		return fmt.Errorf("webhook: load ticket %s: %w", e.TicketID.Hex(), err)
	}
	var r *store.Response
	if e.Kind == store.EventResponseAdded {
		if r = t.ResponseByID(e.ResponseID); r == nil {
			return notify.Skipped("the response is gone")
		}
		if r.Internal && !a.o.IncludeInternalNotes {
			return notify.Skipped("an internal note")
		}
	}
	body, err := json.Marshal(newPayload(e, t, r, a.o.IncludeInternalNotes))
	if err != nil {
		return notify.Permanent(fmt.Errorf("webhook: encode %s: %w", e.Kind, err))
	}
	return a.post(ctx, MessageID(d.ID), body)
}

// post sends one signed request and classifies the answer for the runner.
func (a *Adapter) post(ctx context.Context, id string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, a.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.o.URL, bytes.NewReader(body))
	if err != nil {
		return notify.Permanent(fmt.Errorf("webhook: %w", err))
	}
	now := a.o.Now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "ticketd-webhooks")
	req.Header.Set(HeaderID, id)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(HeaderSignature, Sign(a.key, id, now, body))
	res, err := a.client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook: POST %s: %w", a.o.URL, err)
	}
	defer res.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(res.Body, errorSnippetBytes))
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, maxDrainBytes))
	return classify(res, snippet, a.o.Now())
}

// classify turns an answer into the runner's verdict.
func classify(res *http.Response, snippet []byte, now time.Time) error {
	if res.StatusCode >= 200 && res.StatusCode < 300 {
		return nil
	}
	err := fmt.Errorf("webhook: the receiver answered %s", res.Status)
	if text := strings.TrimSpace(strings.ToValidUTF8(string(snippet), "?")); text != "" {
		err = fmt.Errorf("%w: %q", err, text)
	}
	switch res.StatusCode {
	case http.StatusGone:
		// The receiver says the endpoint is gone for good.
		return notify.Permanent(err)
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		if after, ok := retryAfter(res.Header.Get("Retry-After"), now); ok {
			return notify.RetryAfter(err, after)
		}
	}
	if loc := res.Header.Get("Location"); res.StatusCode >= 300 && res.StatusCode < 400 && loc != "" {
		err = fmt.Errorf("%w (a redirect to %s, not followed: configure the final URL)", err, loc)
	}
	return err
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if n, err := strconv.Atoi(v); err == nil {
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	} else {
		return 0, false
	}
	// At least a second: "Retry-After: 0" forever must not become a busy
	// loop (a rate-limit wait does not count as an attempt).
	return min(max(d, time.Second), maxRetryAfter), true
}
