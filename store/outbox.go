package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Announcing a change takes two steps, because the portable subset has no
// multi-document transactions:
//
//  1. The change and its Event go into the ticket document in one write
//     (Ticket.Outbox), so a change is never stored without its event.
//  2. The relay copies each event into the outbox collection, one Delivery
//     per sink ("email", "slack"), keyed eventID/sink so a repeated relay
//     never duplicates, and only then pulls the event from the ticket.
//
// Notifiers claim deliveries, send, and complete or fail them. A crash at
// any point repeats a step; nothing is lost and nothing is queued twice.

// DeliveryState is where a delivery stands.
type DeliveryState string

// The delivery states. A delivered entry is deleted.
const (
	DeliveryPending DeliveryState = "pending"
	DeliveryDead    DeliveryState = "dead"
)

// Delivery is one event to hand to one sink.
type Delivery struct {
	ID            string        `bson:"_id"` // eventID/sink: the idempotency key
	Sink          string        `bson:"sink"`
	Event         Event         `bson:"event"`
	State         DeliveryState `bson:"state"`
	Attempts      int           `bson:"attempts"`
	NextAttemptAt time.Time     `bson:"nextAttemptAt"`
	LastError     string        `bson:"lastError,omitempty"`
	CreatedAt     time.Time     `bson:"createdAt"`
}

// signal tells the relay that a ticket has events, without blocking; a full
// channel is fine, the sweep catches up.
func (s *Store) signal(id bson.ObjectID) {
	select {
	case s.pending <- id:
	default:
	}
}

// RelayTicket moves a ticket's pending events into the outbox collection,
// one delivery per sink, and returns how many events it moved. With no
// sinks the events are dropped: nobody is there to announce them to.
func (s *Store) RelayTicket(ctx context.Context, id bson.ObjectID, sinks []string) (int, error) {
	unlock := s.locks.lock(id)
	defer unlock()
	var doc struct {
		Outbox []bson.Raw `bson:"outbox"`
	}
	err := s.tickets.FindOne(ctx, bson.D{{Key: "_id", Value: id}},
		options.FindOne().SetProjection(bson.D{{Key: "outbox", Value: 1}})).Decode(&doc)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("relay ticket %s: %w", id.Hex(), classify(err))
	}
	if len(doc.Outbox) == 0 {
		return 0, nil
	}
	now := s.nowUTC()
	for _, raw := range doc.Outbox {
		var e Event
		if err := bson.Unmarshal(raw, &e); err != nil {
			return 0, fmt.Errorf("relay ticket %s: decode event: %w", id.Hex(), err)
		}
		for _, sink := range sinks {
			d := Delivery{ID: e.ID.Hex() + "/" + sink, Sink: sink, Event: e, State: DeliveryPending, NextAttemptAt: now, CreatedAt: now}
			// A delivery completed since an earlier relay of this event
			// (whose pull did not happen) must not be queued again.
			if _, err := s.lookupKey(ctx, deliveredKey(d.ID)); err == nil {
				continue
			} else if !errors.Is(err, ErrNotFound) {
				return 0, fmt.Errorf("relay event %s: %w", d.ID, err)
			}
			if _, err := s.outbox.InsertOne(ctx, d); err != nil && !mongo.IsDuplicateKeyError(err) {
				return 0, fmt.Errorf("relay event %s: %w", d.ID, classify(err))
			}
		}
	}
	// $pullAll removes exactly these elements, as read; an event pushed
	// meanwhile by another daemon stays for the next relay. It runs even
	// when the caller is stopping: the deliveries are queued already.
	pull := make(bson.A, len(doc.Outbox))
	for i, r := range doc.Outbox {
		pull[i] = r
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_, err = s.tickets.UpdateOne(pctx, bson.D{{Key: "_id", Value: id}},
		bson.D{{Key: "$pullAll", Value: bson.D{{Key: "outbox", Value: pull}}}})
	if err != nil {
		return 0, fmt.Errorf("relay ticket %s: clear events: %w", id.Hex(), classify(err))
	}
	for _, sink := range sinks {
		s.wake(sink)
	}
	return len(doc.Outbox), nil
}

// DeliveriesReady returns a channel that receives when the relay has queued
// deliveries for sink, so a notifier can wait on it instead of polling.
// Retries that come due later still need the notifier's own timer.
func (s *Store) DeliveriesReady(sink string) <-chan struct{} {
	return s.readyChan(sink)
}

func (s *Store) readyChan(sink string) chan struct{} {
	s.readyMu.Lock()
	defer s.readyMu.Unlock()
	if s.ready == nil {
		s.ready = map[string]chan struct{}{}
	}
	ch, ok := s.ready[sink]
	if !ok {
		ch = make(chan struct{}, 1)
		s.ready[sink] = ch
	}
	return ch
}

func (s *Store) wake(sink string) {
	select {
	case s.readyChan(sink) <- struct{}{}:
	default:
	}
}

// RelayAll relays every ticket that has pending events: the sweep after a
// crash or a full signal channel.
func (s *Store) RelayAll(ctx context.Context, sinks []string) (int, error) {
	cur, err := s.tickets.Find(ctx, bson.D{{Key: "outbox.0", Value: bson.D{{Key: "$exists", Value: true}}}},
		options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return 0, fmt.Errorf("find tickets with events: %w", classify(err))
	}
	var ids []struct {
		ID bson.ObjectID `bson:"_id"`
	}
	if err := cur.All(ctx, &ids); err != nil {
		return 0, fmt.Errorf("find tickets with events: %w", classify(err))
	}
	total := 0
	for _, t := range ids {
		n, err := s.RelayTicket(ctx, t.ID, sinks)
		if err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}

// RunRelay relays events as writes signal them, and sweeps all tickets at
// start and every sweepEvery, until ctx ends. Errors are logged and retried
// by the next sweep.
func (s *Store) RunRelay(ctx context.Context, sinks []string, sweepEvery time.Duration) error {
	log := s.log.With("component", "outbox-relay")
	sweep := func() {
		if n, err := s.RelayAll(ctx, sinks); err != nil && ctx.Err() == nil {
			log.Error("sweep failed; will retry", "err", err)
		} else if n > 0 {
			log.Info("sweep relayed events", "events", n)
		}
	}
	sweep()
	tick := time.NewTicker(sweepEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			sweep()
		case id := <-s.pending:
			if _, err := s.RelayTicket(ctx, id, sinks); err != nil && ctx.Err() == nil {
				log.Error("relay failed; the sweep will retry", "ticket", id.Hex(), "err", err)
			}
		}
	}
}

// ClaimDelivery takes the oldest due delivery for sink and leases it: its
// next attempt moves lease into the future, so a crashed sender's claim
// expires and another sender retries it. ErrNotFound when none is due.
func (s *Store) ClaimDelivery(ctx context.Context, sink string, lease time.Duration) (*Delivery, error) {
	s.claimMu.Lock()
	defer s.claimMu.Unlock()
	now := s.nowUTC()
	var d Delivery
	err := s.outbox.FindOneAndUpdate(ctx,
		bson.D{
			{Key: "sink", Value: sink},
			{Key: "state", Value: DeliveryPending},
			{Key: "nextAttemptAt", Value: bson.D{{Key: "$lte", Value: now}}},
		},
		bson.D{
			{Key: "$set", Value: bson.D{{Key: "nextAttemptAt", Value: now.Add(lease)}}},
			{Key: "$inc", Value: bson.D{{Key: "attempts", Value: 1}}},
		},
		options.FindOneAndUpdate().
			SetSort(bson.D{{Key: "nextAttemptAt", Value: 1}}).
			SetReturnDocument(options.After),
	).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("claim %s delivery: %w", sink, classify(err))
	}
	return &d, nil
}

// deliveredKey marks a completed delivery (in the keys collection, looked
// up by _id), so that relaying its event again cannot queue it again.
func deliveredKey(deliveryID string) string { return "delivered:" + deliveryID }

// CompleteDelivery records a delivery as done and removes it from the
// queue.
func (s *Store) CompleteDelivery(ctx context.Context, id string) error {
	if _, err := s.bindKey(ctx, deliveredKey(id), bson.NilObjectID); err != nil {
		return fmt.Errorf("complete delivery %s: %w", id, err)
	}
	if _, err := s.outbox.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}}); err != nil {
		return fmt.Errorf("complete delivery %s: %w", id, classify(err))
	}
	return nil
}

// RetryDelivery records a failed attempt and when to try again.
func (s *Store) RetryDelivery(ctx context.Context, id string, cause error, at time.Time) error {
	return s.setDelivery(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{
		{Key: "nextAttemptAt", Value: at.UTC().Truncate(time.Millisecond)},
		{Key: "lastError", Value: cause.Error()},
	})
}

// KillDelivery moves an entry to the dead-letter state: no more attempts
// until an operator requeues it.
func (s *Store) KillDelivery(ctx context.Context, id string, cause error) error {
	return s.setDelivery(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{
		{Key: "state", Value: DeliveryDead},
		{Key: "lastError", Value: cause.Error()},
	})
}

// RequeueDelivery gives a dead entry a fresh set of attempts, now;
// ErrNotFound when there is no dead entry with that id (a pending one may be
// in flight and is left alone).
func (s *Store) RequeueDelivery(ctx context.Context, id string) error {
	return s.setDelivery(ctx, bson.D{{Key: "_id", Value: id}, {Key: "state", Value: DeliveryDead}}, bson.D{
		{Key: "state", Value: DeliveryPending},
		{Key: "attempts", Value: 0},
		{Key: "nextAttemptAt", Value: s.nowUTC()},
	})
}

func (s *Store) setDelivery(ctx context.Context, filter, set bson.D) error {
	res, err := s.outbox.UpdateOne(ctx, filter, bson.D{{Key: "$set", Value: set}})
	if err != nil {
		return fmt.Errorf("update delivery %v: %w", filter[0].Value, classify(err))
	}
	if res.MatchedCount == 0 {
		return ErrNotFound
	}
	return nil
}

// Deliveries lists the queue's entries in a state, oldest first.
func (s *Store) Deliveries(ctx context.Context, state DeliveryState, limit int) ([]Delivery, error) {
	if limit <= 0 {
		limit = DefaultLimit
	}
	cur, err := s.outbox.Find(ctx, bson.D{{Key: "state", Value: state}},
		options.Find().SetSort(bson.D{{Key: "createdAt", Value: 1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, fmt.Errorf("list %s deliveries: %w", state, classify(err))
	}
	out := []Delivery{}
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("list %s deliveries: %w", state, classify(err))
	}
	return out, nil
}

// CountDeliveries counts the queue's entries in a state, for metrics.
func (s *Store) CountDeliveries(ctx context.Context, state DeliveryState) (int64, error) {
	n, err := s.outbox.CountDocuments(ctx, bson.D{{Key: "state", Value: state}})
	if err != nil {
		return 0, fmt.Errorf("count %s deliveries: %w", state, classify(err))
	}
	return n, nil
}
