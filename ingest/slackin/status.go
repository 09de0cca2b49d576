package slackin

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/internal/slackui"
	"github.com/ticketd/ticketd/store"
)

// Reaction shortcuts on a ticket's root message.
const (
	reactionResolve = "white_check_mark" // resolved
	reactionTake    = "eyes"             // in progress, assigned to whoever reacted if unassigned
)

// maxActionsPerPayload bounds the actions one interaction applies (a click
// carries one).
const maxActionsPerPayload = 5

// HandleInteraction applies the root message's status buttons and priority
// select. The ticket an action names must be the one whose root message it
// was clicked on; other interactions are ignored.
func (h *Bridge) HandleInteraction(ctx context.Context, cb slack.InteractionCallback) error {
	if cb.Type != slack.InteractionTypeBlockActions {
		h.Counts.Ignored.Add(1)
		return nil
	}
	channel := cb.Container.ChannelID
	if channel == "" {
		channel = cb.Channel.ID
	}
	root, ok, err := h.rootTicket(ctx, channel, cb.Container.MessageTs)
	if err != nil || !ok {
		return err
	}
	var updates []store.TicketUpdate
	for i, a := range cb.ActionCallback.BlockActions {
		if i == maxActionsPerPayload {
			break
		}
		u, ok := actionUpdate(a, root)
		if !ok {
			h.log.Warn("block action ignored", "action", a.ActionID, "value", a.Value, "ticket", root.Hex())
			continue
		}
		updates = append(updates, u)
	}
	if len(updates) == 0 {
		h.Counts.Ignored.Add(1)
		return nil
	}
	a, err := h.actingAgent(ctx, cb.User.ID, channel, "")
	if err != nil || a == nil {
		return err
	}
	for _, u := range updates {
		_, err := h.o.Store.UpdateTicket(ctx, root, store.AllTickets, u, agentActor(a))
		if gone(err) {
			h.Counts.Ignored.Add(1)
			return nil
		}
		if err != nil {
			return fmt.Errorf("apply action on ticket %s: %w", root.Hex(), err)
		}
	}
	h.Counts.Applied.Add(1)
	return nil
}

// actionUpdate reads a status button or the priority select. The ticket
// the value names is outside data: it must be the root message's.
func actionUpdate(a *slack.BlockAction, root bson.ObjectID) (store.TicketUpdate, bool) {
	value := a.Value
	if a.ActionID == slackui.ActionPriority {
		value = a.SelectedOption.Value
	}
	id, target, err := slackui.ParseValue(value)
	if err != nil || id != root {
		return store.TicketUpdate{}, false
	}
	switch {
	case slackui.IsStatusAction(a.ActionID) && store.Status(target).Valid():
		s := store.Status(target)
		return store.TicketUpdate{Status: &s}, true
	case a.ActionID == slackui.ActionPriority && store.Priority(target).Valid():
		p := store.Priority(target)
		return store.TicketUpdate{Priority: &p}, true
	}
	return store.TicketUpdate{}, false
}

// rootTicket returns the ticket whose root message in the agents' channel
// is channel/ts; ok=false (counted as ignored) for any other message.
func (h *Bridge) rootTicket(ctx context.Context, channel, ts string) (bson.ObjectID, bool, error) {
	if channel != h.o.Channel || ts == "" {
		h.Counts.Ignored.Add(1)
		return bson.NilObjectID, false, nil
	}
	id, err := h.o.Store.TicketIDByThread(ctx, store.ThreadSlackAgents, slackui.MessageKey(channel, ts))
	if errors.Is(err, store.ErrNotFound) {
		h.Counts.Ignored.Add(1)
		return bson.NilObjectID, false, nil
	}
	if err != nil {
		return bson.NilObjectID, false, err
	}
	return id, true, nil
}

// onReaction applies the reaction shortcuts on a root message: ✅ resolves,
// 👀 takes the ticket (in progress, and assigned to whoever reacted unless
// someone has it). Reactions elsewhere, and other reactions, are ignored.
func (h *Bridge) onReaction(ctx context.Context, e *slackevents.ReactionAddedEvent) error {
	if e.Item.Type != "message" || e.User == h.o.BotUserID || (e.Reaction != reactionResolve && e.Reaction != reactionTake) {
		h.Counts.Ignored.Add(1)
		return nil
	}
	root, ok, err := h.rootTicket(ctx, e.Item.Channel, e.Item.Timestamp)
	if err != nil || !ok {
		return err
	}
	a, err := h.actingAgent(ctx, e.User, e.Item.Channel, "")
	if err != nil || a == nil {
		return err
	}
	var u store.TicketUpdate
	switch e.Reaction {
	case reactionResolve:
		s := store.StatusResolved
		u.Status = &s
	case reactionTake:
		s := store.StatusInProgress
		u.Status = &s
		t, err := h.o.Store.Ticket(ctx, root, store.AllTickets)
		if err != nil {
			return err
		}
		if t.AssigneeID == nil {
			u.AssigneeID = &a.ID
		}
	}
	if _, err := h.o.Store.UpdateTicket(ctx, root, store.AllTickets, u, agentActor(a)); err != nil {
		return fmt.Errorf("apply :%s: on ticket %s: %w", e.Reaction, root.Hex(), err)
	}
	h.Counts.Applied.Add(1)
	return nil
}

// commandHelp is the /ticket command's answer to anything it does not read.
const commandHelp = "Usage:\n" +
	"• `/ticket 42` shows ticket #42\n" +
	"• `/ticket 42 resolved` sets its status (created, open, in-progress, resolved, closed)\n" +
	"• `/ticket 42 priority high` sets its priority (low, medium, high, urgent)\n" +
	"• `/ticket 42 assign me` assigns it to you"

// HandleCommand answers the /ticket slash command, always ephemerally:
// a summary, a status, priority or assignee change, or the help text.
func (h *Bridge) HandleCommand(ctx context.Context, cmd slack.SlashCommand) (*slack.Msg, error) {
	ref, u, ok := parseCommand(cmd.Text)
	if !ok {
		h.Counts.Ignored.Add(1)
		return ephemeral(commandHelp), nil
	}
	a, why, err := h.commandAgent(ctx, cmd)
	if err != nil {
		return nil, err
	}
	if a == nil {
		h.Counts.Refused.Add(1)
		return ephemeral(why), nil
	}
	t, err := h.o.Store.TicketByRef(ctx, ref, store.AllTickets)
	if errors.Is(err, store.ErrNotFound) {
		return ephemeral(fmt.Sprintf("There is no ticket #%d.", ref)), nil
	}
	if err != nil {
		return nil, err
	}
	if u.AssigneeID != nil {
		u.AssigneeID = &a.ID // "assign me"
	}
	if u != (store.TicketUpdate{}) {
		if t, err = h.o.Store.UpdateTicket(ctx, t.ID, store.AllTickets, u, agentActor(a)); err != nil {
			return nil, fmt.Errorf("/ticket %d: %w", ref, err)
		}
	}
	h.Counts.Applied.Add(1)
	return ephemeral(summary(t, a)), nil
}

// parseCommand reads "/ticket <ref> [<status> | priority <p> | assign me]".
// An "assign me" comes back as a non-nil AssigneeID the caller fills in.
func parseCommand(text string) (int64, store.TicketUpdate, bool) {
	var u store.TicketUpdate
	words := strings.Fields(strings.ToLower(text))
	if len(words) == 0 || len(words) > 3 {
		return 0, u, false
	}
	ref, err := strconv.ParseInt(strings.TrimPrefix(words[0], "#"), 10, 64)
	if err != nil || ref <= 0 {
		return 0, u, false
	}
	args := words[1:]
	switch {
	case len(args) == 0:
		return ref, u, true
	case len(args) == 1 && store.Status(statusAlias(args[0])).Valid():
		s := store.Status(statusAlias(args[0]))
		u.Status = &s
	case len(args) == 2 && args[0] == "priority" && store.Priority(args[1]).Valid():
		p := store.Priority(args[1])
		u.Priority = &p
	case len(args) == 2 && args[0] == "assign" && args[1] == "me":
		u.AssigneeID = &bson.ObjectID{}
	default:
		return 0, u, false
	}
	return ref, u, true
}

// statusAlias accepts the ways people type "in-progress".
func statusAlias(s string) string {
	switch s {
	case "in_progress", "inprogress", "progress":
		return string(store.StatusInProgress)
	}
	return s
}

// summary is the command's answer: the ticket as it is now.
func summary(t *store.Ticket, me *store.Agent) string {
	assignee := "unassigned"
	if t.AssigneeID != nil {
		assignee = "assigned"
		if *t.AssigneeID == me.ID {
			assignee = "assigned to you"
		}
	}
	return fmt.Sprintf("*#%d %s*\nStatus: %s · Priority: %s · %s · %d responses",
		t.RefID, slackui.Mrkdwn(t.Subject, 200), t.Status, t.Priority, assignee, len(t.Response))
}

func ephemeral(text string) *slack.Msg {
	return &slack.Msg{ResponseType: slack.ResponseTypeEphemeral, Text: text}
}
