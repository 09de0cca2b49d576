package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// First-response targets: the store records a ticket's first agent answer
// (AddResponse), and, for the job that watches the targets, finds the
// tickets still waiting and records a reminder or a breach together with
// its announcement, once.

// openStatuses are the statuses of a ticket someone still has to work on.
var openStatuses = bson.A{StatusCreated, StatusOpen, StatusInProgress}

// setFirstResponse sets one time of the ticket's FirstResponse, in the
// update and on the loaded ticket.
func (c *change) setFirstResponse(field string, at time.Time, apply func(fr *FirstResponse, at *time.Time)) {
	c.set("firstResponse."+field, at, func(t *Ticket) {
		if t.FirstResponse == nil {
			t.FirstResponse = &FirstResponse{}
		}
		apply(t.FirstResponse, &at)
	})
}

// FirstResponseCandidates returns, oldest first and at most limit, the
// open tickets opened by a customer that have neither a recorded first
// agent response nor a recorded breach: those whose first-response target
// is still to watch. Tickets answered before respondedAt was recorded
// (older data) are among them until MarkFirstResponded records it. Listed
// tickets carry neither their audit log nor their outbox.
//
// On MongoDB the first_response_pending index answers it, on the embedded
// server the listing index's index of open tickets.
func (s *Store) FirstResponseCandidates(ctx context.Context, limit int) ([]Ticket, error) {
	if limit <= 0 {
		limit = DefaultLimit
	}
	if s.index != nil {
		ts, err := s.index.openTickets(ctx, "creator_type = 'customer' AND responded = 0 AND breached = 0", limit)
		if err != nil {
			return nil, fmt.Errorf("find tickets awaiting a first response: %w", err)
		}
		return ts, nil
	}
	filter := bson.D{
		{Key: "firstResponse.respondedAt", Value: nil},
		{Key: "firstResponse.breachedAt", Value: nil},
		{Key: "status", Value: bson.D{{Key: "$in", Value: openStatuses}}},
		{Key: "isDelete", Value: false},
		{Key: "creatorType", Value: CreatorCustomer},
	}
	return s.findTickets(ctx, "find tickets awaiting a first response", filter, limit)
}

// OpenTickets returns, oldest first, at most limit open tickets (created,
// open or in progress), and whether there are more. Listed tickets carry
// neither their audit log nor their outbox.
func (s *Store) OpenTickets(ctx context.Context, limit int) (tickets []Ticket, more bool, err error) {
	if limit <= 0 {
		limit = DefaultLimit
	}
	filter := bson.D{
		{Key: "status", Value: bson.D{{Key: "$in", Value: openStatuses}}},
		{Key: "isDelete", Value: false},
	}
	var out []Ticket
	if s.index != nil {
		out, err = s.index.openTickets(ctx, "1", limit+1)
		if err != nil {
			err = fmt.Errorf("find open tickets: %w", err)
		}
	} else {
		out, err = s.findTickets(ctx, "find open tickets", filter, limit+1)
	}
	if err != nil {
		return nil, false, err
	}
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}

func (s *Store) findTickets(ctx context.Context, what string, filter bson.D, limit int) ([]Ticket, error) {
	cur, err := s.tickets.Find(ctx, filter, options.Find().
		SetSort(bson.D{{Key: "createdAt", Value: 1}, {Key: "_id", Value: 1}}).
		SetLimit(int64(limit)).
		SetProjection(withoutHistory))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, classify(err))
	}
	out := []Ticket{}
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("%s: %w", what, classify(err))
	}
	return out, nil
}

// MarkFirstResponded records when a ticket was first answered by an agent,
// for a ticket answered before AddResponse recorded it. Like thread
// bookkeeping it is not a change of the ticket: __v, updatedAt and the
// audit log stay as they are. Recording it again is a no-op.
func (s *Store) MarkFirstResponded(ctx context.Context, id bson.ObjectID, at time.Time) error {
	unlock := s.locks.lock(id) // the embedded server's updates are read-modify-write
	defer unlock()
	s.recent.drop(id)
	_, err := s.tickets.UpdateOne(ctx,
		bson.D{{Key: "_id", Value: id}, {Key: "firstResponse.respondedAt", Value: nil}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "firstResponse.respondedAt", Value: at.UTC().Truncate(time.Millisecond)}}}})
	if err != nil {
		return fmt.Errorf("record the first response of ticket %s: %w", id.Hex(), classify(err))
	}
	return nil
}

// RecordFirstResponseReminder records that a ticket nears its
// first-response target (due) and queues EventSLAReminder, in one write,
// unless it was reminded already, has been answered by an agent, is
// finished or deleted. recorded says whether it was written: a reminder is
// queued once per ticket, whichever daemon or run asks. A deleted ticket
// records nothing and is no error.
func (s *Store) RecordFirstResponseReminder(ctx context.Context, id bson.ObjectID, due time.Time) (recorded bool, err error) {
	return s.recordFirstResponse(ctx, id, due, EventSLAReminder)
}

// RecordFirstResponseBreach records that a ticket missed its first-response
// target (due) and queues EventSLABreached, in one write, under the same
// conditions as RecordFirstResponseReminder (a breach is recorded once).
func (s *Store) RecordFirstResponseBreach(ctx context.Context, id bson.ObjectID, due time.Time) (recorded bool, err error) {
	return s.recordFirstResponse(ctx, id, due, EventSLABreached)
}

func (s *Store) recordFirstResponse(ctx context.Context, id bson.ObjectID, due time.Time, kind EventKind) (recorded bool, err error) {
	due = due.UTC().Truncate(time.Millisecond)
	_, err = s.mutate(ctx, id, AllTickets, nil, func(t *Ticket, now time.Time, c *change) error {
		fr := t.FirstResponse
		if fr == nil {
			fr = &FirstResponse{}
		}
		// Read again on each attempt: a lost race with an agent's answer
		// or another daemon's record makes this a no-op.
		recorded = false
		switch {
		case t.Status.Finished() || t.FirstAgentResponse() != nil || fr.RespondedAt != nil || fr.BreachedAt != nil:
			return nil
		case kind == EventSLAReminder && fr.RemindedAt != nil:
			return nil
		}
		c.setFirstResponse("dueAt", due, func(fr *FirstResponse, at *time.Time) { fr.DueAt = at })
		what := "First-response reminder sent: due " + due.Format(time.RFC3339)
		if kind == EventSLABreached {
			c.setFirstResponse("breachedAt", now, func(fr *FirstResponse, at *time.Time) { fr.BreachedAt = at })
			what = "First-response target missed: due " + due.Format(time.RFC3339)
		} else {
			c.setFirstResponse("remindedAt", now, func(fr *FirstResponse, at *time.Time) { fr.RemindedAt = at })
		}
		c.log(SystemActor, what)
		c.announce(Event{Kind: kind, ActorType: CreatorSystem})
		recorded = true
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return false, nil // deleted meanwhile: nothing to say
	}
	if err != nil {
		return false, fmt.Errorf("record %s: %w", kind, err)
	}
	return recorded, nil
}
