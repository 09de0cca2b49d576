package store

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Retention removes what only records the past, once it is older than its
// configured age. The embedded server has no TTL indexes, so a scheduled
// job calls these; each call removes at most limit documents (found by one
// bounded query, removed by _id), so one run's work is bounded whatever
// has piled up, and the next run continues.

// Kinds of records retention removes.
const (
	// PruneDelivered: the delivered:* keys that stop a delivered event from
	// being queued again (needed only while the event might be relayed
	// again: minutes, not months). Keys from before they recorded their
	// time count as old.
	PruneDelivered = "delivered"
	// PruneDeadLetters: dead deliveries, by when they died (or were
	// queued, for those from before that was recorded).
	PruneDeadLetters = "deadLetters"
	// PruneIgnored: the record of mail deliberately not turned into tickets.
	PruneIgnored = "ignored"
	// PruneQuarantined: quarantined mail with its raw bytes.
	PruneQuarantined = "quarantined"
	// PruneJobRuns: scheduled jobs' run records (by slot).
	PruneJobRuns = "jobRuns"
)

// PruneKinds lists every kind Prune knows.
var PruneKinds = []string{PruneDelivered, PruneDeadLetters, PruneIgnored, PruneQuarantined, PruneJobRuns}

// pruneQuery says where a kind lives and which of its documents are older
// than before.
func (s *Store) pruneQuery(kind string, before time.Time) (*mongo.Collection, bson.D, error) {
	lt := bson.D{{Key: "$lt", Value: before}}
	switch kind {
	case PruneDelivered:
		// $not $gte also matches keys without createdAt.
		return s.keys, bson.D{
			{Key: "_id", Value: bson.D{{Key: "$regex", Value: "^delivered:"}}},
			{Key: "createdAt", Value: bson.D{{Key: "$not", Value: bson.D{{Key: "$gte", Value: before}}}}},
		}, nil
	case PruneDeadLetters:
		// createdAt <= deadAt, so this is "died before", or "queued
		// before" for dead letters that did not record their death.
		return s.outbox, bson.D{
			{Key: "state", Value: DeliveryDead},
			{Key: "createdAt", Value: lt},
			{Key: "deadAt", Value: bson.D{{Key: "$not", Value: bson.D{{Key: "$gte", Value: before}}}}},
		}, nil
	case PruneIgnored:
		return s.col(colIgnored), bson.D{{Key: "at", Value: lt}}, nil
	case PruneQuarantined:
		return s.col(colQuarantine), bson.D{{Key: "receivedAt", Value: lt}}, nil
	case PruneJobRuns:
		return s.col(colJobRuns), bson.D{{Key: "slot", Value: lt}}, nil
	}
	return nil, nil, fmt.Errorf("prune: %w: unknown kind %q", ErrInvalid, kind)
}

// Prune removes up to limit records of kind older than before, and says
// how many it removed; fewer than limit means none are left.
func (s *Store) Prune(ctx context.Context, kind string, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, fmt.Errorf("prune %s: %w: limit must be positive", kind, ErrInvalid)
	}
	col, filter, err := s.pruneQuery(kind, before.UTC())
	if err != nil {
		return 0, err
	}
	cur, err := col.Find(ctx, filter, options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}).SetLimit(int64(limit)))
	if err != nil {
		return 0, fmt.Errorf("prune %s: %w", kind, classify(err))
	}
	var ids []struct {
		ID any `bson:"_id"`
	}
	if err := cur.All(ctx, &ids); err != nil {
		return 0, fmt.Errorf("prune %s: %w", kind, classify(err))
	}
	recheck := bson.D{}
	for _, e := range filter {
		if e.Key != "_id" {
			recheck = append(recheck, e)
		}
	}
	n := 0
	for _, d := range ids {
		// By _id, the one lookup the embedded server answers from an
		// index; the filter again, so that a record that changed since
		// (a dead letter requeued) stays.
		res, err := col.DeleteOne(ctx, append(bson.D{{Key: "_id", Value: d.ID}}, recheck...))
		if err != nil {
			return n, fmt.Errorf("prune %s: %w", kind, classify(err))
		}
		n += int(res.DeletedCount)
	}
	return n, nil
}
