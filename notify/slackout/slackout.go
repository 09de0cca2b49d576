// Package slackout is the Slack sink: an Adapter for the shared delivery
// runner that shows every ticket as a thread in the agents' channel.
//
// A ticket's first delivery posts its root message (internal/slackui renders
// it) and binds the message to the ticket (store.ThreadSlackAgents); every
// later event goes into that thread: customer responses with their files,
// agent responses and notes made outside Slack (marked with where they came
// from), one context line per status or priority change with the root
// message updated in place, and reactions on an agent's Slack reply once the
// customer's mail was delivered, or not.
//
// A ticket opened by a customer in Slack (intake) has a customer thread
// too (store.ThreadSlackCustomer): the same delivery answers there
// (customer.go), with the acknowledgement, agents' replies to the
// customer and status changes.
//
// Posting is exactly once. Every message carries metadata naming the ticket
// and the event; before a root message is posted the channel's recent
// history is searched for it, and a retried delivery searches the thread
// before posting again, so a crash between Slack's acceptance and our
// bookkeeping never shows anything twice.
package slackout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/slack-go/slack"
	"github.com/ticketd/ticketd/internal/slackui"
	"github.com/ticketd/ticketd/notify"
	"github.com/ticketd/ticketd/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// Sink is the outbox sink this adapter delivers.
const Sink = "slack"

// Defaults for the zero Options fields.
const (
	DefaultMaxUploadBytes = 10 << 20
	DefaultHistoryPages   = 5
	historyPageSize       = 200
)

// TicketReader is what the sink needs from the store. *store.Store
// satisfies it.
type TicketReader interface {
	Ticket(ctx context.Context, id bson.ObjectID, scope store.Scope) (*store.Ticket, error)
	Customer(ctx context.Context, id bson.ObjectID) (*store.Customer, error)
	Agent(ctx context.Context, id bson.ObjectID) (*store.Agent, error)
	Attachment(ctx context.Context, id bson.ObjectID, scope store.Scope) (*store.AttachmentFile, error)
	BindThread(ctx context.Context, ticket bson.ObjectID, kind store.ThreadKind, key string) error
}

// Options configure a Sink. Client, Channel and Store are required.
type Options struct {
	// Client talks to Slack's Web API with the bot token.
	Client *slack.Client
	// Channel is the agents' channel ID: every ticket gets a thread there.
	Channel string
	// BotUserID is the bot's user id (auth.test); when set, only its own
	// messages count when the sink looks for what it posted before.
	BotUserID string
	// APIBaseURL is the daemon's public API URL (https://tickets.example.com),
	// for links to attachments too large to upload; empty means the link
	// shows the attachment id only.
	APIBaseURL string
	// MaxUploadBytes is the largest file uploaded into a thread; a larger
	// one gets a note with its API link. Zero means DefaultMaxUploadBytes.
	MaxUploadBytes int64
	// HistoryPages bounds the search for a root message already posted
	// (pages of 200 messages, newest first, since the ticket was created).
	// Zero means DefaultHistoryPages.
	HistoryPages int
	// EscalationChannel is the channel ID where missed first-response
	// targets (store.EventSLABreached) are posted besides the ticket's
	// thread; empty means the thread only.
	EscalationChannel string
	Store             TicketReader
	Logger            *slog.Logger
}

// Adapter delivers the "slack" sink's deliveries. Make it with New.
type Adapter struct {
	o   Options
	api *slack.Client
	st  TicketReader
	log *slog.Logger
}

// New checks the options and returns an Adapter.
func New(o Options) (*Adapter, error) {
	var errs []error
	if o.Client == nil {
		errs = append(errs, errors.New("slackout: no Slack client"))
	}
	if o.Store == nil {
		errs = append(errs, errors.New("slackout: no store"))
	}
	if strings.TrimSpace(o.Channel) == "" {
		errs = append(errs, errors.New("slackout: no agents' channel"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if o.MaxUploadBytes <= 0 {
		o.MaxUploadBytes = DefaultMaxUploadBytes
	}
	if o.HistoryPages <= 0 {
		o.HistoryPages = DefaultHistoryPages
	}
	o.APIBaseURL = strings.TrimRight(o.APIBaseURL, "/")
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Adapter{o: o, api: o.Client, st: o.Store, log: o.Logger.With("component", "slack-sink")}, nil
}

// Deliver shows one event in the ticket's thread, posting the ticket's root
// message first when the ticket has none yet (a ticket created before Slack
// was enabled gets it at its next event). The error is classified for the
// runner: notify.RetryAfter on 429, notify.Permanent for what no retry can
// fix, a plain error for outages, notify.Skipped for what Slack does not
// show (the echo of an agent's Slack reply, a deleted ticket).
func (a *Adapter) Deliver(ctx context.Context, d *store.Delivery) error {
	e := d.Event
	t, err := a.st.Ticket(ctx, e.TicketID, store.AllTickets)
	if errors.Is(err, store.ErrNotFound) {
		return notify.Skipped("ticket " + e.TicketID.Hex() + " is deleted")
	}
	if err != nil {
		return fmt.Errorf("slack: load ticket %s: %w", e.TicketID.Hex(), err)
	}
	retried := d.Attempts > 1
	err = a.deliverToAgents(ctx, t, d, retried)
	if t.Thread(store.ThreadSlackCustomer) == "" || (err != nil && !notify.IsSkipped(err)) {
		return err
	}
	// The agents' side first: a failure there retries both, and the
	// customer's side, like the agents', finds what it posted before.
	if cerr := a.deliverToCustomer(ctx, t, e, retried); cerr == nil || !notify.IsSkipped(cerr) {
		return cerr
	}
	return err
}

// deliverToAgents shows one event in the ticket's thread in the agents'
// channel.
func (a *Adapter) deliverToAgents(ctx context.Context, t *store.Ticket, d *store.Delivery, retried bool) error {
	e := d.Event
	root, fresh, err := a.ensureRoot(ctx, t, d)
	if err != nil {
		return err
	}
	switch e.Kind {
	case store.EventTicketCreated:
		if !fresh {
			return notify.Skipped("the root message was posted already")
		}
		return nil
	case store.EventResponseAdded:
		return a.deliverResponse(ctx, t, root, e, retried)
	case store.EventStatusChanged, store.EventPriorityChanged, store.EventAssigneeChanged:
		if !fresh { // a fresh root shows the current state already
			if err := a.updateRoot(ctx, t, root); err != nil {
				return err
			}
		}
		line, err := a.changeLine(ctx, e)
		if err != nil {
			return err
		}
		return a.postLine(ctx, t, root, e, retried, line)
	case store.EventResponseDelivered, store.EventResponseUndelivered:
		return a.deliverOutcome(ctx, t, root, e, retried)
	case store.EventTicketEdited:
		if !fresh { // a fresh root shows the new text already
			if err := a.updateRoot(ctx, t, root); err != nil {
				return err
			}
		}
		who, err := a.personLabel(ctx, e.ActorType, e.ActorID)
		if err != nil {
			return err
		}
		return a.postLine(ctx, t, root, e, retried, ":pencil2: "+who+" edited the message that opened the ticket; the text above is the new one")
	case store.EventSLAReminder, store.EventSLABreached:
		return a.deliverFirstResponse(ctx, t, root, e, retried)
	}
	return notify.Skipped("Slack does not show " + string(e.Kind))
}

// message is a Slack message: its channel and ts.
type message struct{ channel, ts string }

func (m message) key() string { return slackui.MessageKey(m.channel, m.ts) }
