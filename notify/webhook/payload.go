package webhook

import (
	"time"

	"github.com/ticketd/ticketd/store"
)

// The payload is documented in api/openapi.json, section "webhooks"; a test
// in cmd/ticketd checks the documents actually sent against it. Its ticket
// and response use the REST API's field names and formats (seed 004), but
// they are defined here: notify never imports api. The ticket comes without
// its responses, so that a payload stays small however long the
// conversation: a response.added event carries the new response, and the
// REST API has the rest.

// Payload is the JSON document POSTed for one event: the Standard Webhooks
// envelope of type, timestamp and data.
type Payload struct {
	// Type is the event kind (ticket.created, response.added, ...).
	Type string `json:"type"`
	// Timestamp is when the change happened (not when it was sent).
	Timestamp string `json:"timestamp"`
	Data      Data   `json:"data"`
}

// Data is what changed, on which ticket, by whom.
type Data struct {
	// EventID is the change's id, the same for every endpoint (the
	// webhook-id header differs per endpoint).
	EventID  string `json:"eventId"`
	TicketID string `json:"ticketId"`
	RefID    int64  `json:"refId"`
	Actor    Actor  `json:"actor"`
	// Origin is the channel the change came through: api, email or slack;
	// absent for the daemon's own changes.
	Origin string `json:"origin,omitempty"`
	// *Change is present for status, priority and assignee changes only.
	*Change
	// Response is the new response (response.added only).
	Response *Response `json:"response,omitempty"`
	// Ticket is the ticket as it is when the webhook is sent, which may
	// be later than the change (on a retry): order by its __v.
	Ticket Ticket `json:"ticket"`
}

// Change is an old and a new value; for an assignee, agent ids, null for
// nobody.
type Change struct {
	From *string `json:"from"`
	To   *string `json:"to"`
}

// Actor is who made the change.
type Actor struct {
	// Type is customer, admin or system (the daemon itself).
	Type string `json:"type"`
	// ID is the customer's or agent's id; absent for system.
	ID string `json:"id,omitempty"`
}

// Ticket is a ticket as the REST API renders it, without its responses.
type Ticket struct {
	ID          string       `json:"_id"`
	CreatorID   string       `json:"creatorId"`
	CreatorType string       `json:"creatorType"`
	Category    string       `json:"category"`
	Subject     string       `json:"subject"`
	Description string       `json:"description"`
	Priority    string       `json:"priority"`
	Status      string       `json:"status"`
	CreatedAt   string       `json:"createdAt"`
	UpdatedAt   string       `json:"updatedAt"`
	V           int64        `json:"__v"`
	RefID       int64        `json:"refId"`
	TeamID      string       `json:"teamId"`
	Source      string       `json:"source,omitempty"`
	AssigneeID  string       `json:"assigneeId,omitempty"`
	Attachments []Attachment `json:"attachments,omitempty"`
	// Responses counts the responses (internal notes included only for
	// an endpoint that asked for them).
	Responses int `json:"responseCount"`
}

// Response is a response as the REST API renders it to an agent.
type Response struct {
	ID          string       `json:"_id"`
	CreatorID   string       `json:"creatorId"`
	CreatorType string       `json:"creatorType"`
	Description string       `json:"description"`
	CreatedAt   string       `json:"createdAt"`
	UpdatedAt   string       `json:"updatedAt"`
	Source      string       `json:"source,omitempty"`
	Internal    bool         `json:"internal,omitempty"`
	Attachments []Attachment `json:"attachments,omitempty"`
}

// Attachment is a file's metadata (download: /api/ticket/attachment?id=).
type Attachment struct {
	ID          string `json:"_id"`
	Filename    string `json:"filename"`
	ContentType string `json:"contentType"`
	Size        int64  `json:"size"`
	Inline      bool   `json:"inline,omitempty"`
}

// jsonTime is the seed's time format: RFC 3339, UTC, milliseconds.
func jsonTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// newPayload renders event e of ticket t; r is the event's response, if
// any. internal says whether internal notes count (Ticket.Responses).
func newPayload(e store.Event, t *store.Ticket, r *store.Response, internal bool) Payload {
	d := Data{
		EventID: e.ID.Hex(), TicketID: t.ID.Hex(), RefID: t.RefID,
		Actor:  Actor{Type: string(e.ActorType)},
		Origin: string(e.Origin),
		Ticket: toTicket(t, internal),
	}
	if !e.ActorID.IsZero() {
		d.Actor.ID = e.ActorID.Hex()
	}
	switch e.Kind {
	case store.EventStatusChanged, store.EventPriorityChanged, store.EventAssigneeChanged:
		d.Change = &Change{From: orNull(e.From), To: orNull(e.To)}
	}
	if r != nil {
		d.Response = &Response{
			ID: r.ID.Hex(), CreatorID: r.CreatorID.Hex(), CreatorType: string(r.CreatorType),
			Description: r.Description, CreatedAt: jsonTime(r.CreatedAt), UpdatedAt: jsonTime(r.UpdatedAt),
			Source: string(r.Source), Internal: r.Internal, Attachments: toAttachments(r.Attachments),
		}
	}
	return Payload{Type: string(e.Kind), Timestamp: jsonTime(e.At), Data: d}
}

func toTicket(t *store.Ticket, internal bool) Ticket {
	out := Ticket{
		ID: t.ID.Hex(), CreatorID: t.CreatorID.Hex(), CreatorType: string(t.CreatorType),
		Category: t.Category, Subject: t.Subject, Description: t.Description,
		Priority: string(t.Priority), Status: string(t.Status),
		CreatedAt: jsonTime(t.CreatedAt), UpdatedAt: jsonTime(t.UpdatedAt), V: t.V,
		RefID: t.RefID, TeamID: t.TeamID, Source: string(t.Source),
		Attachments: toAttachments(t.Attachments),
	}
	if t.AssigneeID != nil {
		out.AssigneeID = t.AssigneeID.Hex()
	}
	for _, r := range t.Response {
		if internal || !r.Internal {
			out.Responses++
		}
	}
	return out
}

func toAttachments(as []store.Attachment) []Attachment {
	var out []Attachment
	for _, a := range as {
		out = append(out, Attachment{ID: a.ID.Hex(), Filename: a.Filename, ContentType: a.ContentType, Size: a.Size, Inline: a.Inline})
	}
	return out
}

// orNull is s, or nil (JSON null) when s is empty: an assignee change
// from or to nobody.
func orNull(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
