// Package email is the outbound email sink: an adapter for the delivery
// runner (package notify) that composes each "email" delivery into a mail
// to the customer and sends it through an SMTP submission server
// (github.com/wneessen/go-mail).
//
// What is mailed (see compose for the full policy): an acknowledgement when
// a customer opens a ticket, every agent response that is not an internal
// note, and every status change not made by the customer. Priority changes,
// delivery outcomes and anything the customer did are not mailed.
//
// Delivery is at least once (the runner's lease, backoff and dead letters).
// A mail's Message-ID is derived from the event, recorded on the ticket
// before the send, and identical on every attempt, so a repeat after a
// crash or a lost acknowledgement is recognisably the same message. A 5xx
// refusal of the message is permanent; 4xx, network errors, timeouts and
// connection-level errors are temporary (see isPermanent).
package email

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ticketd/ticketd/notify"
	"github.com/ticketd/ticketd/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// Sink is the outbox sink this adapter delivers; cmd lists it among the
// deployment's sinks when email is enabled.
const Sink = "email"

// Store is what the adapter reads and records to compose a mail: tickets
// and people, and the Message-IDs of the ticket's mail thread.
// *store.Store satisfies it.
type Store interface {
	Ticket(ctx context.Context, id bson.ObjectID, scope store.Scope) (*store.Ticket, error)
	Customer(ctx context.Context, id bson.ObjectID) (*store.Customer, error)
	Agent(ctx context.Context, id bson.ObjectID) (*store.Agent, error)
	AddMessageID(ctx context.Context, ticket bson.ObjectID, messageID string) error
}

// Adapter composes and sends mail for the delivery runner. Make it with
// NewAdapter.
type Adapter struct {
	cfg  *config
	st   Store
	log  *slog.Logger
	smtp sender
}

var _ notify.Adapter = (*Adapter)(nil)

// NewAdapter checks opts (every problem at once, as Validate) and returns
// an Adapter. A nil log means slog.Default().
func NewAdapter(opts Options, st Store, log *slog.Logger) (*Adapter, error) {
	if st == nil {
		return nil, errors.New("email notifier: nil store")
	}
	cfg, err := opts.compile()
	if err != nil {
		return nil, fmt.Errorf("email notifier options: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "notify-email")
	log.Info("email sink configured", "smtp", fmt.Sprintf("%s:%d", cfg.SMTP.Host, cfg.SMTP.Port),
		"security", cfg.SMTP.Security, "from", cfg.from.Address)
	return &Adapter{cfg: cfg, st: st, log: log, smtp: sender{cfg: cfg}}, nil
}

// RunnerOptions are the delivery runner's options for the email sink, from
// the retry settings of opts (with their defaults).
func (o Options) RunnerOptions() notify.Options { return o.Schedule.Options(Sink).WithDefaults() }

// Deliver composes, records the Message-ID on the ticket, and sends. A
// delivery that is deliberately not mailed returns notify.Skipped.
func (a *Adapter) Deliver(ctx context.Context, d *store.Delivery) error {
	out, sk, err := a.compose(ctx, d)
	if err != nil {
		return fmt.Errorf("compose mail: %w", err)
	}
	if sk != nil {
		if !sk.quiet {
			a.log.Info("not mailed", "delivery", d.ID, "reason", sk.reason)
		}
		return notify.Skipped(sk.reason)
	}
	// Record before sending: a reply to this mail must find the ticket even
	// if we crash right after the server accepted it. Idempotent.
	if err := a.st.AddMessageID(ctx, d.Event.TicketID, out.messageID); err != nil {
		return fmt.Errorf("record message id: %w", err)
	}
	start := time.Now()
	if err := a.smtp.send(ctx, out.msg); err != nil {
		if isPermanent(err) {
			return notify.Permanent(err)
		}
		return err
	}
	a.log.Info("mail sent", "delivery", d.ID, "mail", string(out.kind), "ref", out.refID, "message_id", out.messageID, "took", time.Since(start))
	return nil
}
