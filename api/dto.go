package api

import (
	"time"

	"github.com/ticketd/ticketd/store"
)

// The API's own JSON shapes, converted explicitly from store types so that
// a schema change never silently changes public JSON. Field names and order
// follow seed 004; extensions come after the seed's fields.

// jsonTime renders RFC 3339 in UTC with milliseconds, as seed 004 does.
type jsonTime time.Time

func (t jsonTime) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Time(t).UTC().Format("2006-01-02T15:04:05.000Z") + `"`), nil
}

type ticketJSON struct {
	ID          string         `json:"_id"`
	CreatorID   string         `json:"creatorId"`
	CreatorType string         `json:"creatorType"`
	Category    string         `json:"category"`
	Subject     string         `json:"subject"`
	Description string         `json:"description"`
	Priority    string         `json:"priority"`
	Status      string         `json:"status"`
	Response    []responseJSON `json:"response"`
	CreatedAt   jsonTime       `json:"createdAt"`
	UpdatedAt   jsonTime       `json:"updatedAt"`
	V           int64          `json:"__v"`

	RefID       int64            `json:"refId"`
	TeamID      string           `json:"teamId"`
	Source      string           `json:"source,omitempty"`
	AssigneeID  string           `json:"assigneeId,omitempty"`
	Attachments []attachmentJSON `json:"attachments,omitempty"`
	// FirstResponse is shown to agents only: targets are internal.
	FirstResponse *firstResponseJSON `json:"firstResponse,omitempty"`
}

type firstResponseJSON struct {
	DueAt       *jsonTime `json:"dueAt,omitempty"`
	RespondedAt *jsonTime `json:"respondedAt,omitempty"`
	RemindedAt  *jsonTime `json:"remindedAt,omitempty"`
	BreachedAt  *jsonTime `json:"breachedAt,omitempty"`
}

func toFirstResponseJSON(fr *store.FirstResponse) *firstResponseJSON {
	if fr == nil {
		return nil
	}
	at := func(t *time.Time) *jsonTime {
		if t == nil {
			return nil
		}
		j := jsonTime(*t)
		return &j
	}
	return &firstResponseJSON{DueAt: at(fr.DueAt), RespondedAt: at(fr.RespondedAt), RemindedAt: at(fr.RemindedAt), BreachedAt: at(fr.BreachedAt)}
}

type responseJSON struct {
	ID          string   `json:"_id"`
	CreatorID   string   `json:"creatorId"`
	CreatorType string   `json:"creatorType"`
	Description string   `json:"description"`
	CreatedAt   jsonTime `json:"createdAt"`
	UpdatedAt   jsonTime `json:"updatedAt"`

	Source      string           `json:"source,omitempty"`
	Internal    bool             `json:"internal,omitempty"`
	Attachments []attachmentJSON `json:"attachments,omitempty"`
}

type attachmentJSON struct {
	ID          string `json:"_id"`
	Filename    string `json:"filename"`
	ContentType string `json:"contentType"`
	Size        int64  `json:"size"`
	Inline      bool   `json:"inline,omitempty"`
}

type logJSON struct {
	ID           string   `json:"_id"`
	TicketID     string   `json:"ticketId"`
	ActionTaken  string   `json:"actionTaken"`
	ActionBy     string   `json:"actionBy"`
	ActionByType string   `json:"actionByType"`
	ActionAt     jsonTime `json:"actionAt"`
}

// toTicketJSON converts a ticket for a viewer; customers never see agents'
// internal notes.
func toTicketJSON(t *store.Ticket, viewer Role) ticketJSON {
	out := ticketJSON{
		ID:          t.ID.Hex(),
		CreatorID:   t.CreatorID.Hex(),
		CreatorType: string(t.CreatorType),
		Category:    t.Category,
		Subject:     t.Subject,
		Description: t.Description,
		Priority:    string(t.Priority),
		Status:      string(t.Status),
		Response:    []responseJSON{},
		CreatedAt:   jsonTime(t.CreatedAt),
		UpdatedAt:   jsonTime(t.UpdatedAt),
		V:           t.V,
		RefID:       t.RefID,
		TeamID:      t.TeamID,
		Source:      string(t.Source),
	}
	if t.AssigneeID != nil {
		out.AssigneeID = t.AssigneeID.Hex()
	}
	for _, r := range t.Response {
		if r.Internal && viewer != RoleAdmin {
			continue
		}
		rj := responseJSON{
			ID:          r.ID.Hex(),
			CreatorID:   r.CreatorID.Hex(),
			CreatorType: string(r.CreatorType),
			Description: r.Description,
			CreatedAt:   jsonTime(r.CreatedAt),
			UpdatedAt:   jsonTime(r.UpdatedAt),
			Source:      string(r.Source),
			Internal:    r.Internal,
		}
		rj.Attachments = toAttachmentsJSON(r.Attachments)
		out.Response = append(out.Response, rj)
	}
	out.Attachments = toAttachmentsJSON(t.Attachments)
	if viewer == RoleAdmin {
		out.FirstResponse = toFirstResponseJSON(t.FirstResponse)
	}
	return out
}

func toAttachmentsJSON(as []store.Attachment) []attachmentJSON {
	var out []attachmentJSON
	for _, a := range as {
		out = append(out, attachmentJSON{ID: a.ID.Hex(), Filename: a.Filename, ContentType: a.ContentType, Size: a.Size, Inline: a.Inline})
	}
	return out
}

func toTicketsJSON(ts []store.Ticket, viewer Role) []ticketJSON {
	out := make([]ticketJSON, len(ts))
	for i := range ts {
		out[i] = toTicketJSON(&ts[i], viewer)
	}
	return out
}

func toLogsJSON(ls []store.LogEntry) []logJSON {
	out := make([]logJSON, len(ls))
	for i, l := range ls {
		out[i] = logJSON{
			ID: l.ID.Hex(), TicketID: l.TicketID.Hex(), ActionTaken: l.ActionTaken,
			ActionBy: l.ActionBy, ActionByType: string(l.ActionByType), ActionAt: jsonTime(l.ActionAt),
		}
	}
	return out
}
