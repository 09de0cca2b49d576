package store

import (
	"context"
	"fmt"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// A ticket's bindings to outside threads (a mail thread's Message-IDs, the
// agents' Slack thread, a customer's Slack thread) are one mechanism: each
// is a unique key in the keys collection naming the ticket, so one outside
// thread never names two tickets and a lookup by any of them finds it.

// ThreadKind says what kind of outside thread a key names.
type ThreadKind string

// The thread kinds.
const (
	// ThreadMail: a Message-ID of the ticket's mail thread (any form; it is
	// normalized, see NormalizeMessageID).
	ThreadMail ThreadKind = "mail"
	// ThreadSlackAgents: "<channelID>/<ts>" of the ticket's root message in
	// the agents' channel.
	ThreadSlackAgents ThreadKind = "slack-agents"
	// ThreadSlackCustomer: "<channelID>/<ts>" of the customer's own message
	// thread that opened or continues the ticket.
	ThreadSlackCustomer ThreadKind = "slack-customer"
)

// ThreadRef is one outside thread of a ticket.
type ThreadRef struct {
	Kind ThreadKind `bson:"kind"`
	Key  string     `bson:"key"`
}

// Thread returns the key of the ticket's first thread of kind, or "".
func (t *Ticket) Thread(kind ThreadKind) string {
	if kind == ThreadMail && len(t.MessageIDs) > 0 {
		return t.MessageIDs[0]
	}
	for _, r := range t.Threads {
		if r.Kind == kind {
			return r.Key
		}
	}
	return ""
}

// threadKey is the keys collection's _id for a thread. Mail keeps the
// "msgid:" form it always had, so stored bindings keep threading.
func threadKey(kind ThreadKind, key string) (string, error) {
	switch kind {
	case ThreadMail:
		id := NormalizeMessageID(key)
		if id == "" {
			return "", fmt.Errorf("%w: empty Message-ID", ErrInvalid)
		}
		return "msgid:" + id, nil
	case ThreadSlackAgents, ThreadSlackCustomer:
		key = strings.TrimSpace(key)
		if key == "" {
			return "", fmt.Errorf("%w: empty %s thread key", ErrInvalid, kind)
		}
		return string(kind) + ":" + key, nil
	default:
		return "", fmt.Errorf("%w: thread kind %q", ErrInvalid, kind)
	}
}

// BindThread records that an outside thread belongs to a ticket: its key
// becomes unique to the ticket, and the ticket lists it (Threads; for mail,
// MessageIDs in header form). Binding it again to the same ticket is a
// no-op; a key that names another ticket already is ErrConflict, and
// nothing changes. Thread bookkeeping is not a change of the ticket: __v
// and updatedAt stay as they are.
func (s *Store) BindThread(ctx context.Context, ticket bson.ObjectID, kind ThreadKind, key string) error {
	k, err := threadKey(kind, key)
	if err != nil {
		return fmt.Errorf("bind thread: %w", err)
	}
	owner, err := s.bindKey(ctx, k, ticket)
	if err != nil {
		return err
	}
	if owner != ticket {
		return fmt.Errorf("bind %s to ticket %s: it names ticket %s: %w", k, ticket.Hex(), owner.Hex(), ErrConflict)
	}
	field, value := "threads", any(ThreadRef{Kind: kind, Key: strings.TrimSpace(key)})
	if kind == ThreadMail {
		field, value = "messageIds", headerMessageID(key)
	}
	unlock := s.locks.lock(ticket) // the embedded server's updates are read-modify-write
	defer unlock()
	s.recent.drop(ticket)
	_, err = s.tickets.UpdateOne(ctx, bson.D{{Key: "_id", Value: ticket}},
		bson.D{{Key: "$addToSet", Value: bson.D{{Key: field, Value: value}}}})
	if err != nil {
		return fmt.Errorf("add %s thread to ticket %s: %w", kind, ticket.Hex(), classify(err))
	}
	return nil
}

// TicketIDByThread returns the ticket an outside thread belongs to;
// ErrNotFound when none.
func (s *Store) TicketIDByThread(ctx context.Context, kind ThreadKind, key string) (bson.ObjectID, error) {
	k, err := threadKey(kind, key)
	if err != nil {
		if kind == ThreadMail || kind == ThreadSlackAgents || kind == ThreadSlackCustomer {
			return bson.NilObjectID, ErrNotFound // an empty key names nothing
		}
		return bson.NilObjectID, fmt.Errorf("find thread: %w", err)
	}
	return s.lookupKey(ctx, k)
}
