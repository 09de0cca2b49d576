package email

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ticketd/ticketd/store"
	mail "github.com/wneessen/go-mail"
)

// outgoing is a notification ready to send.
type outgoing struct {
	kind      Kind
	ticketID  string
	refID     int64
	messageID string // header form, <...>
	to        string
	msg       *mail.Msg
}

// skip is why a delivery is completed without mail; level says how loud.
type skip struct {
	reason string
	quiet  bool // expected by policy: logged at debug only
}

// compose decides whether a delivery becomes a mail and builds it. It
// returns the mail, or a skip, or an error (store errors are temporary;
// errors marked permanent are not).
//
// Policy (issue 3, points 7–8):
//   - ticket.created: an acknowledgement to the customer who opened it,
//     unless Options.NoTicketAck. Agent-opened tickets have no customer.
//   - response.added: mailed when an agent wrote it and it is not an
//     internal note; a customer's own reply is never echoed back.
//   - status.changed: mailed when an agent or the system changed it; not
//     when the customer's reply reopened the ticket (the customer knows).
//   - priority.changed: never mailed. Priority is internal triage; telling
//     a customer "your ticket is now low priority" helps nobody.
//   - sla.reminder, sla.breached: never mailed; they are for the agents.
//
// A ticket opened in Slack (it has a customer Slack thread) is never
// mailed about: the Slack sink answers the customer there.
//
// The recipient is always the ticket's creator, looked up as a customer;
// without a customer record (a ticket opened with an API token) there is
// nobody to mail and the delivery completes with a logged reason.
func (n *Adapter) compose(ctx context.Context, d *store.Delivery) (*outgoing, *skip, error) {
	e := d.Event
	var kind Kind
	switch e.Kind {
	case store.EventTicketCreated:
		if n.cfg.NoTicketAck {
			return nil, &skip{"new-ticket acknowledgements are off", true}, nil
		}
		kind = KindAck
	case store.EventResponseAdded:
		if e.ActorType == store.CreatorCustomer {
			return nil, &skip{"the customer's own response is not echoed", true}, nil
		}
		kind = KindResponse
	case store.EventStatusChanged:
		if e.ActorType == store.CreatorCustomer {
			return nil, &skip{"status changed by the customer", true}, nil
		}
		kind = KindStatus
	case store.EventPriorityChanged:
		return nil, &skip{"priority changes are not mailed to customers", true}, nil
	case store.EventAssigneeChanged:
		return nil, &skip{"assignee changes are not mailed to customers", true}, nil
	case store.EventTicketEdited:
		return nil, &skip{"the customer's own edit is not mailed back", true}, nil
	case store.EventResponseDelivered, store.EventResponseUndelivered:
		return nil, &skip{"delivery outcomes are for the other sinks", true}, nil
	case store.EventSLAReminder, store.EventSLABreached:
		return nil, &skip{"first-response reminders and breaches are for the agents (Slack)", true}, nil
	default:
		return nil, &skip{fmt.Sprintf("unknown event kind %q", e.Kind), false}, nil
	}

	t, err := n.st.Ticket(ctx, e.TicketID, store.AllTickets)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &skip{"ticket deleted or gone", false}, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if t.Thread(store.ThreadSlackCustomer) != "" {
		// Opened in Slack: the customer is answered in their Slack thread
		// (the Slack sink), once, where they wrote, even when we know
		// their address too.
		return nil, &skip{"the ticket was opened in Slack: the customer is answered there", true}, nil
	}
	if t.CreatorType != store.CreatorCustomer {
		return nil, &skip{"ticket opened by an agent: no customer to mail", false}, nil
	}
	cust, err := n.st.Customer(ctx, t.CreatorID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &skip{"no customer record for the ticket's creator (opened with an API token?)", false}, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if strings.TrimSpace(cust.Email) == "" {
		return nil, &skip{"the customer has no email address", false}, nil
	}

	data := &TemplateData{
		Kind:          kind,
		RefID:         t.RefID,
		Subject:       cleanSubject(t.Subject),
		Category:      t.Category,
		Priority:      string(t.Priority),
		Status:        string(t.Status),
		Description:   t.Description,
		CustomerName:  cust.Name,
		CustomerEmail: cust.Email,
		CreatedAt:     t.CreatedAt,
		At:            e.At,
	}
	switch kind {
	case KindResponse:
		r := t.ResponseByID(e.ResponseID)
		switch {
		case r == nil:
			return nil, &skip{"response not found on the ticket", false}, nil
		case r.Internal:
			return nil, &skip{"internal note", true}, nil
		case r.CreatorType == store.CreatorCustomer:
			return nil, &skip{"the customer's own response is not echoed", true}, nil
		}
		data.Response = r.Description
		if !r.CreatorID.IsZero() {
			a, err := n.st.Agent(ctx, r.CreatorID)
			switch {
			case err == nil:
				data.AgentName = a.Name
			case !errors.Is(err, store.ErrNotFound):
				return nil, nil, err
			}
		}
	case KindStatus:
		// The notice is about this change, even if another came after it.
		data.Status, data.PreviousStatus = e.To, e.From
		data.PreviousStatusLabel = statusLabel(e.From)
	}
	data.StatusLabel = statusLabel(data.Status)

	text, html, err := n.cfg.tmpl.render(data)
	if err != nil {
		return nil, nil, permanent(err)
	}

	msgID := n.messageID(d)
	prior := threadBefore(t.MessageIDs, msgID)
	m := mail.NewMsg(mail.WithNoDefaultUserAgent())
	if err := m.FromFormat(n.cfg.from.Name, n.cfg.from.Address); err != nil {
		return nil, nil, permanent(fmt.Errorf("from address: %w", err))
	}
	if err := m.AddToFormat(cust.Name, cust.Email); err != nil {
		return nil, nil, permanent(fmt.Errorf("customer address %q: %w", cust.Email, err))
	}
	if err := m.ReplyToFormat(n.cfg.from.Name, n.cfg.Signer.Address(n.cfg.replyBase, t.ID)); err != nil {
		return nil, nil, permanent(fmt.Errorf("reply-to address: %w", err))
	}
	m.Subject(subjectFor(kind, t.RefID, data.Subject))
	m.SetMessageIDWithValue(strings.TrimSuffix(strings.TrimPrefix(msgID, "<"), ">"))
	m.SetDateWithValue(time.Now())
	if len(prior) > 0 {
		m.SetGenHeader(mail.HeaderInReplyTo, prior[len(prior)-1])
		m.SetGenHeader(mail.HeaderReferences, strings.Join(references(prior, n.cfg.ReferencesMax), " "))
	}
	m.SetGenHeader(mail.HeaderXAutoResponseSuppress, "All")
	if kind != KindResponse {
		// RFC 3834: machine-made, so nothing should answer it.
		m.SetGenHeader(mail.Header("Auto-Submitted"), "auto-replied")
	}
	m.SetGenHeader(mail.Header("X-Ticketd-Ticket"), strconv.FormatInt(t.RefID, 10))
	m.SetGenHeader(mail.HeaderXMailer, "ticketd")
	m.SetBodyString(mail.TypeTextPlain, text)
	if html != "" {
		m.AddAlternativeString(mail.TypeTextHTML, html)
	}
	return &outgoing{kind: kind, ticketID: t.ID.Hex(), refID: t.RefID, messageID: msgID, to: cust.Email, msg: m}, nil, nil
}

// messageID is the delivery's Message-ID, the same on every attempt, so a
// receiver that got a message whose acknowledgement we lost drops the
// repeat: <ticketd.EVENTID.TAG@domain>. TAG is an HMAC of the event id
// under the reply-token secret: event ids are ObjectIDs (a timestamp and a
// counter), and without the tag a stranger could list the ids sent between
// two of his own acknowledgements in References. Inbound mail threads by
// these ids only within the sender's team anyway; the tag makes them prove
// nothing by themselves.
func (n *Adapter) messageID(d *store.Delivery) string {
	return "<ticketd." + d.Event.ID.Hex() + "." + n.cfg.Signer.Tag("message-id", d.Event.ID) + "@" + n.cfg.MessageIDDomain + ">"
}

// threadBefore returns the thread's Message-IDs that precede own: all of
// them when own is not recorded yet, those before it when a retry finds it
// recorded by the first attempt. So every attempt threads the same way.
func threadBefore(ids []string, own string) []string {
	key := store.NormalizeMessageID(own)
	for i, id := range ids {
		if store.NormalizeMessageID(id) == key {
			return ids[:i]
		}
	}
	return ids
}

// references keeps the thread's root and its newest max-1 ids (RFC 5322
// allows trimming the middle), so the header stays short on long threads.
func references(prior []string, max int) []string {
	if len(prior) <= max {
		return prior
	}
	out := make([]string, 0, max)
	out = append(out, prior[0])
	return append(out, prior[len(prior)-(max-1):]...)
}

// subjectPrefix matches reply/forward prefixes and ticket tags at the start
// of a subject, repeated: "Re: AW: [#42] Fwd: x" → "x".
var subjectPrefix = regexp.MustCompile(`(?i)^\s*((re|aw|sv|antw|fw|fwd|wg|tr)\s*(\[\d+\])?\s*:|\[#\d+\])\s*`)

// cleanSubject strips reply prefixes and ticket tags, which the ticket's
// subject may carry when it was opened by mail, so none is doubled.
func cleanSubject(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	for {
		loc := subjectPrefix.FindStringIndex(s)
		if loc == nil || loc[1] == 0 {
			break
		}
		s = s[loc[1]:]
	}
	if s == "" {
		return "(no subject)"
	}
	return s
}

// subjectFor is "[#42] subject" for the acknowledgement that opens the
// thread, and "Re: [#42] subject" for what follows in it, as a person
// replying would write.
func subjectFor(kind Kind, ref int64, subject string) string {
	tag := "[#" + strconv.FormatInt(ref, 10) + "] " + subject
	if kind == KindAck {
		return tag
	}
	return "Re: " + tag
}
