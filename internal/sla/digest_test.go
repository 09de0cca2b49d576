package sla

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/slack-go/slack"

	"github.com/ticketd/ticketd/internal/slackfake"
	"github.com/ticketd/ticketd/internal/slackui"
	"github.com/ticketd/ticketd/store"
	"github.com/ticketd/ticketd/store/storetest"
)

func (e *env) digest(st DigestStore, api Poster) *Digest {
	e.t.Helper()
	d, err := NewDigest(st, api, DigestOptions{Channel: slackfake.ChannelID, Targets: e.targets, PerSection: 2, Now: e.clock.Now, Logger: e.log})
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

// bindRoot posts a root message for the ticket in the agents' channel and
// binds it, as the Slack sink does.
func (e *env) bindRoot(st *store.Store, tk *store.Ticket) string {
	e.t.Helper()
	ch, ts, err := e.client.PostMessageContext(e.ctx, slackfake.ChannelID, slack.MsgOptionText(tk.Subject, false))
	if err != nil {
		e.t.Fatal(err)
	}
	if err := st.BindThread(e.ctx, tk.ID, store.ThreadSlackAgents, slackui.MessageKey(ch, ts)); err != nil {
		e.t.Fatal(err)
	}
	return ts
}

// digests returns the digest messages in the agents' channel.
func (e *env) digests() []slackfake.Message {
	var out []slackfake.Message
	for _, m := range e.fake.Roots(slackfake.ChannelID) {
		if m.Metadata != nil && m.Metadata.EventType == DigestMetadataType {
			out = append(out, m)
		}
	}
	return out
}

func digestText(t *testing.T, m slackfake.Message) string {
	t.Helper()
	text, err := slackfake.BlocksText(m.Blocks)
	if err != nil {
		t.Fatal(err)
	}
	return text
}

// The digest lists the missed targets, the unassigned and the open
// tickets, each bounded with "and N more", linking their threads; it is
// posted once per day, whoever runs it how often, and again the next day.
func TestDigestContentAndOncePerDay(t *testing.T) {
	e := newEnv(t)
	e.at(1, 9, 0)
	late := e.ticket("Server down", store.PriorityUrgent) // due 10:00: missed by the digest
	lateRoot := e.bindRoot(e.st, late)
	e.at(2, 9, 0)
	assigned := e.ticket("Assigned one", store.PriorityLow)
	if _, err := e.st.UpdateTicket(e.ctx, assigned.ID, store.AllTickets, store.TicketUpdate{AssigneeID: &e.agent.ID},
		store.Actor{ID: e.agent.ID, Type: store.CreatorAdmin}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.st.AddResponse(e.ctx, assigned.ID, store.AllTickets, store.NewResponse{
		Author: store.Actor{ID: e.agent.ID, Type: store.CreatorAdmin}, Description: "looking"}); err != nil {
		t.Fatal(err)
	}
	e.ticket("New one", store.PriorityLow)
	e.ticket("Newer one", store.PriorityLow)
	done := e.ticket("Done", store.PriorityUrgent)
	st := store.StatusClosed
	if _, err := e.st.UpdateTicket(e.ctx, done.ID, store.AllTickets, store.TicketUpdate{Status: &st},
		store.Actor{ID: e.agent.ID, Type: store.CreatorAdmin}); err != nil {
		t.Fatal(err)
	}

	e.at(3, 8, 0) // Thursday morning
	d := e.digest(e.st, e.client)
	e.run(d)
	e.run(d)
	e.run(e.digest(e.st, e.client)) // another daemon
	got := e.digests()
	if len(got) != 1 {
		t.Fatalf("%d digests, want 1", len(got))
	}
	text := digestText(t, got[0])
	link := "https://" + slackfake.TeamDomain + ".slack.com/archives/" + slackfake.ChannelID + "/p" + strings.ReplaceAll(lateRoot, ".", "")
	for _, want := range []string{
		"Support digest for Thursday 3 December 2026",
		"*Missed first-response target* (1)\n• <" + link + "|#1 Server down> · urgent, due Tue 1 Dec 10:00, unassigned",
		"*Unassigned* (3)\n• <" + link + "|#1 Server down> · urgent, opened 47 hours ago\n• #3 New one · low, opened 23 hours ago\n…and 1 more",
		"*Open* (4)\n• <" + link + "|#1 Server down>",
		"• #2 Assigned one · low, opened 23 hours ago\n…and 2 more",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("digest lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "Done") {
		t.Errorf("a closed ticket is listed:\n%s", text)
	}

	// A restart on the same data, the same morning: nothing new.
	if err := e.st.Close(e.ctx); err != nil {
		t.Fatal(err)
	}
	st2, _ := storetest.OpenWith(t, store.OpenOptions{Now: e.clock.Now, URI: e.opts.URI, Database: e.opts.Database, DataDir: e.opts.DataDir})
	e.at(3, 11, 0)
	e.run(e.digest(st2, e.client))
	if n := len(e.digests()); n != 1 {
		t.Fatalf("after a restart: %d digests, want 1", n)
	}
	e.at(4, 8, 0)
	e.run(e.digest(st2, e.client))
	if n := len(e.digests()); n != 2 {
		t.Fatalf("next morning: %d digests, want 2", n)
	}
}

// lostAnswer posts to Slack but reports a failure, as a connection lost
// after Slack accepted the message would.
type lostAnswer struct {
	Poster
	lost bool
}

func (l *lostAnswer) PostMessageContext(ctx context.Context, ch string, opts ...slack.MsgOption) (string, string, error) {
	_, _, err := l.Poster.PostMessageContext(ctx, ch, opts...)
	if err == nil && !l.lost {
		l.lost = true
		return "", "", errors.New("connection reset after the post")
	}
	return "", "", err
}

// A run that posted but died before recording it leaves the day's claim;
// after the lease the next run finds the digest in the channel and does
// not post it again.
func TestDigestPostedBeforeACrashIsNotRepeated(t *testing.T) {
	e := newEnv(t)
	e.ticket("one", store.PriorityLow)
	e.at(2, 8, 0)
	flaky := &lostAnswer{Poster: e.client}
	if err := e.digest(e.st, flaky).Run(e.ctx); err == nil {
		t.Fatal("the lost answer went unnoticed")
	}
	e.run(e.digest(e.st, e.client)) // within the lease: the claim holds
	e.clock.Advance(DefaultDigestLease)
	e.run(e.digest(e.st, e.client))
	if n := len(e.digests()); n != 1 {
		t.Fatalf("%d digests, want 1", n)
	}
	e.clock.Advance(DefaultDigestLease) // and it is done now: no more searching
	calls := len(e.fake.CallsTo("conversations.history"))
	e.run(e.digest(e.st, e.client))
	if n := len(e.fake.CallsTo("conversations.history")); n != calls {
		t.Errorf("a finished digest was searched for again")
	}
}
