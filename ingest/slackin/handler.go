package slackin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/store"
)

// Store is what the handler needs from the store. *store.Store satisfies it.
type Store interface {
	Ticket(ctx context.Context, id bson.ObjectID, scope store.Scope) (*store.Ticket, error)
	TicketByRef(ctx context.Context, ref int64, scope store.Scope) (*store.Ticket, error)
	TicketIDByThread(ctx context.Context, kind store.ThreadKind, key string) (bson.ObjectID, error)
	BindThread(ctx context.Context, ticket bson.ObjectID, kind store.ThreadKind, key string) error
	AddResponse(ctx context.Context, id bson.ObjectID, scope store.Scope, in store.NewResponse) (*store.Ticket, bool, error)
	UpdateTicket(ctx context.Context, id bson.ObjectID, scope store.Scope, u store.TicketUpdate, by store.Actor) (*store.Ticket, error)
	AddLog(ctx context.Context, id bson.ObjectID, scope store.Scope, by store.Actor, what string) error
	SaveAttachment(ctx context.Context, f store.AttachmentFile) error
	AgentBySlackUser(ctx context.Context, slackUserID string) (*store.Agent, error)
	FindOrCreateAgent(ctx context.Context, email, name, slackUserID string) (*store.Agent, error)
	SeenEvent(ctx context.Context, key string) (bool, error)
	RecordEvent(ctx context.Context, key string) error

	// Intake (intake.go): customers' messages.
	CreateTicket(ctx context.Context, in store.NewTicket) (*store.Ticket, bool, error)
	FindOrCreateSlackCustomer(ctx context.Context, p store.SlackPerson) (*store.Customer, bool, error)
	AgentByEmail(ctx context.Context, email string) (*store.Agent, error)
	EditOpening(ctx context.Context, id bson.ObjectID, scope store.Scope, subject, description string, by store.Actor) (*store.Ticket, bool, error)
	Limits() store.Limits
	// The per-writer limit on new tickets, kept in the store so that every
	// daemon counts against one budget.
	TakeRateSlot(ctx context.Context, key string, limit int, window time.Duration) (store.RateSlot, bool, error)
	ReturnRateSlot(ctx context.Context, slot store.RateSlot) error
}

// SlackAPI is the part of the Web API the handler calls. *slack.Client
// satisfies it.
type SlackAPI interface {
	GetUserInfoContext(ctx context.Context, user string, options ...slack.GetUserInfoOption) (*slack.User, error)
	PostMessageContext(ctx context.Context, channelID string, options ...slack.MsgOption) (string, string, error)
	PostEphemeralContext(ctx context.Context, channelID, userID string, options ...slack.MsgOption) (string, error)
	AddReactionContext(ctx context.Context, name string, item slack.ItemRef) error
	GetFileInfoContext(ctx context.Context, fileID string, count, page int) (*slack.File, []slack.Comment, *slack.Paging, error)
	GetFileContext(ctx context.Context, downloadURL string, writer io.Writer) error
	GetConversationHistoryContext(ctx context.Context, params *slack.GetConversationHistoryParameters) (*slack.GetConversationHistoryResponse, error)
}

// ReplyDefault says what a plain agent reply in a ticket thread is.
type ReplyDefault string

// The reply defaults (config slack.replyDefault).
const (
	// ReplyCustomer: a plain reply goes to the customer; one that starts
	// with NotePrefix is an internal note.
	ReplyCustomer ReplyDefault = "customer"
	// ReplyInternal: a plain reply is an internal note; one that starts with
	// CustomerPrefix goes to the customer.
	ReplyInternal ReplyDefault = "internal"
)

// CustomerPrefix starts a reply meant for the customer when ReplyDefault is
// internal ("!reply Thanks, fixed."). A word rather than punctuation: Slack
// sends ">" as "&gt;" and renders a leading ">" as a quote.
const CustomerPrefix = "!reply"

// Defaults for zero Options fields.
const (
	DefaultNotePrefix = "//"
	// DefaultMaxAttachmentBytes is the mail bridge's per-file limit
	// (ingest/email.DefaultMaxAttachmentBytes), so a file is stored or left
	// out alike whichever way it came.
	DefaultMaxAttachmentBytes = 10 << 20
	// DefaultIntakeCategory is the category of tickets opened from Slack.
	DefaultIntakeCategory = "Support"
	// DefaultNewTicketsPerHour is the mail bridge's per-sender default
	// (ingest/email.DefaultRateLimitPerHour).
	DefaultNewTicketsPerHour = 20
)

// Options configures a Bridge.
type Options struct {
	Store Store
	Slack SlackAPI
	// Channel is the agents' channel ID: every ticket has a thread there.
	Channel string
	// BotUserID, BotID and TeamID are the app's own identities, from
	// auth.test at start (see Identify): messages by the bot are never
	// stored, and only members of TeamID are agents.
	BotUserID, BotID, TeamID string
	// ReplyDefault: empty means ReplyCustomer.
	ReplyDefault ReplyDefault
	// NotePrefix starts an internal note (with either ReplyDefault; it is
	// stripped); empty means DefaultNotePrefix.
	NotePrefix string
	// MaxAttachmentBytes: larger files are left out with a note in the
	// text; 0 means DefaultMaxAttachmentBytes.
	MaxAttachmentBytes int64
	// Limits are the store's text limits (Store.Limits(): every way in
	// cuts alike); the zero value means the store's defaults. A message
	// over tickets.maxDescription is cut, its whole text kept as an
	// attached file.
	Limits store.Limits
	// Logger: nil means slog.Default().
	Logger *slog.Logger

	// Intake (config slack.intakeChannels, directMessages, channelTeams,
	// intakeCategory): customers' messages that open tickets.

	// IntakeChannels are the channel IDs whose top-level messages open
	// tickets (Slack Connect channels shared with a customer, help
	// channels).
	IntakeChannels []string
	// DirectMessages: a direct message to the app opens a ticket too.
	DirectMessages bool
	// ChannelTeams maps an intake channel to the team of its tickets;
	// unmapped, the team is "slack:" and the writer's own Slack team id
	// (their organisation's, for a Slack Connect user).
	ChannelTeams map[string]string
	// IntakeCategory is the category of tickets opened from Slack; empty
	// means DefaultIntakeCategory.
	IntakeCategory string
	// NewTicketsPerHour caps the tickets one Slack user opens per hour,
	// like email.rateLimitPerHour for a sender; 0 means
	// DefaultNewTicketsPerHour, negative no limit. The store keeps the
	// count, per clock hour, for every daemon together.
	NewTicketsPerHour int
}

// Counts count what became of the payloads handled, for /metrics.
type Counts struct {
	Applied      atomic.Int64 // an event, action or command that changed a ticket (or answered)
	Deduplicated atomic.Int64 // a redelivered event skipped, or a reply already stored
	Refused      atomic.Int64 // someone who is not an agent tried to act
	Ignored      atomic.Int64 // not for us: other channels, threads, subtypes, the bot itself
}

// Bridge applies Slack payloads to the store: it is the Handler the
// connection (conn.go) hands them to. Safe for concurrent use.
//
// Who is an agent: a full member of the bot's own workspace (same team id
// as auth.test's, not a guest, not a Slack Connect stranger, not a bot)
// with an email address on their profile. The first time one acts, the
// agent is found by that address (an agent made by the API or mail is
// linked, not duplicated) or created from users.info. In intake channels
// and direct messages (intake.go) only someone already known as an agent
// (by Slack id, or by address) writes as one; other workspace members are
// customers there, so that a help channel of the workspace works.
//
// Each event is applied once: a reply's response carries the SourceKey
// "slack:<channel>/<ts>" (the store adds a response only once per key);
// status changes set a value (setting it again is no change); a reaction
// Slack already has is not an error; and every event_id is recorded in the
// store after its effect, so a redelivered event is skipped and counted. A
// crash between the effect and the record can only repeat an idempotent
// effect (or, for an edited or deleted reply, post its thread notice and
// audit line twice).
//
// Interactions and commands carry no event id: they are idempotent by
// themselves (they set a status, a priority, an assignee).
type Bridge struct {
	o   Options
	log *slog.Logger
	// Counts are what became of the payloads handled, read by /metrics.
	Counts Counts

	intake   map[string]bool // IntakeChannels
	notRoots *keySet         // agents' channel messages known not to be a ticket's root (rootbind.go)
}

var _ Handler = (*Bridge)(nil)

// New returns a Bridge; Store, Slack, Channel, BotUserID and TeamID are
// required.
func New(o Options) (*Bridge, error) {
	switch {
	case o.Store == nil || o.Slack == nil:
		return nil, errors.New("slackin: Store and Slack are required")
	case o.Channel == "":
		return nil, errors.New("slackin: the agents' channel is required")
	case o.BotUserID == "" || o.TeamID == "":
		return nil, errors.New("slackin: the bot's user and team ids (auth.test) are required")
	}
	switch o.ReplyDefault {
	case "":
		o.ReplyDefault = ReplyCustomer
	case ReplyCustomer, ReplyInternal:
	default:
		return nil, fmt.Errorf("slackin: reply default %q: want customer or internal", o.ReplyDefault)
	}
	if o.NotePrefix == "" {
		o.NotePrefix = DefaultNotePrefix
	}
	if o.MaxAttachmentBytes <= 0 {
		o.MaxAttachmentBytes = DefaultMaxAttachmentBytes
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.IntakeCategory == "" {
		o.IntakeCategory = DefaultIntakeCategory
	}
	if o.NewTicketsPerHour == 0 {
		o.NewTicketsPerHour = DefaultNewTicketsPerHour
	}
	b := &Bridge{o: o, log: o.Logger.With("component", "slackin"), intake: map[string]bool{},
		notRoots: newKeySet(maxKnownNotRoots)}
	for _, ch := range o.IntakeChannels {
		if ch == o.Channel {
			return nil, fmt.Errorf("slackin: the agents' channel %s cannot be an intake channel", ch)
		}
		b.intake[ch] = true
	}
	return b, nil
}

// Identity is the app's own identity in Slack.
type Identity struct {
	BotUserID, BotID, TeamID string
}

// Identify asks auth.test who the bot is.
func Identify(ctx context.Context, api interface {
	AuthTestContext(ctx context.Context) (*slack.AuthTestResponse, error)
}) (Identity, error) {
	r, err := api.AuthTestContext(ctx)
	if err != nil {
		return Identity{}, fmt.Errorf("slack auth.test: %w", err)
	}
	return Identity{BotUserID: r.UserID, BotID: r.BotID, TeamID: r.TeamID}, nil
}

// HandleEvent applies one Events API event (from Socket Mode or HTTP).
// eventID is its event_id; a redelivered one is skipped. A nil error means
// the event may be acknowledged: applied, or deliberately ignored.
func (h *Bridge) HandleEvent(ctx context.Context, ev slackevents.EventsAPIEvent, eventID string) error {
	if ev.Type != slackevents.CallbackEvent {
		h.Counts.Ignored.Add(1)
		return nil
	}
	key := "slack:" + eventID
	if eventID != "" {
		seen, err := h.o.Store.SeenEvent(ctx, key)
		if err != nil {
			return err
		}
		if seen {
			h.Counts.Deduplicated.Add(1)
			return nil
		}
	}
	var err error
	switch e := ev.InnerEvent.Data.(type) {
	case *slackevents.MessageEvent:
		err = h.onMessage(ctx, e)
	case *slackevents.ReactionAddedEvent:
		err = h.onReaction(ctx, e)
	default:
		h.Counts.Ignored.Add(1)
	}
	if gone(err) {
		h.log.Info("slack event on a deleted ticket ignored", "event", eventID, "error", err)
		h.Counts.Ignored.Add(1)
		err = nil
	}
	if err != nil {
		return fmt.Errorf("slack event %s (%s): %w", eventID, ev.InnerEvent.Type, err)
	}
	if eventID != "" {
		if err := h.o.Store.RecordEvent(ctx, key); err != nil {
			return err
		}
	}
	return nil
}

// onMessage routes a message event by channel: the agents' channel, an
// intake channel or a direct message to the app (intake.go); any other
// channel is not ours.
func (h *Bridge) onMessage(ctx context.Context, e *slackevents.MessageEvent) error {
	switch {
	case e.Channel == h.o.Channel:
		return h.onAgentsMessage(ctx, e)
	case h.intake[e.Channel] || (h.o.DirectMessages && e.ChannelType == slackevents.ChannelTypeIM):
		return h.onIntakeMessage(ctx, e)
	}
	h.Counts.Ignored.Add(1)
	return nil
}

// gone says whether an error means the ticket was deleted after its thread
// was made: the lookups by thread answer before, so the store's ErrNotFound
// can only mean that here. Retrying would not help.
func gone(err error) bool { return errors.Is(err, store.ErrNotFound) }

// agentActor is how a change by an agent from Slack is recorded.
func agentActor(a *store.Agent) store.Actor {
	return store.Actor{ID: a.ID, Type: store.CreatorAdmin, Via: store.SourceSlack}
}
