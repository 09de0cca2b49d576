package store

import (
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Status is a ticket's place in its life cycle (seed 004 values).
type Status string

// The ticket statuses, in life-cycle order.
const (
	StatusCreated    Status = "created"
	StatusOpen       Status = "open"
	StatusInProgress Status = "in-progress"
	StatusResolved   Status = "resolved"
	StatusClosed     Status = "closed"
)

// Statuses lists every valid status.
var Statuses = []Status{StatusCreated, StatusOpen, StatusInProgress, StatusResolved, StatusClosed}

// Valid reports whether s is one of Statuses.
func (s Status) Valid() bool { return oneOf(s, Statuses) }

// Finished reports whether the ticket is resolved or closed; a customer
// writing to a finished ticket reopens it.
func (s Status) Finished() bool { return s == StatusResolved || s == StatusClosed }

// Priority is how urgent a ticket is (seed 004 values).
type Priority string

// The ticket priorities, lowest first.
const (
	PriorityLow    Priority = "low"
	PriorityMedium Priority = "medium"
	PriorityHigh   Priority = "high"
	PriorityUrgent Priority = "urgent"
)

// Priorities lists every valid priority.
var Priorities = []Priority{PriorityLow, PriorityMedium, PriorityHigh, PriorityUrgent}

// Valid reports whether p is one of Priorities.
func (p Priority) Valid() bool { return oneOf(p, Priorities) }

// CreatorType says who wrote a ticket or response. Seed 004 knows customer
// and admin; system is used only in the audit log, for changes the daemon
// makes on its own (a reopen, a relay).
type CreatorType string

// The creator types.
const (
	CreatorCustomer CreatorType = "customer"
	CreatorAdmin    CreatorType = "admin"
	CreatorSystem   CreatorType = "system"
)

// Source says through which channel a ticket or response arrived.
type Source string

// The sources.
const (
	SourceAPI   Source = "api"
	SourceEmail Source = "email"
	SourceSlack Source = "slack"
)

func oneOf[T comparable](v T, all []T) bool {
	for _, a := range all {
		if v == a {
			return true
		}
	}
	return false
}

// Ticket is the seed 004 ticket document. The first block of fields is the
// seed's, kept exactly; the rest are documented extensions.
type Ticket struct {
	ID          bson.ObjectID `bson:"_id"`
	CreatorID   bson.ObjectID `bson:"creatorId"`
	CreatorType CreatorType   `bson:"creatorType"`
	Category    string        `bson:"category"`
	Subject     string        `bson:"subject"`
	Description string        `bson:"description"`
	Priority    Priority      `bson:"priority"`
	Status      Status        `bson:"status"`
	Response    []Response    `bson:"response"`
	CreatedAt   time.Time     `bson:"createdAt"`
	UpdatedAt   time.Time     `bson:"updatedAt"`
	V           int64         `bson:"__v"`

	// RefID is the short human number used in subject tags ([#42]).
	RefID int64 `bson:"refId"`
	// TeamID scopes visibility: a customer sees its team's tickets only.
	TeamID string `bson:"teamId"`
	Source Source `bson:"source"`
	// SourceKey is the idempotency key of whatever created the ticket
	// (a Message-ID, a Slack ts, an API Idempotency-Key or a fresh id); a
	// unique index on it makes a retried create return the first ticket.
	SourceKey string `bson:"sourceKey"`
	// SourceHash fingerprints the content that SourceKey names (for mail:
	// the sender and the body), so a sender who reuses someone else's
	// Message-ID is told from a re-read of the same message. Empty on
	// records made before it existed.
	SourceHash string         `bson:"sourceHash,omitempty"`
	AssigneeID *bson.ObjectID `bson:"assigneeId,omitempty"`
	// Attachments lists the files that came with the opening message.
	Attachments []Attachment `bson:"attachments,omitempty"`
	IsDelete    bool         `bson:"isDelete"`
	DeletedAt   *time.Time   `bson:"deletedAt,omitempty"`
	// Logs is the audit log; kept inside the ticket so that each change and
	// its log line are one atomic write.
	Logs []LogEntry `bson:"logs"`
	// MessageIDs lists every Message-ID of the ticket's mail thread, received
	// or sent, oldest first, as they appear in headers ("<id@host>"); the
	// mailer builds References and In-Reply-To from it.
	MessageIDs []string `bson:"messageIds,omitempty"`
	// Threads lists the ticket's other outside threads (Slack), each bound
	// by a unique key in the keys collection (see BindThread). Mail threads
	// are in MessageIDs.
	Threads []ThreadRef `bson:"threads,omitempty"`
	// Outbox holds the announcements of changes not yet handed to the
	// delivery queue, written in the same atomic write as the change.
	Outbox []Event `bson:"outbox"`
	// FirstResponse tracks the first-response target (see FirstResponse);
	// nil until one of its times is recorded.
	FirstResponse *FirstResponse `bson:"firstResponse,omitempty"`
}

// FirstResponse is what is known about a ticket's first-response target.
// Each time is set once and never cleared.
type FirstResponse struct {
	// DueAt is the target in force when the reminder or the breach was
	// recorded (it follows the priority, so a later change of priority
	// may move the target without changing what was recorded).
	DueAt *time.Time `bson:"dueAt,omitempty"`
	// RespondedAt is when the first agent response the customer can see
	// was added (FirstAgentResponse).
	RespondedAt *time.Time `bson:"respondedAt,omitempty"`
	// RemindedAt is when the reminder (EventSLAReminder) was queued.
	RemindedAt *time.Time `bson:"remindedAt,omitempty"`
	// BreachedAt is when the missed target (EventSLABreached) was recorded.
	BreachedAt *time.Time `bson:"breachedAt,omitempty"`
}

// FirstAgentResponse returns the ticket's first response by an agent that
// the customer sees (an internal note does not count), or nil.
func (t *Ticket) FirstAgentResponse() *Response {
	for i := range t.Response {
		if r := &t.Response[i]; r.CreatorType == CreatorAdmin && !r.Internal {
			return r
		}
	}
	return nil
}

// ResponseByID returns the ticket's response with an id (an event's
// ResponseID), or nil when id is nil or names none of them.
func (t *Ticket) ResponseByID(id *bson.ObjectID) *Response {
	if id == nil {
		return nil
	}
	for i := range t.Response {
		if t.Response[i].ID == *id {
			return &t.Response[i]
		}
	}
	return nil
}

// Response is one reply on a ticket (seed 004 fields first).
type Response struct {
	ID          bson.ObjectID `bson:"_id"`
	CreatorID   bson.ObjectID `bson:"creatorId"`
	CreatorType CreatorType   `bson:"creatorType"`
	Description string        `bson:"description"`
	CreatedAt   time.Time     `bson:"createdAt"`
	UpdatedAt   time.Time     `bson:"updatedAt"`

	Source Source `bson:"source,omitempty"`
	// SourceKey deduplicates a retried delivery of the same message.
	SourceKey string `bson:"sourceKey,omitempty"`
	// SourceHash fingerprints the content SourceKey names (see Ticket).
	SourceHash string `bson:"sourceHash,omitempty"`
	// Internal marks an agent note that is never sent to the customer.
	Internal    bool         `bson:"internal,omitempty"`
	Attachments []Attachment `bson:"attachments,omitempty"`
}

// Attachment is the metadata of a file stored beside a response.
type Attachment struct {
	ID          bson.ObjectID `bson:"_id"`
	Filename    string        `bson:"filename"`
	ContentType string        `bson:"contentType"`
	Size        int64         `bson:"size"`
	// Inline marks an image shown in the body. Its key is not "inline":
	// the driver reads a tag named inline as its inline option.
	Inline bool `bson:"isInline,omitempty"`
}

// LogEntry is one line of a ticket's audit log (seed 003 field names).
type LogEntry struct {
	ID           bson.ObjectID `bson:"_id"`
	TicketID     bson.ObjectID `bson:"ticketId"`
	ActionTaken  string        `bson:"actionTaken"`
	ActionBy     string        `bson:"actionBy"`
	ActionByType CreatorType   `bson:"actionByType"`
	ActionAt     time.Time     `bson:"actionAt"`
}

// EventKind names a change that must be announced.
type EventKind string

// The announced changes.
const (
	EventTicketCreated   EventKind = "ticket.created"
	EventResponseAdded   EventKind = "response.added"
	EventStatusChanged   EventKind = "status.changed"
	EventPriorityChanged EventKind = "priority.changed"
	// EventResponseDelivered: a sink (Event.Origin) delivered a response to
	// the customer (the SMTP server accepted the mail).
	EventResponseDelivered EventKind = "response.delivered"
	// EventResponseUndelivered: a sink (Event.Origin) gave up delivering a
	// response to the customer; Event.Note says why.
	EventResponseUndelivered EventKind = "response.undelivered"
	// EventAssigneeChanged: From and To are the old and new assignee's
	// agent id (hex), "" for nobody. The Slack sink shows it; mail does not.
	EventAssigneeChanged EventKind = "assignee.changed"
	// EventTicketEdited: the customer edited the message that opened the
	// ticket before an agent answered (EditOpening); subject and
	// description are new. The Slack sink shows it; mail does not.
	EventTicketEdited EventKind = "ticket.edited"
	// EventSLAReminder: the ticket nears its first-response target without
	// an agent's answer (Ticket.FirstResponse has the due time). The Slack
	// sink reminds the assignee in the ticket's thread; nobody else shows it.
	EventSLAReminder EventKind = "sla.reminder"
	// EventSLABreached: the ticket missed its first-response target. The
	// Slack sink says so in the thread and in the escalation channel;
	// nobody else shows it.
	EventSLABreached EventKind = "sla.breached"
)

// Event is one announcement: what changed, on which ticket, by whom.
// Its ID is the idempotency key of every delivery made from it.
type Event struct {
	ID         bson.ObjectID  `bson:"_id"`
	Kind       EventKind      `bson:"kind"`
	TicketID   bson.ObjectID  `bson:"ticketId"`
	ResponseID *bson.ObjectID `bson:"responseId,omitempty"`
	ActorID    bson.ObjectID  `bson:"actorId"`
	ActorType  CreatorType    `bson:"actorType"`
	// From and To carry the old and new value of a status or priority.
	From string    `bson:"from,omitempty"`
	To   string    `bson:"to,omitempty"`
	At   time.Time `bson:"at"`
	// Origin is the channel the change came through (api, email, slack;
	// for a delivery outcome, the sink that delivered); empty for the
	// daemon's own changes. A sink skips echoes of its own channel.
	Origin Source `bson:"origin,omitempty"`
	// Seq orders a ticket's events: the ticket's __v after the change
	// times 16, plus the event's index within the change. Deliveries of
	// one ticket to one sink go out in this order.
	Seq int64 `bson:"seq,omitempty"`
	// Note is free text: why a delivery failed (response.undelivered).
	Note string `bson:"note,omitempty"`
}

// Actor is who makes a change.
type Actor struct {
	ID   bson.ObjectID
	Type CreatorType
	// Via is the channel the change comes through (api, email, slack);
	// empty for the daemon's own changes. It becomes the Origin of the
	// change's events.
	Via Source
}

// SystemActor is the daemon itself.
var SystemActor = Actor{Type: CreatorSystem}

// Customer is a person who writes to support.
type Customer struct {
	ID        bson.ObjectID `bson:"_id"`
	Email     string        `bson:"email"`
	Name      string        `bson:"name"`
	TeamID    string        `bson:"teamId"`
	CreatedAt time.Time     `bson:"createdAt"`
	// SlackTeamID and SlackUserID are the customer's Slack identity (their
	// organisation's team id and their user id), when they wrote in Slack;
	// unique through the keys collection (see FindOrCreateSlackCustomer).
	SlackTeamID string `bson:"slackTeamId,omitempty"`
	SlackUserID string `bson:"slackUserId,omitempty"`
}

// Agent is a support team member.
type Agent struct {
	ID          bson.ObjectID `bson:"_id"`
	Email       string        `bson:"email"`
	Name        string        `bson:"name"`
	SlackUserID string        `bson:"slackUserId,omitempty"`
	CreatedAt   time.Time     `bson:"createdAt"`
}
