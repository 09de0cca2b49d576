package slackin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/internal/slackui"
	"github.com/ticketd/ticketd/store"
)

// Message subtypes.
const (
	subtypeFileShare      = "file_share"
	subtypeThreadBroadcst = "thread_broadcast" // a thread reply also sent to the channel
	subtypeBotMessage     = "bot_message"
	subtypeChanged        = "message_changed"
	subtypeDeleted        = "message_deleted"
)

// Reactions the handler puts on an agent's message.
const reactionNote = "lock" // stored as an internal note: the customer will not see it

// onAgentsMessage handles a message event in the agents' channel: a reply
// in a ticket's thread, or the edit or deletion of one. Every other subtype
// (joins, topic changes, pins...) is ignored.
func (h *Bridge) onAgentsMessage(ctx context.Context, e *slackevents.MessageEvent) error {
	switch e.SubType {
	case "", subtypeFileShare, subtypeThreadBroadcst:
		return h.onAgentReply(ctx, e)
	case subtypeChanged:
		if e.Message == nil {
			break
		}
		return h.onAgentMessageGone(ctx, e.Channel, e.Message, e.PreviousMessage, "edited")
	case subtypeDeleted:
		if e.PreviousMessage == nil {
			break
		}
		return h.onAgentMessageGone(ctx, e.Channel, e.PreviousMessage, nil, "deleted")
	}
	h.Counts.Ignored.Add(1)
	return nil
}

// fromBot says whether a message was written by a bot or app, this one
// included: those are never stored (the bot's own posts would loop).
func (h *Bridge) fromBot(user, botID, subtype string) bool {
	return user == "" || user == h.o.BotUserID || botID != "" || subtype == subtypeBotMessage
}

// threadTicket returns the ticket whose root message in the agents'
// channel is the thread a message belongs to; ok=false (counted as
// ignored) for a top-level message or a thread that is not a ticket's.
func (h *Bridge) threadTicket(ctx context.Context, channel, ts, threadTS string) (bson.ObjectID, bool, error) {
	if threadTS == "" || threadTS == ts {
		h.Counts.Ignored.Add(1)
		return bson.NilObjectID, false, nil
	}
	return h.rootTicket(ctx, channel, threadTS)
}

// onAgentReply stores a human's reply in a ticket thread as that agent's
// response: to the customer, or an internal note (then marked with a lock
// at once).
func (h *Bridge) onAgentReply(ctx context.Context, e *slackevents.MessageEvent) error {
	if h.fromBot(e.User, e.BotID, e.SubType) {
		h.Counts.Ignored.Add(1)
		return nil
	}
	ticketID, ok, err := h.threadTicket(ctx, e.Channel, e.TimeStamp, e.ThreadTimeStamp)
	if err != nil || !ok {
		return err
	}
	a, err := h.actingAgent(ctx, e.User, e.Channel, e.ThreadTimeStamp)
	if err != nil || a == nil {
		return err
	}
	key := slackui.SourceKey(e.Channel, e.TimeStamp)
	text, internal := h.intent(e.Text)
	var files []slack.File
	if e.Message != nil {
		files = e.Message.Files
	}
	if len(files) > 0 {
		// Downloads may outlast the connection's deadline (Slack wants an
		// answer within 3 s): the reply is then stored anyway, unacked, and
		// Slack's redelivery finds it stored without downloading again.
		stored, err := h.storedReply(ctx, ticketID, key)
		if err != nil || stored {
			if stored {
				h.Counts.Deduplicated.Add(1)
				return h.reactIfNote(ctx, internal, e.Channel, e.TimeStamp)
			}
			return err
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), filesTimeout)
		defer cancel()
	}
	text, _, stored, err := h.body(ctx, ticketID, key, text, files)
	if err != nil {
		return err
	}
	if text == "" && len(stored) == 0 {
		h.Counts.Ignored.Add(1) // a bare note prefix: nothing to store
		return nil
	}
	if err := h.addResponse(ctx, ticketID, store.AllTickets, store.NewResponse{
		Author:      agentActor(a),
		Description: text,
		Source:      store.SourceSlack,
		SourceKey:   key,
		Internal:    internal,
		Attachments: stored,
	}); err != nil {
		return err
	}
	return h.reactIfNote(ctx, internal, e.Channel, e.TimeStamp)
}

// addResponse stores a reply made from a Slack message (once: its
// SourceKey) and counts it.
func (h *Bridge) addResponse(ctx context.Context, ticketID bson.ObjectID, scope store.Scope, in store.NewResponse) error {
	_, added, err := h.o.Store.AddResponse(ctx, ticketID, scope, in)
	if err != nil {
		return fmt.Errorf("store reply %s on ticket %s: %w", in.SourceKey, ticketID.Hex(), err)
	}
	if added {
		h.Counts.Applied.Add(1)
	} else {
		h.Counts.Deduplicated.Add(1)
	}
	return nil
}

// reactIfNote marks an internal note with a lock; also when the note was
// stored before, as a crash may have come between the store and the
// reaction.
func (h *Bridge) reactIfNote(ctx context.Context, internal bool, channel, ts string) error {
	if !internal {
		return nil
	}
	return h.react(ctx, reactionNote, channel, ts)
}

// storedReply says whether the ticket has the response made from a Slack
// message already.
func (h *Bridge) storedReply(ctx context.Context, ticketID bson.ObjectID, key string) (bool, error) {
	_, err := h.storedResponse(ctx, ticketID, key)
	if errors.Is(err, errNoResponse) {
		return false, nil
	}
	return err == nil, err
}

var errNoResponse = errors.New("no response from this Slack message")

// storedResponse returns the response made from a Slack message.
func (h *Bridge) storedResponse(ctx context.Context, ticketID bson.ObjectID, key string) (*store.Response, error) {
	t, err := h.o.Store.Ticket(ctx, ticketID, store.AllTickets)
	if err != nil {
		return nil, err
	}
	for i := range t.Response {
		if t.Response[i].SourceKey == key {
			return &t.Response[i], nil
		}
	}
	return nil, errNoResponse
}

// intent reads whether a reply is meant for the customer or is an internal
// note, and returns its text without the marker. The note prefix always
// makes a note; with ReplyDefault internal, only a reply starting with
// CustomerPrefix goes to the customer.
func (h *Bridge) intent(text string) (string, bool) {
	t := strings.TrimLeftFunc(text, unicode.IsSpace)
	if rest, ok := strings.CutPrefix(t, h.o.NotePrefix); ok {
		return strings.TrimSpace(rest), true
	}
	if h.o.ReplyDefault == ReplyInternal {
		if rest, ok := cutWord(t, CustomerPrefix); ok {
			return strings.TrimSpace(rest), false
		}
		return strings.TrimSpace(text), true
	}
	return strings.TrimSpace(text), false
}

// cutWord removes word from the start of s when it is there as a whole word
// (any case), followed by a space or nothing.
func cutWord(s, word string) (string, bool) {
	if len(s) < len(word) || !strings.EqualFold(s[:len(word)], word) {
		return s, false
	}
	rest := s[len(word):]
	if rest != "" && !unicode.IsSpace([]rune(rest)[0]) {
		return s, false
	}
	return rest, true
}

// react puts a reaction on a message; one it has already is fine. Slack's
// refusals are logged (the reply is stored either way); a failure to reach
// Slack is returned, so the event is redelivered and the reaction retried.
func (h *Bridge) react(ctx context.Context, name, channel, ts string) error {
	err := h.o.Slack.AddReactionContext(ctx, name, slack.NewRefToMessage(channel, ts))
	var slackErr slack.SlackErrorResponse
	switch {
	case err == nil:
		return nil
	case errors.As(err, &slackErr) && slackErr.Err == "already_reacted":
		return nil
	case errors.As(err, &slackErr):
		h.log.Warn("reaction not added", "reaction", name, "channel", channel, "ts", ts, "error", err)
		return nil
	}
	return fmt.Errorf("add reaction %s to %s/%s: %w", name, channel, ts, err)
}

// onAgentMessageGone records that an agent's message stored as a response
// was edited or deleted in Slack afterwards: the stored response (and what
// the customer was sent) stays as it was, the audit log says what happened,
// and the thread is told. msg is the message as it is now (edited) or was
// (deleted); prev, for an edit, what it was before.
func (h *Bridge) onAgentMessageGone(ctx context.Context, channel string, msg, prev *slack.Msg, what string) error {
	if h.fromBot(msg.User, msg.BotID, msg.SubType) || (prev != nil && prev.Text == msg.Text && len(prev.Files) == len(msg.Files)) {
		// The bot's own posts, and changes that are not edits (an unfurl
		// added, a reply count on a root message).
		h.Counts.Ignored.Add(1)
		return nil
	}
	ticketID, ok, err := h.threadTicket(ctx, channel, msg.Timestamp, msg.ThreadTimestamp)
	if err != nil || !ok {
		return err
	}
	key := slackui.SourceKey(channel, msg.Timestamp)
	r, err := h.storedResponse(ctx, ticketID, key)
	if errors.Is(err, errNoResponse) { // never stored (a refused user's message): nothing to say
		h.Counts.Ignored.Add(1)
		return nil
	}
	if err != nil {
		return err
	}
	by := store.Actor{ID: r.CreatorID, Type: r.CreatorType, Via: store.SourceSlack}
	kind, aKind, keeps := "reply", "a reply", "The customer has the original; to correct it, reply again."
	if r.Internal {
		kind, aKind, keeps = "internal note", "an internal note", "The ticket keeps the original note."
	}
	line := fmt.Sprintf("Slack message of %s %s %s after it was stored (%s); the stored text is unchanged", kind, r.ID.Hex(), what, key)
	if err := h.o.Store.AddLog(ctx, ticketID, store.AllTickets, by, line); err != nil {
		return fmt.Errorf("audit %s message %s: %w", what, key, err)
	}
	h.Counts.Applied.Add(1)
	notice := fmt.Sprintf(":warning: <@%s> %s %s after it was stored. %s", msg.User, what, aKind, keeps)
	if _, _, err := h.o.Slack.PostMessageContext(ctx, channel, slack.MsgOptionText(notice, false), slack.MsgOptionTS(msg.ThreadTimestamp)); err != nil {
		// The audit line is what counts; retrying the event would add it twice.
		h.log.Warn("thread notice not posted", "ticket", ticketID.Hex(), "what", what, "error", err)
	}
	return nil
}
