package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// What the Slack bridge needs beyond tickets and threads: inbound event ids
// already applied, audit lines for things that happened outside the ticket
// (an edited or deleted Slack message), and the link from a Slack user to an
// agent found by address.

// seenEventDoc records an inbound event that was applied, in the keys
// collection under "event:<key>" (its _id makes it unique).
type seenEventDoc struct {
	Key string    `bson:"_id"`
	At  time.Time `bson:"at"`
}

func eventKey(key string) string { return "event:" + key }

// SeenEvent reports whether RecordEvent recorded key ("slack:<event_id>").
func (s *Store) SeenEvent(ctx context.Context, key string) (bool, error) {
	err := s.keys.FindOne(ctx, bson.D{{Key: "_id", Value: eventKey(key)}}).Err()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up event %s: %w", key, classify(err))
	}
	return true, nil
}

// RecordEvent records that the event named key was applied. Recording it
// again is a no-op. Callers record after the effect is stored, so that a
// crash in between makes a redelivery apply it again (effects are
// idempotent) rather than lose it.
func (s *Store) RecordEvent(ctx context.Context, key string) error {
	_, err := s.keys.InsertOne(ctx, seenEventDoc{Key: eventKey(key), At: s.nowUTC()})
	if err != nil && !mongo.IsDuplicateKeyError(err) {
		return fmt.Errorf("record event %s: %w", key, classify(err))
	}
	return nil
}

// AddLog adds one line to a ticket's audit log, for something that happened
// to the ticket outside the store (a Slack message edited after it was
// stored). Like every change, it bumps __v; it announces nothing.
func (s *Store) AddLog(ctx context.Context, id bson.ObjectID, scope Scope, by Actor, what string) error {
	if what == "" {
		return fmt.Errorf("add log: %w: empty line", ErrInvalid)
	}
	_, err := s.mutate(ctx, id, scope, nil, func(t *Ticket, now time.Time, c *change) error {
		c.log(by, what)
		return nil
	})
	return err
}

// linkAgentSlackUser makes a Slack user id find an existing agent: the
// lookup key is bound (unless the user already names another agent, which
// keeps it) and the agent records the id when it had none.
func (s *Store) linkAgentSlackUser(ctx context.Context, agent bson.ObjectID, slackUserID string) (*Agent, error) {
	if _, err := s.bindKey(ctx, "agent-slack:"+slackUserID, agent); err != nil {
		return nil, err
	}
	a, err := s.Agent(ctx, agent)
	if err != nil || a.SlackUserID != "" {
		return a, err
	}
	// By _id alone: the one filter the embedded server answers from an index.
	_, err = s.agents.UpdateOne(ctx, bson.D{{Key: "_id", Value: agent}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "slackUserId", Value: slackUserID}}}})
	if err != nil {
		return nil, fmt.Errorf("link agent %s to Slack user %s: %w", agent.Hex(), slackUserID, classify(err))
	}
	a.SlackUserID = slackUserID
	return a, nil
}
