package slackout

import (
	"context"
	"errors"
	"fmt"

	"github.com/slack-go/slack"
	"github.com/ticketd/ticketd/internal/slackui"
	"github.com/ticketd/ticketd/notify"
	"github.com/ticketd/ticketd/store"
)

// First-response targets (the sla job records them on the ticket): a
// reminder naming the assignee in the ticket's thread, and for a missed
// target a line in the thread and a post in the escalation channel. Both
// carry the event's metadata, so a retried delivery finds what an earlier
// attempt posted, in the thread and in the escalation channel alike.

// deliverFirstResponse shows a reminder or a missed target.
func (a *Adapter) deliverFirstResponse(ctx context.Context, t *store.Ticket, root message, e store.Event, retried bool) error {
	if e.Kind == store.EventSLAReminder && (t.FirstAgentResponse() != nil || t.Status.Finished()) {
		return notify.Skipped("answered (or finished) before the reminder went out")
	}
	assignee, err := a.assigneeLabel(ctx, t)
	if err != nil {
		return err
	}
	due := dueLabel(t)
	var line string
	switch {
	case e.Kind == store.EventSLABreached:
		line = fmt.Sprintf(":rotating_light: First-response target missed: no agent answered the customer by %s (priority *%s*). Assignee: %s.",
			due, slackui.Mrkdwn(string(t.Priority), 20), orNobody(assignee))
	case assignee != "":
		line = fmt.Sprintf(":hourglass_flowing_sand: %s, the customer is still waiting for a first answer: it is due %s (priority *%s*).",
			assignee, due, slackui.Mrkdwn(string(t.Priority), 20))
	default:
		line = fmt.Sprintf(":hourglass_flowing_sand: Nobody is assigned, and the customer is still waiting for a first answer: it is due %s (priority *%s*).",
			due, slackui.Mrkdwn(string(t.Priority), 20))
	}
	if err := a.postLine(ctx, t, root, e, retried, line); err != nil {
		return err
	}
	if e.Kind != store.EventSLABreached || a.o.EscalationChannel == "" {
		return nil
	}
	return a.escalate(ctx, t, root, e, retried, assignee, due)
}

// escalate posts a missed target in the escalation channel, once: a retry
// looks for the post of an earlier attempt first.
func (a *Adapter) escalate(ctx context.Context, t *store.Ticket, root message, e store.Event, retried bool, assignee, due string) error {
	if retried {
		_, found, err := a.findTop(ctx, a.o.EscalationChannel, e.At, t.ID.Hex(), e.ID.Hex(), "search the escalation channel")
		if err != nil || found {
			return err
		}
	}
	title := slackui.RootText(t)
	if link, err := a.api.GetPermalinkContext(ctx, &slack.PermalinkParameters{Channel: root.channel, Ts: root.ts}); err == nil && link != "" {
		title = "<" + link + "|" + title + ">"
	} else {
		// The link is a convenience: the post goes out without it.
		a.log.Warn("no permalink for the ticket's thread", "ticket", t.ID.Hex(), "err", err)
	}
	text := fmt.Sprintf(":rotating_light: %s missed its first-response target: due %s, priority *%s*, assignee %s.",
		title, due, slackui.Mrkdwn(string(t.Priority), 20), orNobody(assignee))
	block := slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, slackui.Plain(text, slackui.MaxSectionText), false, false), nil, nil)
	_, _, err := a.api.PostMessageContext(ctx, a.o.EscalationChannel,
		slack.MsgOptionText(slackui.Plain(text, slackui.MaxSectionText), false),
		slack.MsgOptionBlocks(block),
		slack.MsgOptionMetadata(slackui.Metadata(t.ID, e.ID)))
	if err != nil {
		return classify("post in the escalation channel", err)
	}
	return nil
}

// assigneeLabel names the ticket's assignee (a Slack mention when the
// agent is linked to a Slack user); "" when nobody is assigned.
func (a *Adapter) assigneeLabel(ctx context.Context, t *store.Ticket) (string, error) {
	if t.AssigneeID == nil {
		return "", nil
	}
	ag, err := a.st.Agent(ctx, *t.AssigneeID)
	if errors.Is(err, store.ErrNotFound) {
		return "an unknown agent", nil
	}
	if err != nil {
		return "", fmt.Errorf("slack: load assignee of ticket %s: %w", t.ID.Hex(), err)
	}
	return slackui.AgentLabel(ag.Name, ag.Email, ag.SlackUserID), nil
}

func orNobody(label string) string {
	if label == "" {
		return "nobody"
	}
	return label
}

// dueLabel is the ticket's first-response due time as a Slack date, which
// every reader sees in their own time zone (the fallback text in UTC).
func dueLabel(t *store.Ticket) string {
	if t.FirstResponse == nil || t.FirstResponse.DueAt == nil {
		return "(unknown)"
	}
	d := t.FirstResponse.DueAt.UTC()
	return fmt.Sprintf("<!date^%d^{date_short_pretty} {time}|%s>", d.Unix(), d.Format("2006-01-02 15:04 UTC"))
}
