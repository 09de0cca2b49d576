package slackout

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/slack-go/slack"
	"github.com/ticketd/ticketd/internal/slackui"
	"github.com/ticketd/ticketd/store"
)

// clockSkew widens the history search for a root message: Slack's clock and
// ours may disagree by this much.
const clockSkew = 5 * time.Minute

// ensureRoot returns the ticket's root message in the agents' channel,
// posting it when there is none; fresh reports that it was posted (or found
// unbound) just now, so it shows the ticket's current state.
//
// Only a retry can find a root already posted: the first attempt of a
// ticket.created delivery is the ticket's first delivery to this sink (the
// runner delivers a ticket's events in order), so it posts without the
// search, which costs up to HistoryPages calls of a rate-limited method.
func (a *Adapter) ensureRoot(ctx context.Context, t *store.Ticket, d *store.Delivery) (root message, fresh bool, err error) {
	e := d.Event
	if key := t.Thread(store.ThreadSlackAgents); key != "" {
		ch, ts, ok := slackui.ParseMessageKey(key)
		if !ok {
			return message{}, false, permanent(fmt.Errorf("slack: ticket %s has a malformed thread key %q", t.ID.Hex(), key))
		}
		return message{channel: ch, ts: ts}, false, nil
	}
	// Slack may have accepted a root message whose ts we never stored (a
	// crash, a lost answer): find it before posting another.
	found := false
	if d.Attempts > 1 || e.Kind != store.EventTicketCreated {
		if root, found, err = a.findRoot(ctx, t); err != nil {
			return message{}, false, err
		}
	}
	if found {
		a.log.Info("root message found in history; binding it", "ticket", t.ID.Hex(), "ts", root.ts)
		if err := a.updateRoot(ctx, t, root); err != nil { // it may show an older state
			return message{}, false, err
		}
	} else {
		blocks, err := a.rootBlocks(ctx, t)
		if err != nil {
			return message{}, false, err
		}
		ch, ts, err := a.api.PostMessageContext(ctx, a.o.Channel,
			slack.MsgOptionText(slackui.RootText(t), false),
			slack.MsgOptionBlocks(blocks...),
			slack.MsgOptionMetadata(slackui.Metadata(t.ID, e.ID)))
		if err != nil {
			return message{}, false, classify("post root message", err)
		}
		root = message{channel: ch, ts: ts}
		if root.channel == "" {
			root.channel = a.o.Channel
		}
	}
	if err := a.st.BindThread(ctx, t.ID, store.ThreadSlackAgents, root.key()); err != nil {
		return message{}, false, fmt.Errorf("slack: bind root message %s to ticket %s: %w", root.key(), t.ID.Hex(), err)
	}
	return root, true, nil
}

// findRoot looks through the channel's history since the ticket was
// created, newest first and at most HistoryPages pages, for a top-level
// message of ours whose metadata names the ticket.
func (a *Adapter) findRoot(ctx context.Context, t *store.Ticket) (message, bool, error) {
	return a.findTop(ctx, a.o.Channel, t.CreatedAt, t.ID.Hex(), "", "search channel history for a root message")
}

// findTop looks through a channel's history since a time (less the clock
// skew), newest first and at most HistoryPages pages, for a top-level
// message of ours for the ticket (and, when eventID is set, that event).
func (a *Adapter) findTop(ctx context.Context, channel string, since time.Time, ticketID, eventID, op string) (message, bool, error) {
	p := &slack.GetConversationHistoryParameters{
		ChannelID:          channel,
		Oldest:             slackTS(since.Add(-clockSkew)),
		Limit:              historyPageSize,
		IncludeAllMetadata: true,
	}
	for page := 0; page < a.o.HistoryPages; page++ {
		h, err := a.api.GetConversationHistoryContext(ctx, p)
		if err != nil {
			return message{}, false, classify(op, err)
		}
		for _, m := range h.Messages {
			if m.ThreadTimestamp != "" && m.ThreadTimestamp != m.Timestamp {
				continue // a reply broadcast to the channel, not a root
			}
			if a.ours(m, ticketID, eventID) {
				return message{channel: channel, ts: m.Timestamp}, true, nil
			}
		}
		if !h.HasMore || h.ResponseMetaData.NextCursor == "" {
			break
		}
		p.Cursor = h.ResponseMetaData.NextCursor
	}
	return message{}, false, nil
}

// ours reports whether a message was posted by this bot for the ticket
// (and, when eventID is set, for that event).
func (a *Adapter) ours(m slack.Message, ticketID, eventID string) bool {
	if !a.byBot(m) {
		return false
	}
	tid, eid, ok := slackui.ParseMetadata(m.Metadata)
	return ok && tid == ticketID && (eventID == "" || eid == eventID)
}

// byBot reports whether a message may be the bot's: its user is the bot
// user, or, when Slack leaves the user out, it carries a bot id.
func (a *Adapter) byBot(m slack.Message) bool {
	return a.o.BotUserID == "" || m.User == a.o.BotUserID || m.User == "" && m.BotID != ""
}

// updateRoot renders the root message again from the ticket's current
// state.
func (a *Adapter) updateRoot(ctx context.Context, t *store.Ticket, root message) error {
	blocks, err := a.rootBlocks(ctx, t)
	if err != nil {
		return err
	}
	_, _, _, err = a.api.UpdateMessageContext(ctx, root.channel, root.ts,
		slack.MsgOptionText(slackui.RootText(t), false),
		slack.MsgOptionBlocks(blocks...))
	if err != nil {
		return classify("update root message", err)
	}
	return nil
}

func (a *Adapter) rootBlocks(ctx context.Context, t *store.Ticket) ([]slack.Block, error) {
	customer, err := a.creatorLabel(ctx, t)
	if err != nil {
		return nil, err
	}
	r := slackui.Root{Ticket: t, Customer: customer}
	if t.AssigneeID != nil {
		ag, err := a.st.Agent(ctx, *t.AssigneeID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			r.Assignee = "unknown agent"
		case err != nil:
			return nil, fmt.Errorf("slack: load assignee of ticket %s: %w", t.ID.Hex(), err)
		default:
			r.Assignee = slackui.AgentLabel(ag.Name, ag.Email, ag.SlackUserID)
		}
	}
	r.Note = a.customerThreadNote(ctx, t)
	return slackui.RootBlocks(r), nil
}

// customerThreadNote links the customer's own Slack thread, for a ticket
// that has one. The link is a convenience: without it (Slack cannot say)
// the root message still goes out.
func (a *Adapter) customerThreadNote(ctx context.Context, t *store.Ticket) string {
	ch, ts, ok := slackui.ParseMessageKey(t.Thread(store.ThreadSlackCustomer))
	if !ok {
		return ""
	}
	where, thread := "<#"+ch+">", "their thread in <#"+ch+">"
	if strings.HasPrefix(ch, "D") { // a direct message: no channel to name
		where, thread = "a direct message to the app", "a direct message to the app"
	}
	link, err := a.api.GetPermalinkContext(ctx, &slack.PermalinkParameters{Channel: ch, Ts: ts})
	if err != nil || link == "" {
		a.log.Warn("no permalink for the customer's thread", "ticket", t.ID.Hex(), "channel", ch, "ts", ts, "err", err)
		return "The customer writes in " + where + "."
	}
	return "The customer writes in <" + link + "|" + thread + ">."
}

// creatorLabel names who opened the ticket: a customer by name and address,
// or the agent who opened it for one.
func (a *Adapter) creatorLabel(ctx context.Context, t *store.Ticket) (string, error) {
	ag, c, err := a.who(ctx, t.CreatorType, t.CreatorID)
	switch {
	case err != nil:
		return "", err
	case ag != nil:
		return slackui.AgentLabel(ag.Name, ag.Email, ag.SlackUserID) + " (agent)", nil
	case c != nil:
		return slackui.CustomerLabel(c.Name, c.Email, ""), nil
	}
	return "unknown", nil
}

// slackTS is a time as a Slack timestamp ("seconds.micros").
func slackTS(t time.Time) string {
	if t.Before(time.Unix(0, 0)) {
		return "0"
	}
	us := t.UnixMicro()
	return strconv.FormatInt(us/1e6, 10) + "." + fmt.Sprintf("%06d", us%1e6)
}
