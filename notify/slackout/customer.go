package slackout

import (
	"context"
	"fmt"
	"strings"

	"github.com/slack-go/slack"
	"github.com/ticketd/ticketd/internal/slackui"
	"github.com/ticketd/ticketd/notify"
	"github.com/ticketd/ticketd/store"
)

// What the customer reads in their own Slack thread (a ticket opened from
// Slack): the acknowledgement, every reply an agent made to them wherever
// it was written (the agents' thread, the API, mail), and one line per
// status change. Internal notes, priority and assignee changes, and what
// was written in the customer's thread itself are never posted there.
// Each post carries the ticket's and event's metadata, and a retried
// delivery looks for it in the thread first, as in the agents' thread.

// deliverToCustomer shows one event in the ticket's customer thread.
func (a *Adapter) deliverToCustomer(ctx context.Context, t *store.Ticket, e store.Event, retried bool) error {
	ch, ts, ok := slackui.ParseMessageKey(t.Thread(store.ThreadSlackCustomer))
	if !ok {
		return notify.Skipped("no customer thread")
	}
	thread := message{channel: ch, ts: ts}
	var (
		line  string
		reply *store.Response
	)
	switch e.Kind {
	case store.EventTicketCreated:
		line = fmt.Sprintf(":wave: Thanks, we got your message: this is ticket *#%d*. Our support team will answer in this thread; just reply here to add anything.", t.RefID)
	case store.EventResponseAdded:
		reply = t.ResponseByID(e.ResponseID)
		switch {
		case reply == nil:
			return notify.Skipped("response not on its ticket")
		case reply.Internal:
			return notify.Skipped("an internal note is not shown to the customer")
		case reply.CreatorType != store.CreatorAdmin:
			return notify.Skipped("the customer's own response is not echoed")
		case inChannel(reply.SourceKey, ch):
			return notify.Skipped("written in the customer's thread")
		}
	case store.EventStatusChanged:
		if e.ActorType == store.CreatorCustomer {
			return notify.Skipped("status changed by the customer's own reply")
		}
		line = fmt.Sprintf("Ticket *#%d* is now *%s*.", t.RefID, slackui.Mrkdwn(customerStatus(store.Status(e.To)), 50))
	default:
		return notify.Skipped("the customer is not shown " + string(e.Kind))
	}
	var done *posted
	if retried {
		var err error
		if done, err = a.findPosted(ctx, t, thread, e.ID); err != nil {
			return err
		}
	}
	if reply == nil {
		if done != nil {
			return nil
		}
		block := slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, line, false, false), nil, nil)
		return a.postInThread(ctx, t, thread, e, line, []slack.Block{block})
	}
	uploads, notes := a.sortAttachments(reply.Attachments)
	if done == nil {
		who, err := a.agentName(ctx, reply)
		if err != nil {
			return err
		}
		head := who + " (support) replied:"
		if len(notes) > 0 { // the notes link the API, which customers of Slack do not use
			notes = []string{fmt.Sprintf(":paperclip: %d file(s) too large to share here; ask us for them by another way if you need them.", len(notes))}
		}
		if err := a.postInThread(ctx, t, thread, e, head+" "+reply.Description, responseBlocks(head, reply.Description, notes, "")); err != nil {
			return err
		}
		done = &posted{}
	}
	return a.upload(ctx, t, thread, uploads, done.files)
}

// inChannel reports whether a response was written as a message in a
// channel (its SourceKey names it).
func inChannel(sourceKey, channel string) bool {
	ch, _, ok := slackui.ParseSourceKey(sourceKey)
	return ok && ch == channel
}

// agentName is how an agent signs a reply in a customer's thread: their
// name, bold, without their address.
func (a *Adapter) agentName(ctx context.Context, r *store.Response) (string, error) {
	ag, _, err := a.who(ctx, r.CreatorType, r.CreatorID)
	if err != nil {
		return "", err
	}
	if ag == nil || strings.TrimSpace(ag.Name) == "" {
		return "*Support*", nil
	}
	return "*" + slackui.Mrkdwn(ag.Name, 200) + "*", nil
}

// customerStatus says a status in the customer's words.
func customerStatus(s store.Status) string {
	switch s {
	case store.StatusInProgress:
		return "in progress"
	case "":
		return "updated"
	}
	return string(s)
}
