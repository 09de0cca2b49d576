package slackin

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/slack-go/slack"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/internal/slackui"
	"github.com/ticketd/ticketd/store"
)

// maxKnownNotRoots bounds the cache of messages known not to be a ticket's
// root message.
const maxKnownNotRoots = 1024

// bindPostedRoot finds the ticket of a root message in the agents' channel
// that is not bound (yet): the sink posts a root message before it binds it
// (notify/slackout), so a reply, reaction or click can arrive in between,
// or after a crash between the two, until the sink's retry binds it. Slack
// is asked for the message (one call); when the bot posted it with
// metadata naming a ticket that exists, the message is bound to that ticket
// here (the sink's own bind then finds it bound to the same ticket) and
// ok=true. Any other message, or none, is not a ticket's thread (ok=false;
// a message found and not ours is remembered, so chatter in other threads
// does not cost a call each time).
// A failure to ask Slack is returned: the event is not acknowledged and
// Slack delivers it again.
func (h *Bridge) bindPostedRoot(ctx context.Context, channel, ts string) (bson.ObjectID, bool, error) {
	key := slackui.MessageKey(channel, ts)
	if h.notRoots.has(key) {
		return bson.NilObjectID, false, nil
	}
	// The one top-level message with this ts (a thread reply is not in the
	// history, and is no root).
	hist, err := h.o.Slack.GetConversationHistoryContext(ctx, &slack.GetConversationHistoryParameters{
		ChannelID: channel, Oldest: ts, Latest: ts, Inclusive: true, Limit: 1, IncludeAllMetadata: true,
	})
	if err != nil {
		return bson.NilObjectID, false, fmt.Errorf("look up unbound thread root %s: %w", key, err)
	}
	var root *slack.Message
	for i := range hist.Messages {
		if m := &hist.Messages[i]; m.Timestamp == ts && (m.ThreadTimestamp == "" || m.ThreadTimestamp == ts) {
			root = m
		}
	}
	if root == nil {
		// Not remembered: a reply's ts (a reaction on it) costs a call each
		// time, but a root Slack's history did not show yet is not lost.
		return bson.NilObjectID, false, nil
	}
	ticketID, ok := h.postedFor(root)
	if !ok {
		h.notRoots.add(key)
		return bson.NilObjectID, false, nil
	}
	if _, err := h.o.Store.Ticket(ctx, ticketID, store.AllTickets); errors.Is(err, store.ErrNotFound) {
		h.notRoots.add(key) // a deleted ticket's root
		return bson.NilObjectID, false, nil
	} else if err != nil {
		return bson.NilObjectID, false, err
	}
	err = h.o.Store.BindThread(ctx, ticketID, store.ThreadSlackAgents, key)
	if errors.Is(err, store.ErrConflict) {
		// Bound to another ticket meanwhile: the binding is what counts.
		id, err := h.o.Store.TicketIDByThread(ctx, store.ThreadSlackAgents, key)
		return id, err == nil, err
	}
	if err != nil {
		return bson.NilObjectID, false, fmt.Errorf("bind posted root %s to ticket %s: %w", key, ticketID.Hex(), err)
	}
	h.log.Info("unbound root message bound from its metadata", "ticket", ticketID.Hex(), "key", key)
	return ticketID, true, nil
}

// postedFor returns the ticket a message was posted for by this bot, read
// from its metadata. Only the bot's own messages count: anyone may put
// metadata on a message of theirs.
func (h *Bridge) postedFor(m *slack.Message) (bson.ObjectID, bool) {
	byBot := m.User == h.o.BotUserID || (m.User == "" && h.o.BotID != "" && m.BotID == h.o.BotID)
	if !byBot {
		return bson.NilObjectID, false
	}
	hex, _, ok := slackui.ParseMetadata(m.Metadata)
	if !ok {
		return bson.NilObjectID, false
	}
	id, err := bson.ObjectIDFromHex(hex)
	return id, err == nil
}

// keySet is a bounded set of message keys: past its size, the oldest key
// is forgotten (and costs one more call when seen again).
type keySet struct {
	mu    sync.Mutex
	keys  map[string]bool
	order []string // ring of the keys, oldest at next
	next  int
}

func newKeySet(size int) *keySet {
	return &keySet{keys: make(map[string]bool, size), order: make([]string, 0, size)}
}

func (s *keySet) has(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[key]
}

func (s *keySet) add(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys[key] {
		return
	}
	if len(s.order) < cap(s.order) {
		s.order = append(s.order, key)
	} else {
		delete(s.keys, s.order[s.next])
		s.order[s.next] = key
		s.next = (s.next + 1) % len(s.order)
	}
	s.keys[key] = true
}
