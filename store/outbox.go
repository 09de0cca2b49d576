package store

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
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
//     per sink of the deployment (see JoinDeployment), keyed eventID/sink
//     so a repeated relay never duplicates, and only then pulls the event
//     from the ticket.
//
// Notifiers claim deliveries, send, and complete or fail them. A crash at
// any point repeats a step; nothing is lost and nothing is queued twice.
//
// Order and fairness: a ticket's deliveries to one sink go out one at a
// time, in event order (Event.Seq). Only the earliest is pending (claimable);
// the later ones wait (DeliveryWaiting) until it is completed or dead, and
// the next one is then made pending with nextAttemptAt = now, behind every
// other ticket's delivery already due: a noisy ticket takes turns with the
// others instead of draining first. A delivery that is backing off holds
// its ticket's later ones back; a dead one does not. Within one process the
// ticket lock makes this exact; two daemons on a shared MongoDB relaying and
// completing the same ticket at the same instant can, rarely, leave two
// pending (a reordering, never a loss) or none (repaired by the sweep).

// DeliveryState is where a delivery stands.
type DeliveryState string

// The delivery states. A delivered entry is deleted.
const (
	DeliveryPending DeliveryState = "pending"
	// DeliveryWaiting: behind an earlier delivery of the same ticket and
	// sink; made pending when that one is completed or dead.
	DeliveryWaiting DeliveryState = "waiting"
	DeliveryDead    DeliveryState = "dead"
)

// Delivery is one event to hand to one sink.
type Delivery struct {
	ID            string        `bson:"_id"` // eventID/sink: the idempotency key
	Sink          string        `bson:"sink"`
	Event         Event         `bson:"event"`
	TicketID      bson.ObjectID `bson:"ticketId"`
	Seq           int64         `bson:"seq"` // Event.Seq: the order within the ticket
	State         DeliveryState `bson:"state"`
	Attempts      int           `bson:"attempts"`
	NextAttemptAt time.Time     `bson:"nextAttemptAt"`
	LastError     string        `bson:"lastError,omitempty"`
	CreatedAt     time.Time     `bson:"createdAt"`
	// DeadAt is when it became a dead letter, for retention.
	DeadAt time.Time `bson:"deadAt,omitempty"`
	// Claim is the fencing token of the latest claim (ClaimDelivery): a
	// sender whose lease ran out and whose delivery was claimed again
	// cannot complete, retry or kill it any more (ErrClaimLost).
	Claim string `bson:"claim,omitempty"`
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
// one delivery per deployment sink, and returns how many events it moved.
// Before JoinDeployment it moves nothing and fails with ErrNotJoined. With
// a deployment of no sinks the events are dropped: nobody is there to
// announce them to.
func (s *Store) RelayTicket(ctx context.Context, id bson.ObjectID) (int, error) {
	sinks, ok := s.Sinks()
	if !ok {
		return 0, fmt.Errorf("relay ticket %s: %w", id.Hex(), ErrNotJoined)
	}
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
	events := make([]Event, len(doc.Outbox))
	for i, raw := range doc.Outbox {
		if err := bson.Unmarshal(raw, &events[i]); err != nil {
			return 0, fmt.Errorf("relay ticket %s: decode event: %w", id.Hex(), err)
		}
	}
	slices.SortStableFunc(events, func(a, b Event) int { return cmp.Compare(a.Seq, b.Seq) })
	now := s.nowUTC()
	for _, sink := range sinks {
		// Only the ticket's earliest delivery to the sink is pending; any
		// delivery already queued for it (even this event's own, from a
		// relay whose pull failed) puts these behind it.
		ahead, err := s.queuedFor(ctx, id, sink, DeliveryPending, DeliveryWaiting)
		if err != nil {
			return 0, fmt.Errorf("relay ticket %s: %w", id.Hex(), err)
		}
		for _, e := range events {
			d := Delivery{ID: e.ID.Hex() + "/" + sink, Sink: sink, Event: e, TicketID: e.TicketID, Seq: e.Seq,
				State: DeliveryPending, NextAttemptAt: now, CreatedAt: now}
			// A delivery completed since an earlier relay of this event
			// (whose pull did not happen) must not be queued again.
			if _, err := s.lookupKey(ctx, deliveredKey(d.ID)); err == nil {
				continue
			} else if !errors.Is(err, ErrNotFound) {
				return 0, fmt.Errorf("relay event %s: %w", d.ID, err)
			}
			if ahead {
				d.State = DeliveryWaiting
			}
			if _, err := s.outbox.InsertOne(ctx, d); err != nil && !mongo.IsDuplicateKeyError(err) {
				return 0, fmt.Errorf("relay event %s: %w", d.ID, classify(err))
			}
			ahead = true
		}
		// On a shared MongoDB the delivery ahead may have been completed by
		// another daemon between the count and the inserts. In this
		// process, a completion promotes under the ticket lock we hold, so
		// after these inserts.
		if !s.serial && ahead {
			if err := s.ensureHead(ctx, id, sink); err != nil {
				return 0, fmt.Errorf("relay ticket %s: %w", id.Hex(), err)
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

// ensureHead makes the earliest waiting delivery of a ticket for a sink
// pending, unless one is pending already. The caller holds the ticket's
// lock. It is due now: behind the deliveries already due, which is what
// makes tickets take turns.
func (s *Store) ensureHead(ctx context.Context, ticket bson.ObjectID, sink string) error {
	if s.ownQueue() {
		return s.ensureOwnHead(ctx, ticket, sink)
	}
	pending, err := s.queuedFor(ctx, ticket, sink, DeliveryPending)
	if err != nil || pending {
		return err
	}
	err = s.outbox.FindOneAndUpdate(ctx,
		bson.D{{Key: "sink", Value: sink}, {Key: "ticketId", Value: ticket}, {Key: "state", Value: DeliveryWaiting}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "state", Value: DeliveryPending}, {Key: "nextAttemptAt", Value: s.nowUTC()}}}},
		options.FindOneAndUpdate().SetSort(bson.D{{Key: "seq", Value: 1}, {Key: "_id", Value: 1}}),
	).Err()
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return fmt.Errorf("promote the next delivery of %s/%s: %w", ticket.Hex(), sink, classify(err))
	}
	if err == nil {
		s.wake(sink)
	}
	return nil
}

// ensureOwnHead is ensureHead on the process's own embedded server
// (queueindex.go).
func (s *Store) ensureOwnHead(ctx context.Context, ticket bson.ObjectID, sink string) error {
	s.claimMu.Lock()
	defer s.claimMu.Unlock()
	if pending, err := s.index.queuedFor(ctx, ticket, sink, DeliveryPending); err != nil || pending {
		return err
	}
	id, err := s.index.firstWaiting(ctx, ticket, sink)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	res, err := s.outbox.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "state", Value: DeliveryPending}, {Key: "nextAttemptAt", Value: s.nowUTC()}}}})
	if err != nil {
		return fmt.Errorf("promote the next delivery of %s/%s: %w", ticket.Hex(), sink, classify(err))
	}
	if res.MatchedCount > 0 {
		s.wake(sink)
	}
	return nil
}

// queuedFor reports whether ticket has a delivery to sink in one of states.
func (s *Store) queuedFor(ctx context.Context, ticket bson.ObjectID, sink string, states ...DeliveryState) (bool, error) {
	if s.ownQueue() {
		return s.index.queuedFor(ctx, ticket, sink, states...)
	}
	in := bson.A{}
	for _, st := range states {
		in = append(in, st)
	}
	n, err := s.outbox.CountDocuments(ctx, bson.D{
		{Key: "sink", Value: sink}, {Key: "ticketId", Value: ticket}, {Key: "state", Value: bson.D{{Key: "$in", Value: in}}},
	}, options.Count().SetLimit(1))
	if err != nil {
		return false, fmt.Errorf("find the deliveries of %s/%s: %w", ticket.Hex(), sink, classify(err))
	}
	return n > 0, nil
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

// RelayAll relays every ticket that has pending events, and gives every
// ticket whose deliveries all wait its next one: the sweep after a crash or
// a full signal channel. Before JoinDeployment it fails with ErrNotJoined.
func (s *Store) RelayAll(ctx context.Context) (int, error) {
	if _, ok := s.Sinks(); !ok {
		return 0, fmt.Errorf("relay: %w", ErrNotJoined)
	}
	ids, err := s.ticketsWithEvents(ctx)
	if err != nil {
		return 0, err
	}
	total := 0
	for _, id := range ids {
		n, err := s.RelayTicket(ctx, id)
		if err != nil {
			return total, err
		}
		total += n
	}
	return total, s.repairHeads(ctx)
}

// ticketsWithEvents finds the tickets holding events not yet relayed from
// an index, never by reading every ticket: the partial index
// "pending_events" on MongoDB, the listing index on the embedded server.
func (s *Store) ticketsWithEvents(ctx context.Context) ([]bson.ObjectID, error) {
	if s.index != nil {
		return s.index.withEvents(ctx)
	}
	cur, err := s.tickets.Find(ctx, bson.D{{Key: "outbox._id", Value: bson.D{{Key: "$exists", Value: true}}}},
		options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("find tickets with events: %w", classify(err))
	}
	var docs []struct {
		ID bson.ObjectID `bson:"_id"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("find tickets with events: %w", classify(err))
	}
	ids := make([]bson.ObjectID, len(docs))
	for i, d := range docs {
		ids[i] = d.ID
	}
	return ids, nil
}

// repairHeads gives each ticket and sink with waiting deliveries but none
// pending its next one (a race between daemons left it so).
func (s *Store) repairHeads(ctx context.Context) error {
	cur, err := s.outbox.Find(ctx, bson.D{{Key: "state", Value: DeliveryWaiting}},
		options.Find().SetProjection(bson.D{{Key: "sink", Value: 1}, {Key: "ticketId", Value: 1}}))
	if err != nil {
		return fmt.Errorf("find waiting deliveries: %w", classify(err))
	}
	var waiting []struct {
		Sink     string        `bson:"sink"`
		TicketID bson.ObjectID `bson:"ticketId"`
	}
	if err := cur.All(ctx, &waiting); err != nil {
		return fmt.Errorf("find waiting deliveries: %w", classify(err))
	}
	seen := map[string]bool{}
	for _, w := range waiting {
		if k := w.Sink + "/" + w.TicketID.Hex(); !seen[k] {
			seen[k] = true
			unlock := s.locks.lock(w.TicketID)
			err := s.ensureHead(ctx, w.TicketID, w.Sink)
			unlock()
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// RunRelay relays events as writes signal them, and sweeps all tickets at
// start and every sweepEvery (never again when sweepEvery <= 0: a
// scheduled job sweeps, once across daemons), until ctx ends; it also
// keeps this daemon's heartbeat (DaemonHeartbeat). Errors are logged and
// retried by the next sweep. It fails at once with ErrNotJoined before
// JoinDeployment.
func (s *Store) RunRelay(ctx context.Context, sweepEvery time.Duration) error {
	if _, ok := s.Sinks(); !ok {
		return fmt.Errorf("relay: %w", ErrNotJoined)
	}
	log := s.log.With("component", "outbox-relay")
	sweep := func() {
		if n, err := s.RelayAll(ctx); err != nil && ctx.Err() == nil {
			log.Error("sweep failed; will retry", "err", err)
		} else if n > 0 {
			log.Info("sweep relayed events", "events", n)
		}
	}
	sweep()
	var sweeps <-chan time.Time
	if sweepEvery > 0 {
		tick := time.NewTicker(sweepEvery)
		defer tick.Stop()
		sweeps = tick.C
	}
	beat := time.NewTicker(DaemonHeartbeat)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sweeps:
			sweep()
		case <-beat.C:
			if err := s.Heartbeat(ctx); err != nil && ctx.Err() == nil {
				log.Error("heartbeat failed; will retry", "err", err)
			}
		case id := <-s.pending:
			if _, err := s.RelayTicket(ctx, id); err != nil && ctx.Err() == nil {
				log.Error("relay failed; the sweep will retry", "ticket", id.Hex(), "err", err)
			}
		}
	}
}

// ClaimDelivery takes the oldest due delivery for sink and leases it: its
// next attempt moves lease into the future, so a crashed sender's claim
// expires and another sender retries it. Each claim gets a new
// Delivery.Claim, which completing, retrying or killing it checks.
// ErrNotFound when none is due.
func (s *Store) ClaimDelivery(ctx context.Context, sink string, lease time.Duration) (*Delivery, error) {
	if !s.serial {
		return s.claimShared(ctx, sink, lease) // claimshared.go
	}
	for range maxClaimRaces {
		d, err := s.claimSerial(ctx, sink, lease)
		if err != nil {
			return nil, err
		}
		// A relay whose earlier pull of events failed may queue an event
		// again while its delivery is being completed (claimshared.go).
		if again, err := s.dropDelivered(ctx, d); err != nil {
			return nil, fmt.Errorf("claim %s delivery %s: %w", sink, d.ID, err)
		} else if !again {
			return d, nil
		}
	}
	return nil, ErrNotFound
}

// claimSerial is one claim of this process's own database.
func (s *Store) claimSerial(ctx context.Context, sink string, lease time.Duration) (*Delivery, error) {
	s.claimMu.Lock()
	defer s.claimMu.Unlock()
	now := s.nowUTC()
	filter := bson.D{
		{Key: "sink", Value: sink},
		{Key: "state", Value: DeliveryPending},
		{Key: "nextAttemptAt", Value: bson.D{{Key: "$lte", Value: now}}},
	}
	opts := options.FindOneAndUpdate().SetSort(bson.D{{Key: "nextAttemptAt", Value: 1}}).SetReturnDocument(options.After)
	if s.ownQueue() {
		id, err := s.index.dueDelivery(ctx, sink, now)
		if err != nil {
			return nil, err
		}
		// Due and pending, as read under claimMu; a filter of _id alone is
		// the only one the embedded server looks up rather than scans.
		filter = bson.D{{Key: "_id", Value: id}}
		opts = options.FindOneAndUpdate().SetReturnDocument(options.After)
	}
	var d Delivery
	err := s.outbox.FindOneAndUpdate(ctx, filter,
		bson.D{
			{Key: "$set", Value: bson.D{{Key: "nextAttemptAt", Value: now.Add(lease)}, {Key: "claim", Value: bson.NewObjectID().Hex()}}},
			{Key: "$inc", Value: bson.D{{Key: "attempts", Value: 1}}},
		},
		opts,
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

// claimFilter selects the delivery d as long as d's claim is the latest.
// A delivery claimed before claims had tokens has none.
func claimFilter(d *Delivery) bson.D {
	if d.Claim == "" {
		return bson.D{{Key: "_id", Value: d.ID}, {Key: "claim", Value: bson.D{{Key: "$exists", Value: false}}}}
	}
	return bson.D{{Key: "_id", Value: d.ID}, {Key: "claim", Value: d.Claim}}
}

// claimLost explains why a write filtered by claimFilter matched nothing:
// ErrClaimLost when the delivery is there under a newer claim, ErrNotFound
// when it is gone.
func (s *Store) claimLost(ctx context.Context, d *Delivery) error {
	cur, err := findByID[Delivery](ctx, s.outbox, d.ID)
	if err != nil {
		return err
	}
	return fmt.Errorf("delivery %s: %w: claimed again (attempt %d) after this claim's lease ran out", d.ID, ErrClaimLost, cur.Attempts)
}

// CompleteDelivery records a claimed delivery as done, removes it from the
// queue and makes its ticket's next delivery to the sink pending. It fails
// with ErrClaimLost, changing nothing, when d was claimed again since (its
// lease ran out); completing one that is gone already is a no-op.
func (s *Store) CompleteDelivery(ctx context.Context, d *Delivery) error {
	cur, err := findByID[Delivery](ctx, s.outbox, d.ID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("complete delivery %s: %w", d.ID, err)
	}
	if cur.Claim != d.Claim {
		return fmt.Errorf("complete delivery %s: %w: claimed again (attempt %d) after this claim's lease ran out", d.ID, ErrClaimLost, cur.Attempts)
	}
	if err := s.bindDelivered(ctx, d.ID); err != nil {
		return fmt.Errorf("complete delivery %s: %w", d.ID, err)
	}
	done, err := s.deleteClaimed(ctx, d)
	if err != nil {
		return fmt.Errorf("complete delivery %s: %w", d.ID, err)
	}
	if done == nil {
		// Claimed again between the check and the delete: the new
		// claimant owns it now (the message went out; the key only stops
		// a relay from queueing it again).
		if lerr := s.claimLost(ctx, d); !errors.Is(lerr, ErrNotFound) {
			return fmt.Errorf("complete delivery %s: %w", d.ID, lerr)
		}
		return nil
	}
	return s.next(ctx, done)
}

// deleteClaimed removes d if d's claim is still the latest and returns it
// as it was; nil when nothing matched.
func (s *Store) deleteClaimed(ctx context.Context, d *Delivery) (*Delivery, error) {
	if !s.ownQueue() {
		return decodeClaimed(s.outbox.FindOneAndDelete(ctx, claimFilter(d)))
	}
	return s.writeOwnClaimed(ctx, d, func() error {
		_, err := s.outbox.DeleteOne(ctx, bson.D{{Key: "_id", Value: d.ID}})
		return err
	})
}

// updateClaimed sets fields of d if d's claim is still the latest and
// returns it as it was before; nil when nothing matched.
func (s *Store) updateClaimed(ctx context.Context, d *Delivery, set bson.D) (*Delivery, error) {
	update := bson.D{{Key: "$set", Value: set}}
	if !s.ownQueue() {
		return decodeClaimed(s.outbox.FindOneAndUpdate(ctx, claimFilter(d), update))
	}
	return s.writeOwnClaimed(ctx, d, func() error {
		_, err := s.outbox.UpdateOne(ctx, bson.D{{Key: "_id", Value: d.ID}}, update)
		return err
	})
}

// decodeClaimed is the delivery a write filtered by claimFilter returned;
// nil when it matched nothing.
func decodeClaimed(res *mongo.SingleResult) (*Delivery, error) {
	var d Delivery
	err := res.Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, classify(err)
	}
	return &d, nil
}

// writeOwnClaimed runs write (by _id) on the process's own embedded server
// if d's claim is still the latest, under claimMu, and returns d as it was
// before; nil when it is gone or was claimed again.
func (s *Store) writeOwnClaimed(ctx context.Context, d *Delivery, write func() error) (*Delivery, error) {
	s.claimMu.Lock()
	defer s.claimMu.Unlock()
	cur, err := s.ownClaimed(ctx, d)
	if cur == nil || err != nil {
		return nil, err
	}
	if err := write(); err != nil {
		return nil, classify(err)
	}
	return cur, nil
}

// ownClaimed reads d by _id on the process's own embedded server, the
// caller holding claimMu: nil when it is gone or was claimed again.
func (s *Store) ownClaimed(ctx context.Context, d *Delivery) (*Delivery, error) {
	cur, err := findByID[Delivery](ctx, s.outbox, d.ID)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil || cur.Claim != d.Claim {
		return nil, err
	}
	return cur, nil
}

// bindDelivered records the delivered key with its time, so that retention
// can remove old ones.
func (s *Store) bindDelivered(ctx context.Context, id string) error {
	_, err := s.keys.InsertOne(ctx, keyDoc{Key: deliveredKey(id), Ref: bson.NilObjectID, CreatedAt: s.nowUTC()})
	if err != nil && !mongo.IsDuplicateKeyError(err) {
		return fmt.Errorf("bind %s: %w", deliveredKey(id), classify(err))
	}
	return nil
}

// next makes the delivery after d pending, if d was the head of a ticket's
// queue (deliveries queued before ordering existed carry no ticket).
func (s *Store) next(ctx context.Context, d *Delivery) error {
	if d.TicketID.IsZero() {
		return nil
	}
	unlock := s.locks.lock(d.TicketID)
	defer unlock()
	return s.ensureHead(ctx, d.TicketID, d.Sink)
}

// RetryDelivery records a failed attempt of a claimed delivery and when to
// try again. The ticket's later deliveries to the sink keep waiting.
// ErrClaimLost, changing nothing, when d was claimed again since.
func (s *Store) RetryDelivery(ctx context.Context, d *Delivery, cause error, at time.Time) error {
	was, err := s.updateClaimed(ctx, d, bson.D{
		{Key: "nextAttemptAt", Value: at.UTC().Truncate(time.Millisecond)},
		{Key: "lastError", Value: cause.Error()},
	})
	if err != nil {
		return fmt.Errorf("retry delivery %s: %w", d.ID, err)
	}
	if was == nil {
		return s.claimLost(ctx, d)
	}
	return nil
}

// KillDelivery moves a claimed delivery to the dead-letter state: no more
// attempts until an operator requeues it. The ticket's next delivery to
// the sink becomes pending. ErrClaimLost, changing nothing, when d was
// claimed again since; ErrNotFound when it is gone.
func (s *Store) KillDelivery(ctx context.Context, d *Delivery, cause error) error {
	dead, err := s.updateClaimed(ctx, d,
		bson.D{{Key: "state", Value: DeliveryDead}, {Key: "lastError", Value: cause.Error()}, {Key: "deadAt", Value: s.nowUTC()}})
	if err != nil {
		return fmt.Errorf("kill delivery %s: %w", d.ID, err)
	}
	if dead == nil {
		return s.claimLost(ctx, d)
	}
	return s.next(ctx, dead)
}

// RequeueDelivery gives a dead entry a fresh set of attempts, now, and
// wakes this process's runner for its sink; ErrNotFound when there is no
// dead entry with that id (a pending one may be in flight and is left
// alone). A requeued delivery does not wait for its ticket's others: the
// operator asked for it now.
func (s *Store) RequeueDelivery(ctx context.Context, id string) error {
	filter := bson.D{{Key: "_id", Value: id}, {Key: "state", Value: DeliveryDead}}
	if s.ownQueue() {
		s.claimMu.Lock()
		defer s.claimMu.Unlock()
		cur, err := findByID[Delivery](ctx, s.outbox, id)
		if err != nil {
			return err
		}
		if cur.State != DeliveryDead {
			return ErrNotFound
		}
		filter = filter[:1] // dead, as read under claimMu
	}
	var d Delivery
	err := s.outbox.FindOneAndUpdate(ctx, filter,
		bson.D{{Key: "$set", Value: bson.D{
			{Key: "state", Value: DeliveryPending},
			{Key: "attempts", Value: 0},
			{Key: "nextAttemptAt", Value: s.nowUTC()},
		}}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("requeue delivery %s: %w", id, classify(err))
	}
	s.wake(d.Sink)
	return nil
}

// RecordDeliveryOutcome announces on the ticket whether a sink delivered a
// response to the customer: EventResponseDelivered, or
// EventResponseUndelivered with reason in Note, with Origin the sink and
// ResponseID the response. Only a response.added delivery of a response
// that is not an internal note is announced; anything else is a no-op.
// The event's id is derived from the delivery and the outcome, so
// recording it again (a retry after a crash) queues nothing new. Like
// thread bookkeeping, it is not a change of the ticket: __v, updatedAt and
// the audit log stay as they are.
func (s *Store) RecordDeliveryOutcome(ctx context.Context, d *Delivery, delivered bool, reason string) error {
	e := d.Event
	if e.Kind != EventResponseAdded || e.ResponseID == nil {
		return nil
	}
	t, err := s.load(ctx, e.TicketID, withoutHistory)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("record outcome of %s: %w", d.ID, err)
	}
	i := slices.IndexFunc(t.Response, func(r Response) bool { return r.ID == *e.ResponseID })
	if i < 0 || t.Response[i].Internal {
		return nil
	}
	kind := EventResponseDelivered
	if !delivered {
		kind = EventResponseUndelivered
	} else {
		reason = ""
	}
	sum := sha256.Sum256([]byte(d.ID + "|" + string(kind)))
	var eid bson.ObjectID
	copy(eid[:], sum[:])
	out := Event{ID: eid, Kind: kind, TicketID: e.TicketID, ResponseID: e.ResponseID, ActorType: CreatorSystem,
		At: s.nowUTC(), Origin: Source(d.Sink), Seq: eventSeq(t.V, 15), Note: reason}
	unlock := s.locks.lock(e.TicketID)
	defer unlock()
	if _, err := s.tickets.UpdateOne(ctx, bson.D{{Key: "_id", Value: e.TicketID}},
		bson.D{{Key: "$push", Value: bson.D{{Key: "outbox", Value: out}}}}); err != nil {
		return fmt.Errorf("record outcome of %s: %w", d.ID, classify(err))
	}
	s.signal(e.TicketID)
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
