package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/store"
)

// Store is what the API needs of the ticket store; *store.Store has it.
type Store interface {
	// Ready fails (with store.ErrUnavailable) while the database cannot be
	// reached or refuses writes.
	Ready(ctx context.Context) error
	CreateTicket(ctx context.Context, in store.NewTicket) (*store.Ticket, bool, error)
	AddResponse(ctx context.Context, id bson.ObjectID, scope store.Scope, in store.NewResponse) (*store.Ticket, bool, error)
	UpdateTicket(ctx context.Context, id bson.ObjectID, scope store.Scope, u store.TicketUpdate, by store.Actor) (*store.Ticket, error)
	DeleteTicket(ctx context.Context, id bson.ObjectID, scope store.Scope, by store.Actor) (*store.Ticket, error)
	Ticket(ctx context.Context, id bson.ObjectID, scope store.Scope) (*store.Ticket, error)
	ListTickets(ctx context.Context, scope store.Scope, q store.ListQuery) ([]store.Ticket, int64, error)
	Logs(ctx context.Context, id bson.ObjectID, scope store.Scope) ([]store.LogEntry, error)
	Attachment(ctx context.Context, id bson.ObjectID, scope store.Scope) (*store.AttachmentFile, error)
	Deliveries(ctx context.Context, state store.DeliveryState, limit int) ([]store.Delivery, error)
	RequeueDelivery(ctx context.Context, id string) error
	ListQuarantine(ctx context.Context, limit, offset int) ([]store.QuarantinedMail, int64, error)
	QuarantinedMessage(ctx context.Context, id string) (*store.QuarantinedMail, error)
	ListIgnored(ctx context.Context, limit, offset int) ([]store.IgnoredMail, int64, error)
}

// Seed 004's messages, verbatim, spelling included: existing clients
// compare them.
const (
	msgCreated  = "Ticket created successfullly!"
	msgFetched  = "Ticket fetched successfullly!"
	msgResponse = "Response added successfully!"
)

type createRequest struct {
	Category    string `json:"category"`
	Subject     string `json:"subject"`
	Description string `json:"description"`
	Priority    string `json:"priority"`
}

func (s *Server) create(w http.ResponseWriter, r *http.Request) error {
	p, err := principalFrom(r.Context())
	if err != nil {
		return err
	}
	var req createRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.Category == "" {
		req.Category = s.opts.Categories[0]
	}
	if !slices.Contains(s.opts.Categories, req.Category) {
		return badRequest(fmt.Sprintf("unknown category %q; GET /api/ticket/categories lists them", req.Category))
	}
	if err := s.checkText("subject", req.Subject, s.opts.MaxSubject); err != nil {
		return err
	}
	if err := s.checkText("description", req.Description, s.opts.MaxDescription); err != nil {
		return err
	}
	pr := store.Priority(req.Priority)
	if pr != "" && !pr.Valid() {
		return badRequest(fmt.Sprintf("unknown priority %q; one of %v", req.Priority, store.Priorities))
	}
	in := store.NewTicket{
		Creator: p.actor(), TeamID: p.Team, Category: req.Category,
		Subject: strings.TrimSpace(req.Subject), Description: req.Description,
		Priority: pr, Source: store.SourceAPI,
	}
	if in.SourceKey, err = sourceKey(r, p); err != nil {
		return err
	}
	t, _, err := s.store.CreateTicket(r.Context(), in)
	if err != nil {
		return err
	}
	ok(w, http.StatusCreated, msgCreated, toTicketJSON(t, p.Role))
	return nil
}

func (s *Server) fetch(w http.ResponseWriter, r *http.Request) error {
	p, err := principalFrom(r.Context())
	if err != nil {
		return err
	}
	q, count, err := s.listQuery(r, p.Role == RoleAdmin)
	if err != nil {
		return err
	}
	ts, total, err := s.store.ListTickets(r.Context(), p.scope(), q)
	if err != nil {
		return err
	}
	if count {
		ok(w, http.StatusOK, msgFetched, map[string]int64{"count": total})
		return nil
	}
	writeJSON(w, http.StatusOK, envelope{Success: true, Message: msgFetched, Data: toTicketsJSON(ts, p.Role), Total: &total})
	return nil
}

func (s *Server) fetchOne(w http.ResponseWriter, r *http.Request) error {
	p, id, err := s.target(r)
	if err != nil {
		return err
	}
	t, err := s.store.Ticket(r.Context(), id, p.scope())
	if err != nil {
		return err
	}
	ok(w, http.StatusOK, msgFetched, toTicketJSON(t, p.Role))
	return nil
}

// sourceKey is the store's idempotency key for the request's
// Idempotency-Key header, "" without one: a client that retries a create or
// a reply with the same key gets the first result back instead of a second.
func sourceKey(r *http.Request, p Principal) (string, error) {
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		return "", nil
	}
	if len(key) > 200 {
		return "", badRequest("Idempotency-Key is longer than 200 characters")
	}
	return "api:" + p.ID.Hex() + ":" + key, nil
}

type replyRequest struct {
	Description string `json:"description"`
	// Internal (agents only) makes the reply a note the customer never sees.
	Internal bool `json:"internal"`
}

func (s *Server) reply(w http.ResponseWriter, r *http.Request) error {
	p, id, err := s.target(r)
	if err != nil {
		return err
	}
	var req replyRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if err := s.checkText("description", req.Description, s.opts.MaxDescription); err != nil {
		return err
	}
	if req.Internal && p.Role != RoleAdmin {
		return badRequest("only agents can write internal notes")
	}
	in := store.NewResponse{Author: p.actor(), Description: req.Description, Source: store.SourceAPI, Internal: req.Internal}
	if in.SourceKey, err = sourceKey(r, p); err != nil {
		return err
	}
	t, _, err := s.store.AddResponse(r.Context(), id, p.scope(), in)
	if err != nil {
		return err
	}
	ok(w, http.StatusOK, msgResponse, toTicketJSON(t, p.Role))
	return nil
}

type updateRequest struct {
	Status   *string `json:"status"`
	Priority *string `json:"priority"`
	Category *string `json:"category"`
	// AssigneeID is an agent id; "" unassigns.
	AssigneeID *string `json:"assigneeId"`
	// V, when present, must equal the ticket's __v (optimistic concurrency).
	V *int64 `json:"__v"`
}

func (s *Server) update(w http.ResponseWriter, r *http.Request) error {
	p, id, err := s.target(r)
	if err != nil {
		return err
	}
	var req updateRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	u := store.TicketUpdate{ExpectedV: req.V}
	if req.Status != nil {
		st := store.Status(*req.Status)
		if !st.Valid() {
			return badRequest(fmt.Sprintf("unknown status %q; one of %v", *req.Status, store.Statuses))
		}
		u.Status = &st
	}
	if req.Priority != nil {
		pr := store.Priority(*req.Priority)
		if !pr.Valid() {
			return badRequest(fmt.Sprintf("unknown priority %q; one of %v", *req.Priority, store.Priorities))
		}
		u.Priority = &pr
	}
	if req.Category != nil {
		if !slices.Contains(s.opts.Categories, *req.Category) {
			return badRequest(fmt.Sprintf("unknown category %q; GET /api/ticket/categories lists them", *req.Category))
		}
		u.Category = req.Category
	}
	if req.AssigneeID != nil {
		a := bson.NilObjectID
		if *req.AssigneeID != "" {
			if a, err = bson.ObjectIDFromHex(*req.AssigneeID); err != nil {
				return badRequest("assigneeId is not a valid id")
			}
		}
		u.AssigneeID = &a
	}
	if u.Status == nil && u.Priority == nil && u.Category == nil && u.AssigneeID == nil {
		return badRequest("nothing to update: give status, priority, category or assigneeId")
	}
	t, err := s.store.UpdateTicket(r.Context(), id, p.scope(), u, p.actor())
	if err != nil {
		return err
	}
	ok(w, http.StatusOK, "Ticket updated successfully!", toTicketJSON(t, p.Role))
	return nil
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request) error {
	p, id, err := s.target(r)
	if err != nil {
		return err
	}
	if _, err := s.store.DeleteTicket(r.Context(), id, p.scope(), p.actor()); err != nil {
		return err
	}
	ok(w, http.StatusOK, "Ticket deleted successfully!", map[string]string{"_id": id.Hex()})
	return nil
}

func (s *Server) logs(w http.ResponseWriter, r *http.Request) error {
	p, id, err := s.target(r)
	if err != nil {
		return err
	}
	ls, err := s.store.Logs(r.Context(), id, p.scope())
	if err != nil {
		return err
	}
	ok(w, http.StatusOK, "Logs fetched successfully!", toLogsJSON(ls))
	return nil
}

func (s *Server) categories(w http.ResponseWriter, r *http.Request) error {
	ok(w, http.StatusOK, "Categories fetched successfully!", s.opts.Categories)
	return nil
}

// target returns the caller and the ticket id of the ?id= parameter.
func (s *Server) target(r *http.Request) (Principal, bson.ObjectID, error) {
	p, err := principalFrom(r.Context())
	if err != nil {
		return p, bson.NilObjectID, err
	}
	id, err := objectIDParam(r, "id")
	return p, id, err
}

func objectIDParam(r *http.Request, name string) (bson.ObjectID, error) {
	raw := r.URL.Query().Get(name)
	if raw == "" {
		return bson.NilObjectID, badRequest(name + " is required")
	}
	id, err := bson.ObjectIDFromHex(raw)
	if err != nil {
		return bson.NilObjectID, badRequest(name + " is not a valid id (24 hexadecimal characters)")
	}
	return id, nil
}

// listQuery reads the listing parameters; count reports count=true.
func (s *Server) listQuery(r *http.Request, admin bool) (q store.ListQuery, count bool, err error) {
	v := r.URL.Query()
	if q.Limit, err = intParam(v.Get("limit"), "limit", 0, 200); err != nil {
		return q, false, err
	}
	if q.Offset, err = intParam(v.Get("offset"), "offset", 0, 1<<31-1); err != nil {
		return q, false, err
	}
	if st := store.Status(v.Get("status")); st != "" {
		if !st.Valid() {
			return q, false, badRequest(fmt.Sprintf("unknown status %q; one of %v", st, store.Statuses))
		}
		q.Status = st
	}
	if pr := store.Priority(v.Get("priority")); pr != "" {
		if !pr.Valid() {
			return q, false, badRequest(fmt.Sprintf("unknown priority %q; one of %v", pr, store.Priorities))
		}
		q.Priority = pr
	}
	if c := v.Get("category"); c != "" {
		if !slices.Contains(s.opts.Categories, c) {
			return q, false, badRequest(fmt.Sprintf("unknown category %q", c))
		}
		q.Category = c
	}
	q.Keyword = strings.TrimSpace(v.Get("keyword"))
	switch {
	case !utf8.ValidString(q.Keyword) || strings.ContainsRune(q.Keyword, 0):
		return q, false, badRequest("keyword is not valid UTF-8 text")
	case utf8.RuneCountInString(q.Keyword) > 200:
		return q, false, badRequest("keyword is longer than 200 characters")
	}
	switch v.Get("count") {
	case "", "false":
	case "true":
		count = true
	default:
		return q, false, badRequest("count must be true or false")
	}
	if admin {
		q.TeamID = v.Get("teamId")
		if c := v.Get("creatorId"); c != "" {
			if q.CreatorID, err = bson.ObjectIDFromHex(c); err != nil {
				return q, false, badRequest("creatorId is not a valid id")
			}
		}
	}
	return q, count, nil
}

func intParam(raw, name string, min, max int) (int, error) {
	if raw == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < min || n > max {
		return 0, badRequest(fmt.Sprintf("%s must be a whole number from %d to %d", name, min, max))
	}
	return n, nil
}

func (s *Server) checkText(field, v string, max int) error {
	switch n := utf8.RuneCountInString(v); {
	case strings.TrimSpace(v) == "":
		return badRequest(field + " is required")
	case !utf8.ValidString(v):
		return badRequest(field + " is not valid UTF-8")
	case n > max:
		return badRequest(fmt.Sprintf("%s is longer than %d characters", field, max))
	}
	return nil
}

// decodeJSON reads one JSON object from a request body whose declared type
// is JSON; unknown fields are ignored, trailing data is not.
func decodeJSON(r *http.Request, v any) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return errMediaType
	}
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &mbe):
			return errTooLarge
		case errors.Is(err, io.EOF):
			return badRequest("request body is empty")
		case errors.As(err, &te) && te.Field == "":
			return badRequest("request body must be a JSON object")
		case errors.As(err, &te):
			return badRequest(fmt.Sprintf("field %s must be a %s", te.Field, te.Type))
		default:
			return badRequest("request body is not valid JSON")
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errTooLarge
		}
		return badRequest("request body has data after the JSON object")
	}
	return nil
}
