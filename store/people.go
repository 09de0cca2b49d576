package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// The keys collection maps a natural key ("customer-email:a@b.c") to the
// ObjectID it names. Lookups go by _id, the one filter every backend answers
// from an index, and the _id makes each key unique.
type keyDoc struct {
	Key string        `bson:"_id"`
	Ref bson.ObjectID `bson:"ref"`
	// CreatedAt is set on keys that expire (delivered:*, see retention);
	// older ones have none and count as old.
	CreatedAt time.Time `bson:"createdAt,omitempty"`
}

func (s *Store) lookupKey(ctx context.Context, key string) (bson.ObjectID, error) {
	var k keyDoc
	err := s.keys.FindOne(ctx, bson.D{{Key: "_id", Value: key}}).Decode(&k)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return bson.NilObjectID, ErrNotFound
	}
	if err != nil {
		return bson.NilObjectID, fmt.Errorf("look up %s: %w", key, classify(err))
	}
	return k.Ref, nil
}

// bindKey maps key to ref unless it is mapped already, and returns what the
// key names now.
func (s *Store) bindKey(ctx context.Context, key string, ref bson.ObjectID) (bson.ObjectID, error) {
	_, err := s.keys.InsertOne(ctx, keyDoc{Key: key, Ref: ref})
	if mongo.IsDuplicateKeyError(err) {
		return s.lookupKey(ctx, key)
	}
	if err != nil {
		return bson.NilObjectID, fmt.Errorf("bind %s: %w", key, classify(err))
	}
	return ref, nil
}

// personalPrefix starts the id of every personal team.
const personalPrefix = "personal:"

// PersonalTeam is the team of a customer who belongs to none: the customer
// alone.
func PersonalTeam(customer bson.ObjectID) string { return personalPrefix + customer.Hex() }

// ReservedTeam says whether team is a personal team's id. Only the store
// assigns those; a team named from outside (a token, a flag, the
// configuration) must never be one, or it opens a customer's personal
// tickets to whoever holds it.
func ReservedTeam(team string) bool { return strings.HasPrefix(team, personalPrefix) }

func normEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// FindOrCreateCustomer returns the customer with this address, creating it
// in team when there is none.
func (s *Store) FindOrCreateCustomer(ctx context.Context, email, name, team string) (*Customer, bool, error) {
	email = normEmail(email)
	if email == "" {
		return nil, false, fmt.Errorf("find customer: %w: empty address", ErrInvalid)
	}
	if ReservedTeam(team) {
		return nil, false, fmt.Errorf("find customer %s: %w: team %q is a personal team", email, ErrInvalid, team)
	}
	if c, err := s.CustomerByEmail(ctx, email); !errors.Is(err, ErrNotFound) {
		return c, false, err
	}
	c := &Customer{ID: bson.NewObjectID(), Email: email, Name: FitName(name), TeamID: team, CreatedAt: s.nowUTC()}
	if c.TeamID == "" {
		c.TeamID = PersonalTeam(c.ID)
	}
	if _, err := s.customers.InsertOne(ctx, c); err != nil {
		return nil, false, fmt.Errorf("create customer %s: %w", email, classify(err))
	}
	ref, err := s.bindKey(ctx, "customer-email:"+email, c.ID)
	if err != nil {
		return nil, false, err
	}
	if ref != c.ID { // lost a race with another writer: use theirs
		_, _ = s.customers.DeleteOne(ctx, bson.D{{Key: "_id", Value: c.ID}})
		got, err := s.Customer(ctx, ref)
		return got, false, err
	}
	s.customersByEmail.put(email, *c)
	return c, true, nil
}

// CustomerByEmail finds a customer by address.
func (s *Store) CustomerByEmail(ctx context.Context, email string) (*Customer, error) {
	email = normEmail(email)
	if c, ok := s.customersByEmail.get(email); ok {
		return &c, nil
	}
	id, err := s.lookupKey(ctx, "customer-email:"+email)
	if err != nil {
		return nil, err
	}
	c, err := s.Customer(ctx, id)
	if err == nil {
		s.customersByEmail.put(email, *c)
	}
	return c, err
}

// Customer finds a customer by id.
func (s *Store) Customer(ctx context.Context, id bson.ObjectID) (*Customer, error) {
	return findByID[Customer](ctx, s.customers, id)
}

// FindOrCreateAgent returns the agent with this address, creating it when
// there is none; a non-empty slackUserID is recorded and indexed.
func (s *Store) FindOrCreateAgent(ctx context.Context, email, name, slackUserID string) (*Agent, error) {
	email = normEmail(email)
	if email == "" {
		return nil, fmt.Errorf("find agent: %w: empty address", ErrInvalid)
	}
	id, err := s.lookupKey(ctx, "agent-email:"+email)
	if err == nil && slackUserID != "" {
		return s.linkAgentSlackUser(ctx, id, slackUserID) // an agent known by address, now from Slack too
	}
	if err == nil {
		return s.Agent(ctx, id)
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	a := &Agent{ID: bson.NewObjectID(), Email: email, Name: FitName(name), SlackUserID: slackUserID, CreatedAt: s.nowUTC()}
	if _, err := s.agents.InsertOne(ctx, a); err != nil {
		return nil, fmt.Errorf("create agent %s: %w", email, classify(err))
	}
	if ref, err := s.bindKey(ctx, "agent-email:"+email, a.ID); err != nil || ref != a.ID {
		_, _ = s.agents.DeleteOne(ctx, bson.D{{Key: "_id", Value: a.ID}})
		if err != nil {
			return nil, err
		}
		return s.Agent(ctx, ref)
	}
	if slackUserID != "" {
		if _, err := s.bindKey(ctx, "agent-slack:"+slackUserID, a.ID); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// AgentBySlackUser finds the agent with a Slack user id.
func (s *Store) AgentBySlackUser(ctx context.Context, slackUserID string) (*Agent, error) {
	id, err := s.lookupKey(ctx, "agent-slack:"+slackUserID)
	if err != nil {
		return nil, err
	}
	return s.Agent(ctx, id)
}

// Agent finds an agent by id.
func (s *Store) Agent(ctx context.Context, id bson.ObjectID) (*Agent, error) {
	return findByID[Agent](ctx, s.agents, id)
}

func findByID[T any](ctx context.Context, col *mongo.Collection, id any) (*T, error) {
	var v T
	err := col.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&v)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("find %s %v: %w", col.Name(), id, classify(err))
	}
	return &v, nil
}
