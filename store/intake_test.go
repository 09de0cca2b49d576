package store_test

import (
	"context"
	"strings"
	"testing"

	"github.com/ticketd/ticketd/store"
	"github.com/ticketd/ticketd/store/storetest"
)

func TestSlackCustomerKeyedByTeamAndUserAndLinkedByEmail(t *testing.T) {
	s := storetest.Open(t)
	ctx := context.Background()
	mail, _, err := s.FindOrCreateCustomer(ctx, "Cara@Acme.test", "Cara", "acme")
	if err != nil {
		t.Fatal(err)
	}
	c, created, err := s.FindOrCreateSlackCustomer(ctx, store.SlackPerson{SlackTeamID: "T1", SlackUserID: "U1", Email: "cara@acme.test", Name: "Cara S", Team: "slack:T1"})
	if err != nil || created || c.ID != mail.ID || c.SlackUserID != "U1" || c.SlackTeamID != "T1" {
		t.Fatalf("the Slack user was not linked to the mail customer: %+v created=%v err=%v", c, created, err)
	}
	again, _, err := s.FindOrCreateSlackCustomer(ctx, store.SlackPerson{SlackTeamID: "T1", SlackUserID: "U1"})
	if err != nil || again.ID != mail.ID {
		t.Fatalf("lookup by Slack identity: %+v %v", again, err)
	}
	// The same user id in another organisation is another person.
	other, created, err := s.FindOrCreateSlackCustomer(ctx, store.SlackPerson{SlackTeamID: "T2", SlackUserID: "U1", Name: "No Mail", Team: "slack:T2"})
	if err != nil || !created || other.ID == mail.ID || other.Email != "" || other.TeamID != "slack:T2" {
		t.Fatalf("a customer without email in another team: %+v created=%v err=%v", other, created, err)
	}
	if again, _, _ := s.FindOrCreateSlackCustomer(ctx, store.SlackPerson{SlackTeamID: "T2", SlackUserID: "U1"}); again == nil || again.ID != other.ID {
		t.Fatalf("second lookup of a customer without email made another: %+v", again)
	}
	// A new Slack customer with an address is found by mail later.
	n, created, err := s.FindOrCreateSlackCustomer(ctx, store.SlackPerson{SlackTeamID: "T1", SlackUserID: "U9", Email: "dan@acme.test", Team: "slack:T1"})
	if err != nil || !created {
		t.Fatal(err)
	}
	if byMail, _, _ := s.FindOrCreateCustomer(ctx, "dan@acme.test", "", "x"); byMail == nil || byMail.ID != n.ID {
		t.Errorf("the mail side did not find the Slack customer: %+v", byMail)
	}
	if _, _, err := s.FindOrCreateSlackCustomer(ctx, store.SlackPerson{SlackTeamID: "T1"}); err == nil {
		t.Error("no user id accepted")
	}
}

func TestEditOpeningOnlyBeforeAnAgentAnswered(t *testing.T) {
	s := storetest.Open(t)
	ctx := context.Background()
	c, _, _ := s.FindOrCreateCustomer(ctx, "e@x.test", "E", "t")
	by := store.Actor{ID: c.ID, Type: store.CreatorCustomer, Via: store.SourceSlack}
	tk, _, err := s.CreateTicket(ctx, store.NewTicket{Creator: by, TeamID: "t", Subject: "Typo", Description: "Typo here", Source: store.SourceSlack,
		Threads: []store.ThreadRef{{Kind: store.ThreadSlackCustomer, Key: "C1/1.2"}}})
	if err != nil {
		t.Fatal(err)
	}
	if id, err := s.TicketIDByThread(ctx, store.ThreadSlackCustomer, "C1/1.2"); err != nil || id != tk.ID || tk.Thread(store.ThreadSlackCustomer) != "C1/1.2" {
		t.Fatalf("thread given at creation not bound: %v %v %+v", id, err, tk.Threads)
	}
	got, edited, err := s.EditOpening(ctx, tk.ID, store.AllTickets, "Fixed", "Fixed here", by)
	if err != nil || !edited || got.Subject != "Fixed" || got.Description != "Fixed here" {
		t.Fatalf("edit before an answer: %+v edited=%v err=%v", got, edited, err)
	}
	if full, _ := s.Ticket(ctx, tk.ID, store.AllTickets); full.Outbox[len(full.Outbox)-1].Kind != store.EventTicketEdited {
		t.Errorf("the edit was not announced: %+v", full.Outbox)
	}
	// An internal note is no answer; a reply to the customer is.
	agent, _ := s.FindOrCreateAgent(ctx, "a@support.test", "A", "")
	ab := store.Actor{ID: agent.ID, Type: store.CreatorAdmin}
	if _, _, err := s.AddResponse(ctx, tk.ID, store.AllTickets, store.NewResponse{Author: ab, Description: "note", Internal: true}); err != nil {
		t.Fatal(err)
	}
	if _, edited, _ := s.EditOpening(ctx, tk.ID, store.AllTickets, "Again", "Again", by); !edited {
		t.Error("an internal note stopped the edit")
	}
	if _, _, err := s.AddResponse(ctx, tk.ID, store.AllTickets, store.NewResponse{Author: ab, Description: "answer"}); err != nil {
		t.Fatal(err)
	}
	got, edited, err = s.EditOpening(ctx, tk.ID, store.AllTickets, "Late", "Late", by)
	if err != nil || edited || got.Description != "Again" {
		t.Fatalf("edit after an answer changed the text: %+v edited=%v err=%v", got, edited, err)
	}
	if _, _, err := s.EditOpening(ctx, tk.ID, store.AllTickets, "x", strings.Repeat("y", 1<<20), by); err == nil {
		t.Error("an edit over the limits accepted")
	}
}
