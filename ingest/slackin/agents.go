package slackin

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/slack-go/slack"

	"github.com/ticketd/ticketd/store"
)

// The refusals shown (ephemerally) to someone who may not act on tickets.
const (
	refuseBot      = "Only support agents can work on tickets from Slack; bots and apps cannot."
	refuseExternal = "Only members of this workspace's support team can work on tickets from Slack. Nothing was changed."
	refuseNoEmail  = "Your Slack profile shows no email address, so you cannot be matched to a support agent. Nothing was changed."
	refuseUnknown  = "Your Slack account could not be matched to a support agent. Nothing was changed."
	refuseOutside  = "Use /ticket in the agents' channel: elsewhere only people already known as support agents can work on tickets. Nothing was changed."
)

// agent returns the agent a Slack user is. When the user may not act, it
// returns the refusal to show them instead (and a nil agent); an error is
// a failure worth retrying (the store or Slack unreachable).
func (h *Bridge) agent(ctx context.Context, userID string) (*store.Agent, string, error) {
	if userID == "" || userID == h.o.BotUserID {
		return nil, refuseBot, nil
	}
	a, err := h.o.Store.AgentBySlackUser(ctx, userID)
	if err == nil {
		return a, "", nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, "", err
	}
	u, err := h.o.Slack.GetUserInfoContext(ctx, userID)
	var slackErr slack.SlackErrorResponse
	if errors.As(err, &slackErr) {
		// Slack answered, and will answer the same again (user_not_found,
		// missing_scope...): refuse rather than retry forever.
		h.log.Warn("users.info refused; the user is not taken for an agent", "user", userID, "error", err)
		return nil, refuseUnknown, nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("users.info %s: %w", userID, err)
	}
	if why := notAgent(u, h.o.TeamID); why != "" {
		return nil, why, nil
	}
	email := strings.TrimSpace(u.Profile.Email)
	if email == "" {
		h.log.Warn("Slack user has no visible email; does the app have the users:read.email scope?", "user", userID)
		return nil, refuseNoEmail, nil
	}
	name := strings.TrimSpace(u.RealName)
	if name == "" {
		name = strings.TrimSpace(u.Profile.RealName)
	}
	if name == "" {
		name = u.Name
	}
	a, err = h.o.Store.FindOrCreateAgent(ctx, email, name, userID)
	if err != nil {
		return nil, "", fmt.Errorf("agent for Slack user %s: %w", userID, err)
	}
	return a, "", nil
}

// notAgent says why a Slack user cannot be an agent, or "" when they can:
// bots and apps, people of another workspace (Slack Connect), guests and
// strangers are not.
func notAgent(u *slack.User, team string) string {
	switch {
	case u.IsBot || u.IsAppUser || u.ID == "USLACKBOT":
		return refuseBot
	case u.Deleted || u.TeamID != team || u.IsRestricted || u.IsUltraRestricted || u.IsStranger:
		return refuseExternal
	}
	return ""
}

// commandAgent is agent for the writer of a /ticket command. In the
// agents' channel, being there vouches for them as it does for a reply in a
// thread there. Slash commands reach the app from every channel, though,
// and a workspace member writing in a help channel or a DM is a customer:
// anywhere else only someone already known as an agent may act.
func (h *Bridge) commandAgent(ctx context.Context, cmd slack.SlashCommand) (*store.Agent, string, error) {
	if cmd.ChannelID == h.o.Channel {
		return h.agent(ctx, cmd.UserID)
	}
	w, err := h.whoWrote(ctx, cmd.UserID, cmd.TeamID)
	if err != nil || w.agent == nil {
		return nil, refuseOutside, err
	}
	return w.agent, "", nil
}

// actingAgent is agent for someone acting in a channel (threadTS: in a
// thread): a nil agent and nil error when they were refused.
func (h *Bridge) actingAgent(ctx context.Context, user, channel, threadTS string) (*store.Agent, error) {
	a, why, err := h.agent(ctx, user)
	if err == nil && a == nil {
		h.refuse(ctx, channel, user, threadTS, why)
	}
	return a, err
}

// refuse tells a user, in a message only they see, why nothing changed.
// threadTS puts it in a thread; empty posts it in the channel.
func (h *Bridge) refuse(ctx context.Context, channel, user, threadTS, why string) {
	h.Counts.Refused.Add(1)
	opts := []slack.MsgOption{slack.MsgOptionText(why, false)}
	if threadTS != "" {
		opts = append(opts, slack.MsgOptionTS(threadTS))
	}
	if _, err := h.o.Slack.PostEphemeralContext(ctx, channel, user, opts...); err != nil {
		// The refusal is a courtesy: nothing was changed either way.
		h.log.Warn("ephemeral refusal not posted", "channel", channel, "user", user, "error", err)
	}
}
