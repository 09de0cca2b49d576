package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/ticketd/ticketd/store"
	"github.com/ticketd/ticketd/store/storetest"
)

func TestSeenEventOnceRecorded(t *testing.T) {
	s := storetest.Open(t)
	ctx := context.Background()
	if seen, err := s.SeenEvent(ctx, "slack:Ev1"); err != nil || seen {
		t.Fatalf("before recording: seen=%v err=%v", seen, err)
	}
	for range 2 { // recording twice is a no-op
		if err := s.RecordEvent(ctx, "slack:Ev1"); err != nil {
			t.Fatal(err)
		}
	}
	if seen, err := s.SeenEvent(ctx, "slack:Ev1"); err != nil || !seen {
		t.Errorf("after recording: seen=%v err=%v", seen, err)
	}
	if seen, _ := s.SeenEvent(ctx, "slack:Ev2"); seen {
		t.Error("another event counts as seen")
	}
}

func TestAddLogAppendsOneLine(t *testing.T) {
	s := storetest.Open(t)
	ctx := context.Background()
	tk := newTicket(t, s, "t", "x")
	if err := s.AddLog(ctx, tk.ID, store.AllTickets, agent, "Slack message edited"); err != nil {
		t.Fatal(err)
	}
	logs, err := s.Logs(ctx, tk.ID, store.AllTickets)
	if err != nil {
		t.Fatal(err)
	}
	last := logs[len(logs)-1]
	if len(logs) != 2 || last.ActionTaken != "Slack message edited" || last.ActionBy != agent.ID.Hex() || last.ActionByType != store.CreatorAdmin {
		t.Errorf("logs: %+v", logs)
	}
	if err := s.AddLog(ctx, tk.ID, store.TeamScope("other"), agent, "x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("out of scope: %v", err)
	}
}

// An agent first known by address (created from the API or mail) is found
// by its Slack user id once Slack names the same address, rather than
// duplicated.
func TestFindOrCreateAgentLinksSlackUserByEmail(t *testing.T) {
	s := storetest.Open(t)
	ctx := context.Background()
	first, err := s.FindOrCreateAgent(ctx, "dana@support.test", "Dana", "")
	if err != nil {
		t.Fatal(err)
	}
	linked, err := s.FindOrCreateAgent(ctx, "Dana@Support.test", "Dana S.", "U0DANA")
	if err != nil || linked.ID != first.ID || linked.SlackUserID != "U0DANA" {
		t.Fatalf("link by email: %+v %v", linked, err)
	}
	bySlack, err := s.AgentBySlackUser(ctx, "U0DANA")
	if err != nil || bySlack.ID != first.ID || bySlack.SlackUserID != "U0DANA" {
		t.Errorf("agent by slack id: %+v %v", bySlack, err)
	}
}
