package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Auto-close: a resolved ticket whose customer has not written for a while
// is closed by the daemon. A customer writing to a resolved ticket reopens
// it (AddResponse), so a resolved ticket's last customer message is at the
// latest when it was resolved, and resolved tickets are few: the ones
// resolved within the auto-close age, plus those kept open by agents'
// notes.

// lastCustomerMessage is when the customer last wrote on t: its newest
// customer response, or its creation when a customer opened it; zero when
// the customer never wrote.
func (t *Ticket) lastCustomerMessage() time.Time {
	var last time.Time
	if t.CreatorType == CreatorCustomer {
		last = t.CreatedAt
	}
	for _, r := range t.Response {
		if r.CreatorType == CreatorCustomer && r.CreatedAt.After(last) {
			last = r.CreatedAt
		}
	}
	return last
}

// IdleResolvedTickets returns the resolved tickets whose customer wrote
// nothing since before among the limit least recently updated resolved
// tickets, oldest first: the candidates for auto-close. On MongoDB an
// index on status and updatedAt finds them. The embedded server would
// decode every ticket for that query (over 30 s at 20,000 tickets on a
// busy machine), so there the listing answers it, from the store's
// catalog.
func (s *Store) IdleResolvedTickets(ctx context.Context, before time.Time, limit int) ([]bson.ObjectID, error) {
	if limit <= 0 {
		limit = DefaultLimit
	}
	if s.serial {
		return s.idleResolvedFromListing(ctx, before, limit)
	}
	// Over-fetch: tickets updated recently by an agent only may still be
	// idle for the customer, and are checked one by one.
	cur, err := s.tickets.Find(ctx,
		bson.D{{Key: "status", Value: StatusResolved}, {Key: "isDelete", Value: false}},
		options.Find().
			SetSort(bson.D{{Key: "updatedAt", Value: 1}}).
			SetLimit(int64(limit)).
			SetProjection(bson.D{{Key: "creatorType", Value: 1}, {Key: "createdAt", Value: 1}, {Key: "response.creatorType", Value: 1}, {Key: "response.createdAt", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("find idle resolved tickets: %w", classify(err))
	}
	var found []Ticket
	if err := cur.All(ctx, &found); err != nil {
		return nil, fmt.Errorf("find idle resolved tickets: %w", classify(err))
	}
	ids := []bson.ObjectID{}
	for _, t := range found {
		if t.lastCustomerMessage().Before(before) {
			ids = append(ids, t.ID)
		}
	}
	return ids, nil
}

// CloseIdleTicket closes a resolved ticket whose customer wrote nothing
// since before, as the daemon (actionByType system), logged with why and
// announced (status.changed) so that the customer is told. closed=false
// when the ticket no longer qualifies (reopened, closed, a new customer
// message): checked in the same write, so a reply racing the job wins.
func (s *Store) CloseIdleTicket(ctx context.Context, id bson.ObjectID, before time.Time, why string) (closed bool, err error) {
	_, err = s.mutate(ctx, id, AllTickets, nil, func(t *Ticket, now time.Time, c *change) error {
		if t.Status != StatusResolved || t.IsDelete || !t.lastCustomerMessage().Before(before) {
			return nil
		}
		c.setStatus(t, StatusClosed, SystemActor, why)
		closed = true
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("auto-close ticket %s: %w", id.Hex(), err)
	}
	return closed, nil
}

// idleResolvedFromListing is IdleResolvedTickets through ListTickets,
// which lists newest-updated first: the last page holds the oldest.
func (s *Store) idleResolvedFromListing(ctx context.Context, before time.Time, limit int) ([]bson.ObjectID, error) {
	q := ListQuery{Status: StatusResolved, Limit: 1}
	_, total, err := s.ListTickets(ctx, AllTickets, q)
	if err != nil {
		return nil, fmt.Errorf("find idle resolved tickets: %w", err)
	}
	q.Limit, q.Offset = limit, max(0, int(total)-limit)
	page, _, err := s.ListTickets(ctx, AllTickets, q)
	if err != nil {
		return nil, fmt.Errorf("find idle resolved tickets: %w", err)
	}
	ids := []bson.ObjectID{}
	for i := len(page) - 1; i >= 0; i-- {
		if t := &page[i]; t.Status == StatusResolved && t.lastCustomerMessage().Before(before) {
			ids = append(ids, t.ID)
		}
	}
	return ids, nil
}
