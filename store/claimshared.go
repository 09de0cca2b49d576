package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Claiming deliveries on a database that other daemons share. MongoDB runs
// a findAndModify atomically; the embedded server, served to several
// daemons, does not: it reads, then writes, so two daemons can both take
// the same delivery and both send it (measured: 40 of 60 deliveries taken
// twice by three daemons). So a shared claim names its attempt (the
// delivery, its attempt number and the due time it was claimed at: the
// same for every daemon that races for it, never the same for two
// attempts, a requeue included) and inserts that name, also its fencing
// token, under a unique _id: exactly one daemon gets each attempt, on
// every server.
//
// Relays are not serialized across daemons either; see dropDelivered for
// the repeat that lets in, and how it is caught.

const colClaims = "claims"

// claimKeep is how long an attempt's name is kept: long after any daemon
// that raced for it has inserted (or failed to insert) it.
const claimKeep = time.Hour

// claimDoc names one attempt at a delivery.
type claimDoc struct {
	ID    string    `bson:"_id"` // the claim token: "<delivery id>#<attempt>@<due, ms>"
	Until time.Time `bson:"until"`
}

// maxClaimRaces bounds the candidates one call tries when other daemons
// take them first; then it reports none due, and the runner waits.
const maxClaimRaces = 8

// claimShared is ClaimDelivery on a shared database.
func (s *Store) claimShared(ctx context.Context, sink string, lease time.Duration) (*Delivery, error) {
	for range maxClaimRaces {
		now := s.nowUTC()
		due := bson.D{
			{Key: "sink", Value: sink},
			{Key: "state", Value: DeliveryPending},
			{Key: "nextAttemptAt", Value: bson.D{{Key: "$lte", Value: now}}},
		}
		var c Delivery
		err := s.outbox.FindOne(ctx, due, options.FindOne().SetSort(bson.D{{Key: "nextAttemptAt", Value: 1}})).Decode(&c)
		if errors.Is(err, mongo.ErrNoDocuments) {
			return nil, ErrNotFound
		}
		if err != nil {
			return nil, fmt.Errorf("claim %s delivery: %w", sink, classify(err))
		}
		token := c.ID + "#" + strconv.Itoa(c.Attempts+1) + "@" + strconv.FormatInt(c.NextAttemptAt.UnixMilli(), 10)
		var d Delivery
		err = s.outbox.FindOneAndUpdate(ctx,
			bson.D{
				{Key: "_id", Value: c.ID}, {Key: "state", Value: DeliveryPending},
				{Key: "attempts", Value: c.Attempts}, {Key: "nextAttemptAt", Value: c.NextAttemptAt},
			},
			bson.D{
				{Key: "$set", Value: bson.D{{Key: "nextAttemptAt", Value: now.Add(lease)}, {Key: "claim", Value: token}}},
				{Key: "$inc", Value: bson.D{{Key: "attempts", Value: 1}}},
			},
			options.FindOneAndUpdate().SetReturnDocument(options.After),
		).Decode(&d)
		if errors.Is(err, mongo.ErrNoDocuments) {
			continue // another daemon took it first
		}
		if err != nil {
			return nil, fmt.Errorf("claim %s delivery %s: %w", sink, c.ID, classify(err))
		}
		s.claimSweep.run(ctx, s, colClaims, now, claimKeep)
		_, err = s.col(colClaims).InsertOne(ctx, claimDoc{ID: token, Until: now.Add(claimKeep)})
		if mongo.IsDuplicateKeyError(err) {
			continue // the embedded server let another daemon take this attempt too; it won
		}
		if err != nil {
			// Claimed but unconfirmed: nobody sends it until the lease
			// runs out, then it is claimed again.
			return nil, fmt.Errorf("claim %s delivery %s: %w", sink, c.ID, classify(err))
		}
		if again, err := s.dropDelivered(ctx, &d); err != nil {
			return nil, fmt.Errorf("claim %s delivery %s: %w", sink, c.ID, err)
		} else if again {
			continue
		}
		return &d, nil
	}
	return nil, ErrNotFound
}

// dropDelivered removes the claimed delivery d if it was delivered before,
// and reports whether it did. Relays on several daemons are not serialized
// by a ticket lock (nor, in one process, with a completion, which a relay
// repeating an event whose earlier pull failed can race): a daemon that read an event just before another daemon
// relayed, sent and completed it would queue it again after completion
// removed it (its check of the delivered key came before the key was
// written). Completion writes that key before it removes the delivery, so
// any delivery queued again after the removal is recognised here.
func (s *Store) dropDelivered(ctx context.Context, d *Delivery) (bool, error) {
	if _, err := s.lookupKey(ctx, deliveredKey(d.ID)); errors.Is(err, ErrNotFound) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	s.log.Warn("a notification already delivered was queued again (a relay racing its completion, or a requeue of a dead letter whose first attempt had gone out); dropped, not sent twice", "delivery", d.ID)
	done, err := s.deleteClaimed(ctx, d)
	if done == nil || err != nil {
		return err == nil, err
	}
	return true, s.next(ctx, done)
}

// lazySweep deletes a collection's documents whose until has passed, at
// most once per interval per Store, from the call that finds it due: the
// embedded server has no TTL indexes. A failed sweep is logged and tried
// again next interval; it costs space, not correctness.
type lazySweep struct {
	mu sync.Mutex
	at time.Time
}

func (l *lazySweep) run(ctx context.Context, s *Store, col string, now time.Time, every time.Duration) {
	l.mu.Lock()
	due := now.Sub(l.at) >= every
	if due {
		l.at = now
	}
	l.mu.Unlock()
	if !due {
		return
	}
	if _, err := s.col(col).DeleteMany(ctx, bson.D{{Key: "until", Value: bson.D{{Key: "$lte", Value: now}}}}); err != nil {
		s.log.Warn("deleting ended records failed; will retry", "collection", col, "err", classify(err))
	}
}
