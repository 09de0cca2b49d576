package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Rate limits shared by every daemon of a deployment (how many tickets one
// sender may open per window), so that N daemons allow the configured
// rate, not N times it.
//
// The embedded server runs every update as a read followed by a write, not
// atomically: two clients incrementing one counter at once both read n and
// both write n+1 (measured: 200 concurrent $inc from two clients left 51).
// The one write it makes atomically is an insert under a unique _id. So a
// sender's window is a set of slots, "rate:<key>:<window start>:<i>" for
// i < limit, and taking one is inserting it: the limit is exact on MongoDB
// and on the embedded server alike, with no read-modify-write. Windows are
// fixed (aligned to multiples of the window since the zero time: whole
// hours for an hour), so a burst that straddles a boundary can open up to
// twice the limit within one window's length.

const colRateSlots = "rateslots"

// rateSlotDoc is one taken slot, or a window's full marker.
type rateSlotDoc struct {
	ID    string    `bson:"_id"`
	Until time.Time `bson:"until"` // the end of its window; deleted after it
}

// RateSlot is one use of a rate limit, given back with ReturnRateSlot.
type RateSlot struct {
	id   string
	full string // the window's full marker
}

// TakeRateSlot takes one of limit slots of key's current window of the
// given length; ok is false when all are taken. A limit <= 0 means no limit.
// Work is bounded by limit: one lookup when the window is known to be full,
// else at most limit inserts.
func (s *Store) TakeRateSlot(ctx context.Context, key string, limit int, window time.Duration) (slot RateSlot, ok bool, err error) {
	if limit <= 0 {
		return RateSlot{}, true, nil
	}
	if window <= 0 || key == "" {
		return RateSlot{}, false, fmt.Errorf("take rate slot: %w: key %q, window %s", ErrInvalid, key, window)
	}
	now := s.nowUTC()
	start := now.Truncate(window)
	until := start.Add(window)
	// The collection holds only the current windows' slots (and, until the
	// next sweep, the last ones).
	s.rateSweep.run(ctx, s, colRateSlots, now, window)
	prefix := "rate:" + key + ":" + strconv.FormatInt(start.UnixMilli(), 10) + ":"
	col := s.col(colRateSlots)
	// A window found full once is marked, so that a flood from one sender
	// costs one lookup per message rather than limit failed inserts.
	full := prefix + "full"
	err = col.FindOne(ctx, bson.D{{Key: "_id", Value: full}}).Err()
	if err == nil {
		return RateSlot{}, false, nil
	}
	if !errors.Is(err, mongo.ErrNoDocuments) {
		return RateSlot{}, false, fmt.Errorf("take rate slot of %s: %w", key, classify(err))
	}
	for i := range limit {
		id := prefix + strconv.Itoa(i)
		_, err := col.InsertOne(ctx, rateSlotDoc{ID: id, Until: until})
		if err == nil {
			return RateSlot{id: id, full: full}, true, nil
		}
		if !mongo.IsDuplicateKeyError(err) {
			return RateSlot{}, false, fmt.Errorf("take rate slot of %s: %w", key, classify(err))
		}
	}
	if _, err := col.InsertOne(ctx, rateSlotDoc{ID: full, Until: until}); err != nil && !mongo.IsDuplicateKeyError(err) {
		return RateSlot{}, false, fmt.Errorf("mark rate window of %s full: %w", key, classify(err))
	}
	return RateSlot{}, false, nil
}

// ReturnRateSlot gives back a slot that was not used after all (the message
// had opened its ticket before, say). Returning the zero RateSlot (what an
// unlimited take returns) is a no-op. A take that found the window full at
// the same moment may still refuse: a refusal is recorded, never lost.
func (s *Store) ReturnRateSlot(ctx context.Context, slot RateSlot) error {
	if slot.id == "" {
		return nil
	}
	col := s.col(colRateSlots)
	for _, id := range []string{slot.id, slot.full} {
		if _, err := col.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}}); err != nil {
			return fmt.Errorf("return rate slot %s: %w", slot.id, classify(err))
		}
	}
	return nil
}
