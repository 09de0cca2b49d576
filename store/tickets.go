package store

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Scope limits which tickets an operation may see. The zero Scope sees
// nothing, so a forgotten scope fails closed.
type Scope struct {
	all  bool
	team string
}

// AllTickets is an agent's scope.
var AllTickets = Scope{all: true}

// TeamScope is a customer's scope: its team's tickets only.
func TeamScope(team string) Scope { return Scope{team: team} }

func (sc Scope) allows(t *Ticket) bool {
	return !t.IsDelete && (sc.all || (sc.team != "" && sc.team == t.TeamID))
}

// NewTicket is what opens a ticket.
type NewTicket struct {
	Creator     Actor
	TeamID      string
	Category    string
	Subject     string
	Description string
	Priority    Priority // empty means low
	Source      Source
	// SourceKey is the idempotency key; empty means a fresh one.
	SourceKey string
	// SourceHash fingerprints the content SourceKey names; may be empty.
	SourceHash string
	// MessageID of the mail that opened the ticket, if any: recorded in the
	// same insert, so the acknowledgement can thread under it at once.
	MessageID string
	// Attachments lists the files that came with it (stored apart, by id).
	Attachments []Attachment
	// ID, when set, is the new ticket's id: an adapter that stores files
	// before the ticket derives it from the message, so a redelivery names
	// the same ticket. Zero means a fresh one.
	ID bson.ObjectID
	// Threads are outside threads bound to the ticket from its first
	// write (the customer's Slack message), so the ticket.created
	// announcement already knows them; their lookup keys are bound right
	// after the insert, like MessageID.
	Threads []ThreadRef
}

// CreateTicket opens a ticket with its first audit line and a
// ticket.created announcement. When a ticket with the same SourceKey
// exists, it returns that one and created=false.
func (s *Store) CreateTicket(ctx context.Context, in NewTicket) (t *Ticket, created bool, err error) {
	if in.Priority == "" {
		in.Priority = PriorityLow
	}
	switch {
	case !in.Priority.Valid():
		return nil, false, fmt.Errorf("create ticket: %w: priority %q", ErrInvalid, in.Priority)
	case in.Creator.Type != CreatorCustomer && in.Creator.Type != CreatorAdmin:
		return nil, false, fmt.Errorf("create ticket: %w: creator type %q", ErrInvalid, in.Creator.Type)
	case in.TeamID == "":
		return nil, false, fmt.Errorf("create ticket: %w: empty team", ErrInvalid)
	}
	subject, err := s.limits.CheckSubject(in.Subject)
	if err != nil {
		return nil, false, fmt.Errorf("create ticket: %w", err)
	}
	in.Subject = subject
	if err := s.limits.CheckDescription(in.Description); err != nil {
		return nil, false, fmt.Errorf("create ticket: %w", err)
	}
	id := in.ID
	if id.IsZero() {
		id = bson.NewObjectID()
	}
	if in.SourceKey == "" {
		in.SourceKey = string(SourceAPI) + ":" + id.Hex()
	}
	ref, err := s.nextSeq(ctx, "tickets")
	if err != nil {
		return nil, false, fmt.Errorf("create ticket: %w", err)
	}
	now := s.nowUTC()
	t = &Ticket{
		ID:          id,
		CreatorID:   in.Creator.ID,
		CreatorType: in.Creator.Type,
		Category:    in.Category,
		Subject:     in.Subject,
		Description: in.Description,
		Priority:    in.Priority,
		Status:      StatusCreated,
		Response:    []Response{},
		CreatedAt:   now,
		UpdatedAt:   now,
		RefID:       ref,
		TeamID:      in.TeamID,
		Source:      in.Source,
		SourceKey:   in.SourceKey,
		SourceHash:  in.SourceHash,
		Attachments: in.Attachments,
		Logs:        []LogEntry{logEntry(id, in.Creator, now, "Ticket created")},
		Outbox:      []Event{{ID: bson.NewObjectID(), Kind: EventTicketCreated, TicketID: id, ActorID: in.Creator.ID, ActorType: in.Creator.Type, At: now, Origin: in.Source}},
	}
	if h := headerMessageID(in.MessageID); h != "" {
		t.MessageIDs = []string{h}
	}
	for _, r := range in.Threads {
		if _, err := threadKey(r.Kind, r.Key); err != nil || r.Kind == ThreadMail {
			return nil, false, fmt.Errorf("create ticket: %w: thread %s %q", ErrInvalid, r.Kind, r.Key)
		}
		t.Threads = append(t.Threads, ThreadRef{Kind: r.Kind, Key: strings.TrimSpace(r.Key)})
	}
	if _, err := s.tickets.InsertOne(ctx, t); err != nil {
		if mongo.IsDuplicateKeyError(err) {
			existing, ferr := s.ticketBySourceKey(ctx, in.SourceKey)
			if ferr != nil {
				return nil, false, fmt.Errorf("create ticket: find duplicate of %q: %w", in.SourceKey, ferr)
			}
			// The first attempt may have been stored without this process
			// hearing of it (a timeout after the insert): make sure the
			// relay knows it now.
			s.signal(existing.ID)
			return existing, false, s.bindNewThreads(ctx, in, existing.ID)
		}
		return nil, false, fmt.Errorf("create ticket: %w", classify(err))
	}
	s.signal(id)
	// The lookup keys are bound after the insert; a crash in between is
	// repaired by the retry, which lands in the duplicate branch above.
	return t, true, s.bindNewThreads(ctx, in, id)
}

// bindNewThreads binds the lookup keys of a new ticket's threads.
func (s *Store) bindNewThreads(ctx context.Context, in NewTicket, id bson.ObjectID) error {
	if err := s.BindMessageID(ctx, in.MessageID, id); err != nil {
		return err
	}
	for _, r := range in.Threads {
		k, err := threadKey(r.Kind, r.Key)
		if err != nil {
			return fmt.Errorf("create ticket: %w", err)
		}
		if _, err := s.bindKey(ctx, k, id); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) ticketBySourceKey(ctx context.Context, key string) (*Ticket, error) {
	if s.index != nil {
		id, err := s.index.idBy(ctx, "source_key", key)
		if err != nil {
			return nil, err
		}
		return s.load(ctx, id, nil)
	}
	var t Ticket
	err := s.tickets.FindOne(ctx, bson.D{{Key: "sourceKey", Value: key}}).Decode(&t)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, classify(err)
	}
	return &t, nil
}

// NewResponse is a reply to add to a ticket.
type NewResponse struct {
	Author      Actor
	Description string
	Source      Source
	// SourceKey deduplicates redelivery of the same message; may be empty.
	SourceKey string
	// SourceHash fingerprints the content SourceKey names; may be empty.
	SourceHash  string
	Internal    bool
	Attachments []Attachment
	// MessageID of the mail that carried the reply, if any: appended to the
	// ticket's thread in the same update.
	MessageID string
}

// AddResponse appends a reply. A customer's reply to a resolved or closed
// ticket reopens it. A reply whose SourceKey the ticket already holds is not
// added again: added=false and the ticket as it is.
func (s *Store) AddResponse(ctx context.Context, id bson.ObjectID, scope Scope, in NewResponse) (t *Ticket, added bool, err error) {
	if in.Author.Type != CreatorCustomer && in.Author.Type != CreatorAdmin {
		return nil, false, fmt.Errorf("add response: %w: author type %q", ErrInvalid, in.Author.Type)
	}
	if in.Internal && in.Author.Type != CreatorAdmin {
		return nil, false, fmt.Errorf("add response: %w: only agents write internal notes", ErrInvalid)
	}
	if err := s.limits.CheckDescription(in.Description); err != nil {
		return nil, false, fmt.Errorf("add response: %w", err)
	}
	t, err = s.mutate(ctx, id, scope, nil, func(t *Ticket, now time.Time, c *change) error {
		if h := headerMessageID(in.MessageID); h != "" && !slices.Contains(t.MessageIDs, h) {
			c.addMessageID = h
		}
		if in.SourceKey != "" {
			for _, r := range t.Response {
				if r.SourceKey == in.SourceKey {
					c.addMessageID = "" // already stored: no change
					return nil
				}
			}
		}
		r := Response{
			ID:          bson.NewObjectID(),
			CreatorID:   in.Author.ID,
			CreatorType: in.Author.Type,
			Description: in.Description,
			CreatedAt:   now,
			UpdatedAt:   now,
			Source:      in.Source,
			SourceKey:   in.SourceKey,
			SourceHash:  in.SourceHash,
			Internal:    in.Internal,
			Attachments: in.Attachments,
		}
		c.response = &r
		if r.CreatorType == CreatorAdmin && !r.Internal && t.FirstAgentResponse() == nil {
			c.setFirstResponse("respondedAt", now, func(fr *FirstResponse, at *time.Time) { fr.RespondedAt = at })
		}
		what := "Response added by " + string(in.Author.Type)
		if in.Internal {
			what = "Internal note added by admin"
		}
		c.log(in.Author, what)
		c.announce(Event{Kind: EventResponseAdded, ResponseID: &r.ID, ActorID: in.Author.ID, ActorType: in.Author.Type, Origin: in.Source})
		if in.Author.Type == CreatorCustomer && t.Status.Finished() {
			by := in.Author
			by.Via = in.Source // the reopen came through the reply's channel
			c.setStatus(t, StatusOpen, by, " (reopened by customer reply)")
		}
		added = true
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return t, added, s.BindMessageID(ctx, in.MessageID, id)
}

// TicketUpdate lists the fields an agent may change; nil means unchanged.
type TicketUpdate struct {
	Status   *Status
	Priority *Priority
	Category *string
	// AssigneeID set to the zero ObjectID unassigns.
	AssigneeID *bson.ObjectID
	// ExpectedV, when set, makes the update fail with ErrConflict unless the
	// ticket's __v still equals it (optimistic concurrency for API clients).
	ExpectedV *int64
}

// UpdateTicket applies an agent's changes, logging each and announcing
// status and priority changes. Setting a field to its current value is not
// a change.
func (s *Store) UpdateTicket(ctx context.Context, id bson.ObjectID, scope Scope, u TicketUpdate, by Actor) (*Ticket, error) {
	if u.Status != nil && !u.Status.Valid() {
		return nil, fmt.Errorf("update ticket: %w: status %q", ErrInvalid, *u.Status)
	}
	if u.Priority != nil && !u.Priority.Valid() {
		return nil, fmt.Errorf("update ticket: %w: priority %q", ErrInvalid, *u.Priority)
	}
	if u.Category != nil && strings.TrimSpace(*u.Category) == "" {
		return nil, fmt.Errorf("update ticket: %w: empty category", ErrInvalid)
	}
	return s.mutate(ctx, id, scope, u.ExpectedV, func(t *Ticket, now time.Time, c *change) error {
		if u.Status != nil && *u.Status != t.Status {
			c.setStatus(t, *u.Status, by, "")
		}
		if u.Priority != nil && *u.Priority != t.Priority {
			to := *u.Priority
			c.set("priority", to, func(t *Ticket) { t.Priority = to })
			c.log(by, fmt.Sprintf("Priority changed from %s to %s", t.Priority, *u.Priority))
			c.announce(Event{Kind: EventPriorityChanged, ActorID: by.ID, ActorType: by.Type, Origin: by.Via, From: string(t.Priority), To: string(*u.Priority)})
		}
		if u.Category != nil && *u.Category != t.Category {
			to := *u.Category
			c.set("category", to, func(t *Ticket) { t.Category = to })
			c.log(by, fmt.Sprintf("Category changed from %s to %s", t.Category, *u.Category))
		}
		if u.AssigneeID != nil {
			switch {
			case u.AssigneeID.IsZero() && t.AssigneeID != nil:
				c.set("assigneeId", nil, func(t *Ticket) { t.AssigneeID = nil })
				c.log(by, "Assignee removed")
				c.announce(Event{Kind: EventAssigneeChanged, ActorID: by.ID, ActorType: by.Type, Origin: by.Via, From: t.AssigneeID.Hex()})
			case !u.AssigneeID.IsZero() && (t.AssigneeID == nil || *t.AssigneeID != *u.AssigneeID):
				to := *u.AssigneeID
				from := ""
				if t.AssigneeID != nil {
					from = t.AssigneeID.Hex()
				}
				c.set("assigneeId", to, func(t *Ticket) { t.AssigneeID = &to })
				c.log(by, "Assigned to "+u.AssigneeID.Hex())
				c.announce(Event{Kind: EventAssigneeChanged, ActorID: by.ID, ActorType: by.Type, Origin: by.Via, From: from, To: to.Hex()})
			}
		}
		return nil
	})
}

// DeleteTicket soft-deletes a ticket (isDelete): it disappears from every
// read but stays in the database with its audit log.
func (s *Store) DeleteTicket(ctx context.Context, id bson.ObjectID, scope Scope, by Actor) (*Ticket, error) {
	return s.mutate(ctx, id, scope, nil, func(t *Ticket, now time.Time, c *change) error {
		c.set("isDelete", true, func(t *Ticket) { t.IsDelete = true })
		c.set("deletedAt", now, func(t *Ticket) { t.DeletedAt = &now })
		c.log(by, "Ticket deleted")
		return nil
	})
}

// Ticket returns one ticket, or ErrNotFound when it does not exist, is
// deleted, or lies outside scope.
func (s *Store) Ticket(ctx context.Context, id bson.ObjectID, scope Scope) (*Ticket, error) {
	t, err := s.load(ctx, id, nil)
	if err != nil {
		return nil, err
	}
	if !scope.allows(t) {
		return nil, ErrNotFound
	}
	return t, nil
}

// TicketByRef returns the ticket with a human number, within scope.
func (s *Store) TicketByRef(ctx context.Context, ref int64, scope Scope) (*Ticket, error) {
	if s.index != nil {
		id, err := s.index.idBy(ctx, "ref", ref)
		if err != nil {
			return nil, err
		}
		return s.Ticket(ctx, id, scope)
	}
	var t Ticket
	err := s.tickets.FindOne(ctx, bson.D{{Key: "refId", Value: ref}}).Decode(&t)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("find ticket #%d: %w", ref, classify(err))
	}
	if !scope.allows(&t) {
		return nil, ErrNotFound
	}
	return &t, nil
}

// Logs returns a ticket's audit log, oldest first.
func (s *Store) Logs(ctx context.Context, id bson.ObjectID, scope Scope) ([]LogEntry, error) {
	t, err := s.Ticket(ctx, id, scope)
	if err != nil {
		return nil, err
	}
	return t.Logs, nil
}

// ListQuery filters and pages a ticket listing. Zero values mean "any".
type ListQuery struct {
	TeamID    string
	CreatorID bson.ObjectID
	Status    Status
	Priority  Priority
	Category  string
	// Keyword matches subject or description, case-insensitively, as text
	// (not as a pattern).
	Keyword string
	Limit   int // 0 means DefaultLimit
	Offset  int
}

// DefaultLimit is the page size when none is asked for.
const DefaultLimit = 50

// ListTickets returns one page of tickets, newest-updated first, and the
// number of tickets matching the query. Listed tickets carry neither their
// audit log nor their outbox.
func (s *Store) ListTickets(ctx context.Context, scope Scope, q ListQuery) ([]Ticket, int64, error) {
	filter := bson.D{{Key: "isDelete", Value: false}}
	switch {
	case !scope.all && scope.team == "":
		return []Ticket{}, 0, nil
	case !scope.all:
		if q.TeamID != "" && q.TeamID != scope.team {
			return []Ticket{}, 0, nil
		}
		q.TeamID = scope.team
	}
	if q.TeamID != "" {
		filter = append(filter, bson.E{Key: "teamId", Value: q.TeamID})
	}
	if !q.CreatorID.IsZero() {
		filter = append(filter, bson.E{Key: "creatorId", Value: q.CreatorID})
	}
	if q.Status != "" {
		filter = append(filter, bson.E{Key: "status", Value: q.Status})
	}
	if q.Priority != "" {
		filter = append(filter, bson.E{Key: "priority", Value: q.Priority})
	}
	if q.Category != "" {
		filter = append(filter, bson.E{Key: "category", Value: q.Category})
	}
	if q.Keyword != "" {
		re := bson.Regex{Pattern: regexp.QuoteMeta(q.Keyword), Options: "i"}
		filter = append(filter, bson.E{Key: "$or", Value: bson.A{
			bson.D{{Key: "subject", Value: re}},
			bson.D{{Key: "description", Value: re}},
		}})
	}
	if q.Limit <= 0 {
		q.Limit = DefaultLimit
	}
	if !utf8.ValidString(q.Keyword) || strings.ContainsRune(q.Keyword, 0) {
		return nil, 0, fmt.Errorf("list tickets: %w: keyword is not valid text", ErrInvalid)
	}
	if s.index != nil {
		ts, total, err := s.index.list(ctx, q)
		if !errors.Is(err, errStoredFormat) {
			return ts, total, err
		}
		s.log.Warn("a ticket on this page is stored in a form the listing index does not decode; listed by the database server instead (slower)",
			"err", err)
	}
	opts := options.Find().
		SetSort(bson.D{{Key: "updatedAt", Value: -1}, {Key: "_id", Value: -1}}).
		SetSkip(int64(q.Offset)).
		SetLimit(int64(q.Limit)).
		SetProjection(withoutHistory)
	cur, err := s.tickets.Find(ctx, filter, opts)
	if err != nil {
		return nil, 0, fmt.Errorf("list tickets: %w", classify(err))
	}
	tickets := []Ticket{}
	if err := cur.All(ctx, &tickets); err != nil {
		return nil, 0, fmt.Errorf("list tickets: %w", classify(err))
	}
	total, err := s.tickets.CountDocuments(ctx, filter)
	if err != nil {
		return nil, 0, fmt.Errorf("count tickets: %w", classify(err))
	}
	return tickets, total, nil
}

// withoutHistory leaves out the two arrays that only grow (the audit log
// and pending events): a write neither needs nor returns them, and every
// byte of them is decoded and encoded again on each read.
var withoutHistory = bson.D{{Key: "logs", Value: 0}, {Key: "outbox", Value: 0}}

// load reads a ticket; projection nil means the whole document.
func (s *Store) load(ctx context.Context, id bson.ObjectID, projection bson.D) (*Ticket, error) {
	opts := options.FindOne()
	if projection != nil {
		opts.SetProjection(projection)
	}
	var t Ticket
	err := s.tickets.FindOne(ctx, bson.D{{Key: "_id", Value: id}}, opts).Decode(&t)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("load ticket %s: %w", id.Hex(), classify(err))
	}
	return &t, nil
}

// change collects what one operation does to a ticket, so that the field
// changes, the audit lines and the announcements go out in one update.
type change struct {
	ticketID bson.ObjectID
	now      time.Time
	v        int64             // the ticket's __v after this change
	fields   bson.D            // $set, besides updatedAt
	applies  []func(t *Ticket) // the same field changes, on the loaded ticket
	response *Response
	logs     []LogEntry
	events   []Event
	// addMessageID joins the ticket's mail thread ("<id@host>").
	addMessageID string
}

func (c *change) empty() bool {
	return len(c.fields) == 0 && c.response == nil && len(c.logs) == 0 && len(c.events) == 0 && c.addMessageID == ""
}

// set changes one field: in the database update, and on the loaded ticket
// that mutate returns.
func (c *change) set(key string, value any, apply func(t *Ticket)) {
	c.fields = append(c.fields, bson.E{Key: key, Value: value})
	c.applies = append(c.applies, apply)
}

// applyTo makes t what the update makes of the stored document.
func (c *change) applyTo(t *Ticket) {
	for _, a := range c.applies {
		a(t)
	}
	if c.response != nil {
		t.Response = append(t.Response, *c.response)
	}
	if c.addMessageID != "" {
		t.MessageIDs = append(t.MessageIDs, c.addMessageID)
	}
	t.UpdatedAt = c.now
	t.V++
}

func (c *change) log(by Actor, what string) {
	c.logs = append(c.logs, logEntry(c.ticketID, by, c.now, what))
}

func (c *change) announce(e Event) {
	e.ID = bson.NewObjectID()
	e.TicketID = c.ticketID
	e.At = c.now
	e.Seq = eventSeq(c.v, len(c.events))
	c.events = append(c.events, e)
}

func (c *change) setStatus(t *Ticket, to Status, by Actor, why string) {
	c.set("status", to, func(t *Ticket) { t.Status = to })
	c.log(by, fmt.Sprintf("Status changed from %s to %s%s", t.Status, to, why))
	c.announce(Event{Kind: EventStatusChanged, ActorID: by.ID, ActorType: by.Type, Origin: by.Via, From: string(t.Status), To: string(to)})
}

func (c *change) update() bson.D {
	set := append(bson.D{{Key: "updatedAt", Value: c.now}}, c.fields...)
	u := bson.D{
		{Key: "$set", Value: set},
		{Key: "$inc", Value: bson.D{{Key: "__v", Value: int64(1)}}},
	}
	var push bson.D
	if c.response != nil {
		push = append(push, bson.E{Key: "response", Value: c.response})
	}
	if len(c.logs) > 0 {
		push = append(push, bson.E{Key: "logs", Value: bson.D{{Key: "$each", Value: c.logs}}})
	}
	if len(c.events) > 0 {
		push = append(push, bson.E{Key: "outbox", Value: bson.D{{Key: "$each", Value: c.events}}})
	}
	if len(push) > 0 {
		u = append(u, bson.E{Key: "$push", Value: push})
	}
	if c.addMessageID != "" {
		u = append(u, bson.E{Key: "$addToSet", Value: bson.D{{Key: "messageIds", Value: c.addMessageID}}})
	}
	return u
}

// eventSeq is the order of the i-th event of the change that made the
// ticket's __v v. Writes to a ticket are serialized by __v (the lock, or the
// compare on a shared MongoDB), so the order is the same on every daemon.
func eventSeq(v int64, i int) int64 { return v*16 + int64(min(i, 15)) }

func logEntry(ticket bson.ObjectID, by Actor, at time.Time, what string) LogEntry {
	who := "system"
	if !by.ID.IsZero() {
		who = by.ID.Hex()
	}
	return LogEntry{ID: bson.NewObjectID(), TicketID: ticket, ActionTaken: what, ActionBy: who, ActionByType: by.Type, ActionAt: at}
}

// maxCASAttempts bounds the retries of a write that lost a race with another
// daemon on a shared MongoDB.
const maxCASAttempts = 8

// mutate is the one way a ticket changes: under the ticket's lock, read it,
// let apply describe the change, and write the change, its audit lines and
// its announcements in one atomic update that also increments __v. On a
// shared MongoDB the update compares __v, and a lost race is retried. The
// ticket it returns, like a listed one, carries neither Logs nor Outbox.
func (s *Store) mutate(ctx context.Context, id bson.ObjectID, scope Scope, expectV *int64,
	apply func(t *Ticket, now time.Time, c *change) error) (*Ticket, error) {
	unlock := s.locks.lock(id)
	defer unlock()
	for attempt := 0; attempt < maxCASAttempts; attempt++ {
		t := s.recent.get(id)
		if t == nil {
			var err error
			if t, err = s.load(ctx, id, withoutHistory); err != nil {
				return nil, err
			}
		}
		if !scope.allows(t) {
			return nil, ErrNotFound
		}
		if expectV != nil && *expectV != t.V {
			return nil, fmt.Errorf("ticket %s is at __v %d, not %d: %w", id.Hex(), t.V, *expectV, ErrConflict)
		}
		c := &change{ticketID: id, now: s.nowUTC(), v: t.V + 1}
		if err := apply(t, c.now, c); err != nil {
			return nil, err
		}
		if c.empty() {
			return t, nil
		}
		filter := bson.D{{Key: "_id", Value: id}}
		if !s.serial {
			filter = append(filter, bson.E{Key: "__v", Value: t.V})
		}
		// UpdateOne rather than findAndModify: the ticket need not travel
		// back, we know what the update makes of it.
		res, err := s.updateTicket(ctx, filter, c.update())
		if err != nil {
			s.resync(ctx, id) // the write may or may not have happened
			return nil, fmt.Errorf("update ticket %s: %w", id.Hex(), classify(err))
		}
		if res.MatchedCount == 0 {
			s.recent.drop(id)
			continue // another daemon changed it first: read again
		}
		c.applyTo(t)
		s.recent.put(t)
		if len(c.events) > 0 {
			s.signal(id)
		}
		return t, nil
	}
	return nil, fmt.Errorf("update ticket %s: %d concurrent writers won: %w", id.Hex(), maxCASAttempts, ErrConflict)
}

// serialWriteTimeout bounds how long a ticket's lock waits for the embedded
// server to answer a write whose caller has given up.
const serialWriteTimeout = time.Minute

// updateTicket sends one ticket update. On the embedded server the
// per-ticket lock is all that orders writes (there is no __v compare), and
// the server applies an update by reading and rewriting the whole
// document: a write whose caller's deadline passed is still running there,
// and releasing the lock before it ends lets the next write to the ticket
// race it, so that one of the two is silently lost (measured: under a burst
// of Slack replies, a reply acked right after a timed-out one vanished).
// So the embedded mode waits for the server's answer, whatever the caller's
// deadline.
func (s *Store) updateTicket(ctx context.Context, filter, update bson.D) (*mongo.UpdateResult, error) {
	if s.serial {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), serialWriteTimeout)
		defer cancel()
	}
	return s.tickets.UpdateOne(ctx, filter, update)
}

// resync forgets what this process remembers of a ticket after a write
// whose outcome is unknown. (The embedded listing index needs no repair:
// SQLite keeps it in the document's own transaction.)
func (s *Store) resync(_ context.Context, id bson.ObjectID) {
	s.recent.drop(id)
}

// nextSeq allocates the next number of a named sequence.
func (s *Store) nextSeq(ctx context.Context, name string) (int64, error) {
	s.counterMu.Lock()
	defer s.counterMu.Unlock()
	var doc struct {
		Seq int64 `bson:"seq"`
	}
	err := s.counters.FindOneAndUpdate(ctx,
		bson.D{{Key: "_id", Value: name}},
		bson.D{{Key: "$inc", Value: bson.D{{Key: "seq", Value: int64(1)}}}},
		options.FindOneAndUpdate().SetUpsert(true).SetReturnDocument(options.After),
	).Decode(&doc)
	if err != nil {
		return 0, fmt.Errorf("next %s number: %w", name, classify(err))
	}
	return doc.Seq, nil
}
