package slackout

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/ticketd/ticketd/internal/fakeclock"
	"github.com/ticketd/ticketd/internal/slackfake"
	"github.com/ticketd/ticketd/internal/testwait"
	"github.com/ticketd/ticketd/notify"
	"github.com/ticketd/ticketd/store"
	"github.com/ticketd/ticketd/store/storetest"
)

// TestRunnerWaitsRetryAfterThenPostsInOrder runs the sink under the shared
// runner: a 429 on the root message holds the ticket's deliveries for
// exactly Retry-After (on a fake clock), then the root and the response
// behind it go out in order.
func TestRunnerWaitsRetryAfterThenPostsInOrder(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clock := fakeclock.New(time.Now().UTC().Truncate(time.Millisecond))
	st, _ := storetest.OpenWith(t, store.OpenOptions{Now: clock.Now})
	if _, err := st.JoinDeployment(ctx, []string{Sink}); err != nil {
		t.Fatal(err)
	}
	f := slackfake.New(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := New(Options{Client: slack.New(slackfake.BotToken, slack.OptionAPIURL(f.APIURL())),
		Channel: slackfake.ChannelID, BotUserID: slackfake.BotUserID, Store: st, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	idle := make(chan struct{}, 1)
	r, err := notify.NewRunner(notify.Options{Sink: Sink, Now: clock.Now, After: clock.After,
		Idle: func() {
			select {
			case idle <- struct{}{}:
			default:
			}
		}}, st, a, log)
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- r.Run(ctx) }()
	defer func() { cancel(); <-stopped }()
	waitIdle := func(what string) {
		t.Helper()
		select {
		case <-idle:
		case <-time.After(testwait.Timeout):
			t.Fatalf("runner not idle after %s: %s", testwait.Timeout, what)
		}
	}
	waitIdle("started, nothing to do")

	cust, _, err := st.FindOrCreateCustomer(ctx, "ann@example.com", "Ann", "acme")
	if err != nil {
		t.Fatal(err)
	}
	f.RateLimitNext("chat.postMessage", 1, 7)
	tk, _, err := st.CreateTicket(ctx, store.NewTicket{Creator: store.Actor{ID: cust.ID, Type: store.CreatorCustomer},
		TeamID: "acme", Subject: "Rate limited", Description: "d", Source: store.SourceAPI})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.AddResponse(ctx, tk.ID, store.AllTickets, store.NewResponse{
		Author: store.Actor{ID: cust.ID, Type: store.CreatorCustomer}, Description: "more", Source: store.SourceAPI}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.RelayTicket(ctx, tk.ID); err != nil {
		t.Fatal(err)
	}
	f.WaitCalls(t, "chat.postMessage", 1) // the 429
	<-idle                                // booked, and waiting
	pending, err := st.Deliveries(ctx, store.DeliveryPending, 10)
	if err != nil {
		t.Fatal(err)
	}
	var head *store.Delivery
	for i := range pending {
		if pending[i].Event.Kind == store.EventTicketCreated {
			head = &pending[i]
		}
	}
	if head == nil || !strings.Contains(head.LastError, "rate limit") || !head.NextAttemptAt.Equal(clock.Now().Add(7*time.Second)) {
		t.Fatalf("after the 429: %+v, want a retry at now+7s (%v)", head, clock.Now().Add(7*time.Second))
	}
	if n := len(f.CallsTo("chat.postMessage")); n != 1 {
		t.Fatalf("%d posts before Retry-After passed", n)
	}
	clock.Advance(7 * time.Second)
	f.Until(t, "root and response posted", func() bool {
		roots := f.Roots(slackfake.ChannelID)
		return len(roots) == 1 && len(f.Replies(slackfake.ChannelID, roots[0].TS)) == 1
	})
	if s := r.Stats(); s.Dead != 0 {
		t.Fatalf("stats %+v", s)
	}
}
