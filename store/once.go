package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Once-only actions (the digest of one morning): a claim in the keys
// collection under "once:<key>", which one caller at a time holds for a
// lease, and which is marked done when the action is. A caller that dies
// holding it leaves it to the next after the lease; the action itself must
// then find out whether it happened (the digest searches the channel).

// onceDoc is a once-only action's claim.
type onceDoc struct {
	Key    string     `bson:"_id"`
	Claim  string     `bson:"claim"`
	Until  time.Time  `bson:"until"`
	DoneAt *time.Time `bson:"doneAt,omitempty"`
}

func onceKey(key string) string { return "once:" + key }

// ClaimOnce claims the action named key for lease. ok=false when it is
// done, or another caller's claim has not expired; otherwise claim names
// this caller's claim, for FinishOnce.
func (s *Store) ClaimOnce(ctx context.Context, key string, lease time.Duration) (claim string, ok bool, err error) {
	now := s.nowUTC()
	claim = bson.NewObjectID().Hex()
	doc := onceDoc{Key: onceKey(key), Claim: claim, Until: now.Add(lease)}
	_, err = s.keys.InsertOne(ctx, doc)
	if err == nil {
		return claim, true, nil
	}
	if !mongo.IsDuplicateKeyError(err) {
		return "", false, fmt.Errorf("claim %s: %w", key, classify(err))
	}
	// Taken before: take it over only when not done and its lease ran out.
	err = s.keys.FindOneAndUpdate(ctx,
		bson.D{{Key: "_id", Value: doc.Key}, {Key: "doneAt", Value: nil}, {Key: "until", Value: bson.D{{Key: "$lte", Value: now}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "claim", Value: claim}, {Key: "until", Value: doc.Until}}}}).Err()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("claim %s: %w", key, classify(err))
	}
	return claim, true, nil
}

// FinishOnce marks the action named key done, for the caller holding
// claim; ErrConflict when the claim was taken over meanwhile (its lease
// ran out).
func (s *Store) FinishOnce(ctx context.Context, key, claim string) error {
	res, err := s.keys.UpdateOne(ctx, bson.D{{Key: "_id", Value: onceKey(key)}, {Key: "claim", Value: claim}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "doneAt", Value: s.nowUTC()}}}})
	if err != nil {
		return fmt.Errorf("finish %s: %w", key, classify(err))
	}
	if res.MatchedCount == 0 {
		return fmt.Errorf("finish %s: the claim was taken over: %w", key, ErrConflict)
	}
	return nil
}
