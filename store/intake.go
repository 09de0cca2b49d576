package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// What Slack intake needs: customers known by their Slack identity, agents
// known by address, and the customer's edit of the message that opened a
// ticket.

// SlackPerson is a Slack user who writes to support as a customer.
type SlackPerson struct {
	// SlackTeamID is the user's own organisation (a Slack Connect user's,
	// not the app's workspace); SlackUserID their user id. Both required.
	SlackTeamID, SlackUserID string
	// Email and Name from users.info, when visible; may be empty.
	Email, Name string
	// Team is the ticket team a new customer record gets; empty means a
	// personal team.
	Team string
}

func slackCustomerKey(team, user string) string { return "customer-slack:" + team + "/" + user }

// FindOrCreateSlackCustomer returns the customer a Slack user is: the one
// already keyed by their Slack team and user id, else the customer with
// their address (who wrote by mail before: one person, one history), now
// keyed by the Slack identity too, else a new customer. created says a
// record was made.
func (s *Store) FindOrCreateSlackCustomer(ctx context.Context, p SlackPerson) (c *Customer, created bool, err error) {
	p.SlackTeamID, p.SlackUserID = strings.TrimSpace(p.SlackTeamID), strings.TrimSpace(p.SlackUserID)
	if p.SlackTeamID == "" || p.SlackUserID == "" {
		return nil, false, fmt.Errorf("find Slack customer: %w: empty team or user id", ErrInvalid)
	}
	if ReservedTeam(p.Team) {
		return nil, false, fmt.Errorf("find Slack customer: %w: team %q is a personal team", ErrInvalid, p.Team)
	}
	key := slackCustomerKey(p.SlackTeamID, p.SlackUserID)
	id, err := s.lookupKey(ctx, key)
	if err == nil {
		c, err := s.Customer(ctx, id)
		return c, false, err
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, false, err
	}
	email := normEmail(p.Email)
	if email != "" {
		c, err := s.CustomerByEmail(ctx, email)
		if err == nil {
			return s.linkSlackCustomer(ctx, c, key, p)
		}
		if !errors.Is(err, ErrNotFound) {
			return nil, false, err
		}
	}
	c = &Customer{ID: bson.NewObjectID(), Email: email, Name: strings.TrimSpace(p.Name), TeamID: p.Team,
		SlackTeamID: p.SlackTeamID, SlackUserID: p.SlackUserID, CreatedAt: s.nowUTC()}
	if c.TeamID == "" {
		c.TeamID = PersonalTeam(c.ID)
	}
	if _, err := s.customers.InsertOne(ctx, c); err != nil {
		return nil, false, fmt.Errorf("create Slack customer %s: %w", key, classify(err))
	}
	drop := func() { _, _ = s.customers.DeleteOne(context.WithoutCancel(ctx), bson.D{{Key: "_id", Value: c.ID}}) }
	if email != "" {
		ref, err := s.bindKey(ctx, "customer-email:"+email, c.ID)
		if err != nil {
			drop()
			return nil, false, err
		}
		if ref != c.ID { // someone made the address's customer meanwhile: link that one
			drop()
			other, err := s.Customer(ctx, ref)
			if err != nil {
				return nil, false, err
			}
			return s.linkSlackCustomer(ctx, other, key, p)
		}
	}
	ref, err := s.bindKey(ctx, key, c.ID)
	if err != nil {
		return nil, false, err
	}
	if ref != c.ID { // lost a race with another writer of the same user: use theirs
		if email == "" {
			drop()
		}
		got, err := s.Customer(ctx, ref)
		return got, false, err
	}
	if email != "" {
		s.customersByEmail.put(email, *c)
	}
	return c, true, nil
}

// linkSlackCustomer keys an existing customer by a Slack identity too, and
// records it on the customer when it has none.
func (s *Store) linkSlackCustomer(ctx context.Context, c *Customer, key string, p SlackPerson) (*Customer, bool, error) {
	ref, err := s.bindKey(ctx, key, c.ID)
	if err != nil {
		return nil, false, err
	}
	if ref != c.ID {
		got, err := s.Customer(ctx, ref)
		return got, false, err
	}
	if c.SlackUserID != "" {
		return c, false, nil
	}
	_, err = s.customers.UpdateOne(ctx, bson.D{{Key: "_id", Value: c.ID}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "slackTeamId", Value: p.SlackTeamID}, {Key: "slackUserId", Value: p.SlackUserID}}}})
	if err != nil {
		return nil, false, fmt.Errorf("link customer %s to Slack user %s: %w", c.ID.Hex(), p.SlackUserID, classify(err))
	}
	if c.Email != "" {
		s.customersByEmail.drop(c.Email)
	}
	c.SlackTeamID, c.SlackUserID = p.SlackTeamID, p.SlackUserID
	return c, false, nil
}

// AgentByEmail finds the agent with an address.
func (s *Store) AgentByEmail(ctx context.Context, email string) (*Agent, error) {
	id, err := s.lookupKey(ctx, "agent-email:"+normEmail(email))
	if err != nil {
		return nil, err
	}
	return s.Agent(ctx, id)
}

// Answered reports whether an agent has replied to the customer on the
// ticket (an internal note is no answer).
func (t *Ticket) Answered() bool {
	for _, r := range t.Response {
		if r.CreatorType == CreatorAdmin && !r.Internal {
			return true
		}
	}
	return false
}

// EditOpening replaces a ticket's subject and description with the edited
// text of the message that opened it, as long as no agent has answered;
// edited=false then, and the caller records the edit otherwise. The new
// text must pass the limits, like any way in. Logged, and announced
// (ticket.edited) so that the agents' root message shows the new text.
func (s *Store) EditOpening(ctx context.Context, id bson.ObjectID, scope Scope, subject, description string, by Actor) (t *Ticket, edited bool, err error) {
	subject, err = s.limits.CheckSubject(subject)
	if err != nil {
		return nil, false, fmt.Errorf("edit ticket: %w", err)
	}
	if err := s.limits.CheckDescription(description); err != nil {
		return nil, false, fmt.Errorf("edit ticket: %w", err)
	}
	t, err = s.mutate(ctx, id, scope, nil, func(t *Ticket, now time.Time, c *change) error {
		if t.Answered() || (t.Subject == subject && t.Description == description) {
			return nil
		}
		c.set("subject", subject, func(t *Ticket) { t.Subject = subject })
		c.set("description", description, func(t *Ticket) { t.Description = description })
		c.log(by, "Description edited by the customer before an agent answered")
		c.announce(Event{Kind: EventTicketEdited, ActorID: by.ID, ActorType: by.Type, Origin: by.Via})
		edited = true
		return nil
	})
	return t, edited, err
}
