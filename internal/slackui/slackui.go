// Package slackui holds what both sides of the Slack bridge must agree on:
// the agents' root message of a ticket (rendered here, so that a chat.update
// from the sink or from the interaction handler shows the same thing), the
// action ids and values of its buttons and select, the message metadata that
// names a ticket, and the key formats of Slack messages and threads.
//
// notify/slackout and ingest/slackin both import it; it imports only store
// and slack-go.
package slackui

import (
	"errors"
	"fmt"
	"strings"

	"github.com/slack-go/slack"
	"github.com/ticketd/ticketd/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// MetadataEventType is the event_type of the message metadata the bot puts
// on every message it posts for a ticket. Its payload has PayloadTicketID
// and PayloadEventID.
const MetadataEventType = "ticketd_ticket"

// The keys of the metadata payload.
const (
	PayloadTicketID = "ticket_id"
	PayloadEventID  = "event_id"
)

// Action ids of the root message's interactive elements. A status button's
// action id is ActionStatusPrefix followed by the status it sets (action ids
// must be unique within a block); the priority select's is ActionPriority.
// Every value, a button's or a select option's, is Value(ticketID, target).
const (
	ActionStatusPrefix = "ticketd_status_"
	ActionPriority     = "ticketd_priority"
	// BlockActions is the block id of the actions block.
	BlockActions = "ticketd_actions"
)

// ButtonStatuses are the statuses the root message offers as buttons, in
// the order they are shown.
var ButtonStatuses = []store.Status{store.StatusOpen, store.StatusInProgress, store.StatusResolved, store.StatusClosed}

// StatusActionID is the action id of the button that sets status s.
func StatusActionID(s store.Status) string { return ActionStatusPrefix + string(s) }

// IsStatusAction reports whether an action id is a status button's.
func IsStatusAction(actionID string) bool { return strings.HasPrefix(actionID, ActionStatusPrefix) }

// Value is the value of an interactive element: which ticket, and what to
// set it to ("<ticketID hex>|<status or priority>").
func Value(ticket bson.ObjectID, target string) string { return ticket.Hex() + "|" + target }

// ErrBadValue says an action value is not one Value made.
var ErrBadValue = errors.New("not a ticketd action value")

// ParseValue splits a Value. The ticket named is outside data: whoever acts
// on it must still check that the actor may change that ticket.
func ParseValue(v string) (bson.ObjectID, string, error) {
	hex, target, ok := strings.Cut(v, "|")
	if !ok || target == "" {
		return bson.NilObjectID, "", fmt.Errorf("%w: %q", ErrBadValue, v)
	}
	id, err := bson.ObjectIDFromHex(hex)
	if err != nil {
		return bson.NilObjectID, "", fmt.Errorf("%w: %q", ErrBadValue, v)
	}
	return id, target, nil
}

// Metadata is the message metadata naming a ticket and the event a message
// was posted for; the sink finds its own earlier posts by it.
func Metadata(ticket, event bson.ObjectID) slack.SlackMetadata {
	return slack.SlackMetadata{
		EventType: MetadataEventType,
		EventPayload: map[string]any{
			PayloadTicketID: ticket.Hex(),
			PayloadEventID:  event.Hex(),
		},
	}
}

// ParseMetadata returns the ticket and event ids (hex) of a message's
// metadata, ok=false when it is not ours.
func ParseMetadata(m slack.SlackMetadata) (ticketID, eventID string, ok bool) {
	if m.EventType != MetadataEventType {
		return "", "", false
	}
	ticketID, _ = m.EventPayload[PayloadTicketID].(string)
	eventID, _ = m.EventPayload[PayloadEventID].(string)
	return ticketID, eventID, ticketID != ""
}

// MessageKey is "<channelID>/<ts>": the key of one Slack message, used as
// the agents' thread binding (store.ThreadSlackAgents) of a ticket whose
// root message it is.
func MessageKey(channel, ts string) string { return channel + "/" + ts }

// ParseMessageKey splits a MessageKey.
func ParseMessageKey(key string) (channel, ts string, ok bool) {
	channel, ts, ok = strings.Cut(key, "/")
	return channel, ts, ok && channel != "" && ts != ""
}

// SourceKeyPrefix starts the SourceKey of a response made from a Slack
// message: "slack:<channelID>/<ts>". The sink reacts on that message when
// the customer's mail was delivered (or not).
const SourceKeyPrefix = "slack:"

// SourceKey is the SourceKey of a response made from a Slack message.
func SourceKey(channel, ts string) string { return SourceKeyPrefix + MessageKey(channel, ts) }

// ParseSourceKey returns the message a response was made from, ok=false
// when it was not made from Slack.
func ParseSourceKey(key string) (channel, ts string, ok bool) {
	rest, found := strings.CutPrefix(key, SourceKeyPrefix)
	if !found {
		return "", "", false
	}
	return ParseMessageKey(rest)
}
