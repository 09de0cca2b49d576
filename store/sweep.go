package store

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// WakeDueDeliveries wakes this process's runner of every sink with a
// delivery due now: among them those whose claim's lease ran out (a
// sender that crashed or hung), which a runner otherwise finds only at its
// next poll. It returns how many sinks it woke.
func (s *Store) WakeDueDeliveries(ctx context.Context) (int, error) {
	sinks, ok := s.Sinks()
	if !ok {
		return 0, fmt.Errorf("wake due deliveries: %w", ErrNotJoined)
	}
	now := s.nowUTC()
	woken := 0
	for _, sink := range sinks {
		n, err := s.outbox.CountDocuments(ctx, bson.D{
			{Key: "sink", Value: sink}, {Key: "state", Value: DeliveryPending},
			{Key: "nextAttemptAt", Value: bson.D{{Key: "$lte", Value: now}}},
		}, options.Count().SetLimit(1))
		if err != nil {
			return woken, fmt.Errorf("find due %s deliveries: %w", sink, classify(err))
		}
		if n > 0 {
			s.wake(sink)
			woken++
		}
	}
	return woken, nil
}
