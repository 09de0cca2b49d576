package slackout

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/ticketd/ticketd/internal/slackfake"
	"github.com/ticketd/ticketd/notify"
	"github.com/ticketd/ticketd/store"
)

// BenchmarkRootMessage measures a ticket created through the store until
// its root message is in the fake Slack, through the whole path (the
// relay, the shared runner's claim, the sink: load, render,
// chat.postMessage, bind), against a bare chat.postMessage to the same
// fake in the same run. Each iteration does one of each.
//
//	go test -run '^$' -bench RootMessage -benchtime 300x ./notify/slackout/
func BenchmarkRootMessage(b *testing.B) {
	e := newEnv(b)
	ctx, cancel := context.WithCancel(e.ctx)
	if _, err := e.st.JoinDeployment(ctx, []string{Sink}); err != nil {
		b.Fatal(err)
	}
	r, err := notify.NewRunner(notify.Options{Sink: Sink}, e.st, e.a, e.a.log)
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = e.st.RunRelay(ctx, time.Minute) }()
	go func() { defer wg.Done(); _ = r.Run(ctx) }()
	defer func() { cancel(); wg.Wait() }()

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
		if _, _, err := e.st.CreateTicket(e.ctx, store.NewTicket{
			Creator: store.Actor{ID: e.customer.ID, Type: store.CreatorCustomer, Via: store.SourceAPI},
			TeamID:  "acme", Category: "Billing", Subject: "Bench", Description: "A ticket for the benchmark.",
			Source: store.SourceAPI,
		}); err != nil {
			b.Fatal(err)
		}
		want := 2 * (i + 1) // each iteration adds the baseline post and a root
		e.fake.Until(b, "the root message", func() bool { return len(e.fake.Roots(slackfake.ChannelID)) == want })
		root = append(root, time.Since(start))
	}
	b.StopTimer()
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
