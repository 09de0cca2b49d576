package api

import (
	"errors"
	"fmt"
	"mime"
	"net/http"

	"github.com/ticketd/ticketd/store"
)

// Routes for what the bridges leave behind: attachments, the delivery queue's
// dead letters, quarantined and ignored mail.

func (s *Server) attachment(w http.ResponseWriter, r *http.Request) error {
	p, err := principalFrom(r.Context())
	if err != nil {
		return err
	}
	id, err := objectIDParam(r, "id")
	if err != nil {
		return err
	}
	f, err := s.store.Attachment(r.Context(), id, p.scope())
	if err != nil {
		return notFoundAs(err, "Attachment not found")
	}
	// Always a download, never rendered inline: an attachment is the
	// sender's content, not ours (no stored HTML runs in our origin).
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": f.Filename}))
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Original-Content-Type", f.ContentType)
	_, err = w.Write(f.Data)
	return err
}

type deliveryJSON struct {
	ID            string   `json:"_id"`
	Sink          string   `json:"sink"`
	State         string   `json:"state"`
	Kind          string   `json:"kind"`
	TicketID      string   `json:"ticketId"`
	Attempts      int      `json:"attempts"`
	NextAttemptAt jsonTime `json:"nextAttemptAt"`
	LastError     string   `json:"lastError,omitempty"`
	CreatedAt     jsonTime `json:"createdAt"`
}

func (s *Server) deliveries(w http.ResponseWriter, r *http.Request) error {
	state := store.DeliveryState(r.URL.Query().Get("state"))
	if state == "" {
		state = store.DeliveryDead
	}
	if state != store.DeliveryDead && state != store.DeliveryPending && state != store.DeliveryWaiting {
		return badRequest(fmt.Sprintf("state must be %s, %s or %s", store.DeliveryDead, store.DeliveryPending, store.DeliveryWaiting))
	}
	limit, err := intParam(r.URL.Query().Get("limit"), "limit", 0, 200)
	if err != nil {
		return err
	}
	ds, err := s.store.Deliveries(r.Context(), state, limit)
	if err != nil {
		return err
	}
	out := make([]deliveryJSON, len(ds))
	for i, d := range ds {
		out[i] = deliveryJSON{
			ID: d.ID, Sink: d.Sink, State: string(d.State), Kind: string(d.Event.Kind),
			TicketID: d.Event.TicketID.Hex(), Attempts: d.Attempts, NextAttemptAt: jsonTime(d.NextAttemptAt),
			LastError: d.LastError, CreatedAt: jsonTime(d.CreatedAt),
		}
	}
	ok(w, http.StatusOK, "Deliveries fetched successfully!", out)
	return nil
}

func (s *Server) requeue(w http.ResponseWriter, r *http.Request) error {
	id := r.URL.Query().Get("id")
	if id == "" {
		return badRequest("id is required")
	}
	if err := s.store.RequeueDelivery(r.Context(), id); err != nil {
		return notFoundAs(err, "No dead delivery with this id")
	}
	ok(w, http.StatusOK, "Delivery requeued successfully!", map[string]string{"_id": id})
	return nil
}

type quarantineJSON struct {
	ID         string   `json:"_id"`
	Mailbox    string   `json:"mailbox"`
	UID        uint32   `json:"uid"`
	Reason     string   `json:"reason"`
	MessageID  string   `json:"messageId,omitempty"`
	From       string   `json:"from,omitempty"`
	Subject    string   `json:"subject,omitempty"`
	Size       int64    `json:"size"`
	Truncated  bool     `json:"truncated,omitempty"`
	ReceivedAt jsonTime `json:"receivedAt"`
}

func (s *Server) quarantine(w http.ResponseWriter, r *http.Request) error {
	limit, offset, err := pageParams(r)
	if err != nil {
		return err
	}
	qs, total, err := s.store.ListQuarantine(r.Context(), limit, offset)
	if err != nil {
		return err
	}
	out := make([]quarantineJSON, len(qs))
	for i, q := range qs {
		out[i] = quarantineJSON{
			ID: q.ID, Mailbox: q.Mailbox, UID: q.UID, Reason: q.Reason, MessageID: q.MessageID,
			From: q.From, Subject: q.Subject, Size: q.Size, Truncated: q.Truncated, ReceivedAt: jsonTime(q.ReceivedAt),
		}
	}
	writeJSON(w, http.StatusOK, envelope{Success: true, Message: "Quarantine fetched successfully!", Data: out, Total: &total})
	return nil
}

// quarantineRaw downloads a quarantined message as it arrived (message/rfc822),
// for an operator to inspect or re-send.
func (s *Server) quarantineRaw(w http.ResponseWriter, r *http.Request) error {
	id := r.URL.Query().Get("id")
	if id == "" {
		return badRequest("id is required")
	}
	q, err := s.store.QuarantinedMessage(r.Context(), id)
	if err != nil {
		return notFoundAs(err, "Message not found")
	}
	w.Header().Set("Content-Type", "message/rfc822")
	w.Header().Set("Content-Disposition", `attachment; filename="quarantined.eml"`)
	_, err = w.Write(q.Raw)
	return err
}

type ignoredJSON struct {
	ID        string   `json:"_id"`
	Mailbox   string   `json:"mailbox"`
	Reason    string   `json:"reason"`
	MessageID string   `json:"messageId,omitempty"`
	From      string   `json:"from,omitempty"`
	Subject   string   `json:"subject,omitempty"`
	At        jsonTime `json:"at"`
}

func (s *Server) ignored(w http.ResponseWriter, r *http.Request) error {
	limit, offset, err := pageParams(r)
	if err != nil {
		return err
	}
	ms, total, err := s.store.ListIgnored(r.Context(), limit, offset)
	if err != nil {
		return err
	}
	out := make([]ignoredJSON, len(ms))
	for i, m := range ms {
		out[i] = ignoredJSON{ID: m.ID, Mailbox: m.Mailbox, Reason: m.Reason, MessageID: m.MessageID, From: m.From, Subject: m.Subject, At: jsonTime(m.At)}
	}
	writeJSON(w, http.StatusOK, envelope{Success: true, Message: "Ignored mail fetched successfully!", Data: out, Total: &total})
	return nil
}

// notFoundAs names what was not found, for routes about other things than
// tickets; other errors pass through.
func notFoundAs(err error, msg string) error {
	if errors.Is(err, store.ErrNotFound) {
		return &apiError{http.StatusNotFound, msg}
	}
	return err
}

func pageParams(r *http.Request) (limit, offset int, err error) {
	if limit, err = intParam(r.URL.Query().Get("limit"), "limit", 0, 200); err != nil {
		return 0, 0, err
	}
	offset, err = intParam(r.URL.Query().Get("offset"), "offset", 0, 1<<31-1)
	return limit, offset, err
}
