package slackout

import (
	"slices"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/ticketd/ticketd/internal/slackfake"
	"github.com/ticketd/ticketd/store"
)

// BenchmarkRootMessage measures a ticket created through the store until
// its root message is in the fake Slack (create, then the sink's delivery:
// load, render, chat.postMessage, bind), against a bare chat.postMessage to
// the same fake in the same run. Each iteration does one of each.
//
//	go test -run '^$' -bench RootMessage -benchtime 300x ./notify/slackout/
func BenchmarkRootMessage(b *testing.B) {
	e := newEnv(b)
	api := e.a.api
	var bare, root []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, _, err := api.PostMessageContext(e.ctx, slackfake.ChannelID, slack.MsgOptionText("baseline", false)); err != nil {
			b.Fatal(err)
		}
		bare = append(bare, time.Since(start))

		start = time.Now()
		tk, _, err := e.st.CreateTicket(e.ctx, store.NewTicket{
			Creator: store.Actor{ID: e.customer.ID, Type: store.CreatorCustomer, Via: store.SourceAPI},
			TeamID:  "acme", Category: "Billing", Subject: "Bench", Description: "A ticket for the benchmark.",
			Source: store.SourceAPI,
		})
		if err != nil {
			b.Fatal(err)
		}
		if err := e.a.Deliver(e.ctx, &store.Delivery{Sink: Sink, Event: tk.Outbox[0], Attempts: 1}); err != nil {
			b.Fatal(err)
		}
		root = append(root, time.Since(start))
	}
	b.StopTimer()
	if got := len(e.fake.Roots(slackfake.ChannelID)); got != 2*b.N {
		b.Fatalf("%d messages in the channel, want %d", got, 2*b.N)
	}
	p50b, p99b := quantiles(bare)
	p50r, p99r := quantiles(root)
	b.ReportMetric(float64(p50b.Microseconds()), "bare-p50-µs")
	b.ReportMetric(float64(p99b.Microseconds()), "bare-p99-µs")
	b.ReportMetric(float64(p50r.Microseconds()), "root-p50-µs")
	b.ReportMetric(float64(p99r.Microseconds()), "root-p99-µs")
	b.ReportMetric(float64(p50r)/float64(p50b), "p50-ratio")
}

// quantiles returns the median and the 99th percentile.
func quantiles(d []time.Duration) (p50, p99 time.Duration) {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2], s[min(len(s)-1, len(s)*99/100)]
}
