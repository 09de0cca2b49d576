package slackin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/internal/slackui"
	"github.com/ticketd/ticketd/store"
)

// Intake: customers write in an intake channel (a Slack Connect channel
// shared with their company, a help channel of the workspace) or in a
// direct message to the app. A top-level message opens a ticket whose
// customer thread (store.ThreadSlackCustomer) is that message; the
// customer's replies in that thread are customer responses, an agent's are
// agent replies to the customer. The acknowledgement and everything said
// to the customer afterwards are posted by the Slack sink from the outbox,
// never from here, so that they go out exactly once and survive outages.
//
// Who writes as an agent here: a full member of the app's own workspace
// (not a guest, not a Slack Connect user of another organisation, not a
// bot) who is known as an agent: by Slack user id (they acted in the
// agents' channel before) or by their profile address (an agent made by
// the API or mail). Everyone else is a customer, workspace members
// included, so that a help channel of the workspace works too.

// The refusal shown (ephemerally) to a customer over the rate limit.
const refuseRateLimit = "You have opened many tickets in the last hour; this message did not open another. Please reply in the thread of one you opened, or try again later."

// noSubject is the subject of a ticket whose first line leaves nothing.
const noSubject = "Message in Slack"

// writer is who wrote a message in an intake channel or DM.
type writer struct {
	agent *store.Agent // an agent, or nil
	bot   bool         // a bot or app: nothing is stored
	// For a customer: their Slack organisation and what users.info says.
	team, email, name string
}

// onIntakeMessage handles a message event in an intake channel or a direct
// message: a new message, an edit, or a deletion. Joins, topic changes and
// other subtypes open nothing.
func (h *Bridge) onIntakeMessage(ctx context.Context, e *slackevents.MessageEvent) error {
	switch e.SubType {
	case "", subtypeFileShare, subtypeThreadBroadcst:
		if h.fromBot(e.User, e.BotID, e.SubType) {
			break
		}
		var files []slack.File
		if e.Message != nil {
			files = e.Message.Files
		}
		if e.ThreadTimeStamp == "" || e.ThreadTimeStamp == e.TimeStamp {
			return h.openTicket(ctx, e, files)
		}
		return h.onCustomerThreadReply(ctx, e, files)
	case subtypeChanged:
		if e.Message != nil && !h.fromBot(e.Message.User, e.Message.BotID, e.Message.SubType) {
			return h.onIntakeChange(ctx, e.Channel, e.Message, e.PreviousMessage, "edited")
		}
	case subtypeDeleted:
		if e.PreviousMessage != nil && !h.fromBot(e.PreviousMessage.User, e.PreviousMessage.BotID, e.PreviousMessage.SubType) {
			return h.onIntakeChange(ctx, e.Channel, e.PreviousMessage, nil, "deleted")
		}
	}
	h.Counts.Ignored.Add(1)
	return nil
}

// whoWrote finds out whether a Slack user is an agent, a bot or a
// customer (see the comment at the top). eventTeam is the event's
// user_team, used when users.info says nothing.
func (h *Bridge) whoWrote(ctx context.Context, userID, eventTeam string) (writer, error) {
	if a, err := h.o.Store.AgentBySlackUser(ctx, userID); err == nil {
		return writer{agent: a}, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return writer{}, err
	}
	w := writer{team: eventTeam}
	u, err := h.o.Slack.GetUserInfoContext(ctx, userID)
	var slackErr slack.SlackErrorResponse
	switch {
	case errors.As(err, &slackErr):
		// Slack will not say more (user_not_found for some Slack Connect
		// users, a missing scope): a customer known by id alone.
		h.log.Warn("users.info refused; the writer is taken for a customer", "user", userID, "error", err)
	case err != nil:
		return writer{}, fmt.Errorf("users.info %s: %w", userID, err)
	default:
		if u.IsBot || u.IsAppUser || u.ID == "USLACKBOT" {
			return writer{bot: true}, nil
		}
		if u.TeamID != "" {
			w.team = u.TeamID
		}
		w.email = strings.TrimSpace(u.Profile.Email)
		w.name = displayName(u)
		if notAgent(u, h.o.TeamID) == "" && w.email != "" {
			a, err := h.o.Store.AgentByEmail(ctx, w.email)
			if err == nil {
				// Known by address: link the Slack user for next time.
				if a, err = h.o.Store.FindOrCreateAgent(ctx, a.Email, a.Name, userID); err != nil {
					return writer{}, fmt.Errorf("agent for Slack user %s: %w", userID, err)
				}
				return writer{agent: a}, nil
			}
			if !errors.Is(err, store.ErrNotFound) {
				return writer{}, err
			}
		}
	}
	if w.team == "" {
		w.team = h.o.TeamID // users.info refused and the event did not say: the workspace's own
	}
	return w, nil
}

func displayName(u *slack.User) string {
	for _, n := range []string{u.RealName, u.Profile.RealName, u.Profile.DisplayName, u.Name} {
		if n = strings.TrimSpace(n); n != "" {
			return n
		}
	}
	return ""
}

// ticketTeam is the team of the tickets a customer opens in a channel.
func (h *Bridge) ticketTeam(channel, slackTeam string) string {
	if t := strings.TrimSpace(h.o.ChannelTeams[channel]); t != "" {
		return t
	}
	return "slack:" + slackTeam
}

// customer finds or makes the customer record of a writer.
func (h *Bridge) customer(ctx context.Context, userID, channel string, w writer) (*store.Customer, error) {
	c, _, err := h.o.Store.FindOrCreateSlackCustomer(ctx, store.SlackPerson{
		SlackTeamID: w.team, SlackUserID: userID, Email: w.email, Name: w.name, Team: h.ticketTeam(channel, w.team),
	})
	if err != nil {
		return nil, fmt.Errorf("customer for Slack user %s: %w", userID, err)
	}
	return c, nil
}

// openTicket opens a ticket from a customer's top-level message. The
// message's channel and ts are its SourceKey (a redelivery finds the
// ticket) and its customer thread. Its id is derived from the message, so
// files stored before the ticket name the ticket a redelivery makes.
func (h *Bridge) openTicket(ctx context.Context, e *slackevents.MessageEvent, files []slack.File) error {
	thread := slackui.MessageKey(e.Channel, e.TimeStamp)
	if _, err := h.o.Store.TicketIDByThread(ctx, store.ThreadSlackCustomer, thread); err == nil {
		h.Counts.Deduplicated.Add(1)
		return nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	w, err := h.whoWrote(ctx, e.User, e.UserTeam)
	if err != nil {
		return err
	}
	if w.bot || w.agent != nil {
		// An agent's own message in a customer channel (an announcement,
		// a question to the channel) is not a ticket.
		h.Counts.Ignored.Add(1)
		return nil
	}
	slot, allowed, err := h.o.Store.TakeRateSlot(ctx, "slack:"+w.team+"/"+e.User, h.o.NewTicketsPerHour, time.Hour)
	if err != nil {
		return fmt.Errorf("rate limit of %s: %w", e.User, err)
	}
	if !allowed {
		h.log.Warn("new ticket from Slack refused: rate limit", "user", e.User, "team", w.team, "channel", e.Channel, "per_hour", h.o.NewTicketsPerHour)
		h.refuse(ctx, e.Channel, e.User, "", refuseRateLimit)
		return nil
	}
	ok := false
	defer func() {
		if !ok {
			// Nothing was opened: the slot goes back. Failing to give it
			// back costs the writer one ticket this hour, not the message.
			if err := h.o.Store.ReturnRateSlot(ctx, slot); err != nil {
				h.log.Warn("giving back a rate-limit slot failed", "user", e.User, "err", err)
			}
		}
	}()
	c, err := h.customer(ctx, e.User, e.Channel, w)
	if err != nil {
		return err
	}
	key := slackui.SourceKey(e.Channel, e.TimeStamp)
	id := fileID(key, "ticket")
	if len(files) > 0 {
		// As for an agent's reply with files (onAgentReply): the downloads
		// may outlast the connection's deadline.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), filesTimeout)
		defer cancel()
	}
	text, plain, stored, err := h.body(ctx, id, key, e.Text, files)
	if err != nil {
		return err
	}
	subject := h.subject(plain)
	_, created, err := h.o.Store.CreateTicket(ctx, store.NewTicket{
		ID:          id,
		Creator:     store.Actor{ID: c.ID, Type: store.CreatorCustomer, Via: store.SourceSlack},
		TeamID:      h.ticketTeam(e.Channel, w.team),
		Category:    h.o.IntakeCategory,
		Subject:     subject,
		Description: text,
		Source:      store.SourceSlack,
		SourceKey:   key,
		Attachments: stored,
		Threads:     []store.ThreadRef{{Kind: store.ThreadSlackCustomer, Key: thread}},
	})
	if err != nil {
		return fmt.Errorf("open ticket from %s: %w", key, err)
	}
	if created {
		ok = true
		h.Counts.Applied.Add(1)
	} else {
		h.Counts.Deduplicated.Add(1)
	}
	return nil
}

// customerTicket returns the ticket whose customer thread a message in an
// intake channel or DM belongs to; ok=false (ignored) for a thread that is
// no ticket's.
func (h *Bridge) customerTicket(ctx context.Context, channel, threadTS string) (bson.ObjectID, bool, error) {
	id, err := h.o.Store.TicketIDByThread(ctx, store.ThreadSlackCustomer, slackui.MessageKey(channel, threadTS))
	if errors.Is(err, store.ErrNotFound) {
		h.Counts.Ignored.Add(1)
		return bson.NilObjectID, false, nil
	}
	return id, err == nil, err
}

// onCustomerThreadReply stores a reply in a ticket's customer thread: the
// customer's (or a colleague's of the same team) as a customer response,
// which reopens a finished ticket; an agent's as their reply to the
// customer (never an internal note: the customer reads this thread).
// Someone of another team writing in the thread (a shared channel with
// several companies) attaches nothing to the ticket.
func (h *Bridge) onCustomerThreadReply(ctx context.Context, e *slackevents.MessageEvent, files []slack.File) error {
	ticketID, ok, err := h.customerTicket(ctx, e.Channel, e.ThreadTimeStamp)
	if err != nil || !ok {
		return err
	}
	w, err := h.whoWrote(ctx, e.User, e.UserTeam)
	if err != nil || w.bot {
		if w.bot {
			h.Counts.Ignored.Add(1)
		}
		return err
	}
	scope, author := store.AllTickets, store.Actor{}
	if w.agent != nil {
		author = agentActor(w.agent)
	} else {
		scope = store.TeamScope(h.ticketTeam(e.Channel, w.team))
		if _, err := h.o.Store.Ticket(ctx, ticketID, scope); errors.Is(err, store.ErrNotFound) {
			h.log.Info("reply in a customer thread by someone outside the ticket's team ignored", "user", e.User, "team", w.team, "ticket", ticketID.Hex())
			h.Counts.Ignored.Add(1)
			return nil
		} else if err != nil {
			return err
		}
		c, err := h.customer(ctx, e.User, e.Channel, w)
		if err != nil {
			return err
		}
		author = store.Actor{ID: c.ID, Type: store.CreatorCustomer, Via: store.SourceSlack}
	}
	key := slackui.SourceKey(e.Channel, e.TimeStamp)
	if len(files) > 0 {
		if stored, err := h.storedReply(ctx, ticketID, key); err != nil || stored {
			if stored {
				h.Counts.Deduplicated.Add(1)
			}
			return err
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), filesTimeout)
		defer cancel()
	}
	text, _, stored, err := h.body(ctx, ticketID, key, e.Text, files)
	if err != nil {
		return err
	}
	if text == "" && len(stored) == 0 {
		h.Counts.Ignored.Add(1)
		return nil
	}
	return h.addResponse(ctx, ticketID, scope, store.NewResponse{
		Author: author, Description: text, Source: store.SourceSlack, SourceKey: key, Attachments: stored,
	})
}

// onIntakeChange handles an edit or deletion of a message in an intake
// channel or DM. The message that opened a ticket, edited before an agent
// answered, gives the ticket its new text; any other edit, and every
// deletion, of a stored message is recorded in the audit log, and the
// stored text stays. msg is the message as it is now (edited) or was
// (deleted); prev, for an edit, what it was before.
func (h *Bridge) onIntakeChange(ctx context.Context, channel string, msg, prev *slack.Msg, what string) error {
	if prev != nil && prev.Text == msg.Text && len(prev.Files) == len(msg.Files) {
		h.Counts.Ignored.Add(1) // not an edit: an unfurl, a reply count
		return nil
	}
	threadTS := msg.ThreadTimestamp
	if threadTS == "" {
		threadTS = msg.Timestamp
	}
	ticketID, ok, err := h.customerTicket(ctx, channel, threadTS)
	if err != nil || !ok {
		return err
	}
	t, err := h.o.Store.Ticket(ctx, ticketID, store.AllTickets)
	if err != nil {
		return err
	}
	key := slackui.SourceKey(channel, msg.Timestamp)
	var by store.Actor
	kind := "message that opened the ticket"
	switch r, err := h.storedResponse(ctx, ticketID, key); {
	case t.SourceKey == key:
		by = store.Actor{ID: t.CreatorID, Type: t.CreatorType, Via: store.SourceSlack}
	case err == nil:
		by = store.Actor{ID: r.CreatorID, Type: r.CreatorType, Via: store.SourceSlack}
		kind = "reply " + r.ID.Hex()
	case errors.Is(err, errNoResponse):
		h.Counts.Ignored.Add(1) // never stored: nothing to record
		return nil
	default:
		return err
	}
	if what == "edited" && t.SourceKey == key {
		edited, err := h.editOpening(ctx, t, msg.Text, by)
		if err != nil || edited {
			return err
		}
	}
	line := fmt.Sprintf("Slack %s %s by its author after it was stored (%s); the stored text is unchanged", kind, what, key)
	if err := h.o.Store.AddLog(ctx, ticketID, store.AllTickets, by, line); err != nil {
		return fmt.Errorf("audit %s message %s: %w", what, key, err)
	}
	h.Counts.Applied.Add(1)
	return nil
}

// editOpening gives a ticket the edited text of the message that opened
// it, unless an agent has answered (edited=false: the caller records the
// edit). Files stay as they were; a text that no longer fits is recorded
// rather than cut, since the stored text is whole.
func (h *Bridge) editOpening(ctx context.Context, t *store.Ticket, raw string, by store.Actor) (bool, error) {
	if t.Answered() {
		return false, nil
	}
	text, whole := withNotes(h.plainText(ctx, raw), nil, h.o.Limits)
	if whole != "" || text == "" {
		return false, nil
	}
	_, edited, err := h.o.Store.EditOpening(ctx, t.ID, store.AllTickets, h.subject(text), text, by)
	if err != nil {
		return false, fmt.Errorf("edit ticket %s: %w", t.ID.Hex(), err)
	}
	if edited {
		h.Counts.Applied.Add(1)
	}
	return edited, nil
}

// subject is a ticket's subject from its message's plain text: the first
// line with something visible, cut at a word boundary to the subject
// limit.
func (h *Bridge) subject(plain string) string {
	for line := range strings.Lines(plain) {
		if s := h.o.Store.Limits().FitSubject(line); s != "" {
			return s
		}
	}
	return noSubject
}
