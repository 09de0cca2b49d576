package slackloop

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/ticketd/ticketd/ingest/slackin"
	"github.com/ticketd/ticketd/internal/slackfake"
)

// BenchmarkIntakeAck measures a customer's Slack message until the
// acknowledgement is in their thread: the bridge handles the event (users
// lookups, customer, ticket stored), the relay queues the ticket.created
// delivery, the sink's runner claims it and posts the agents' root and the
// acknowledgement. Against a bare chat.postMessage to the same fake in the
// same run; each iteration does one of each.
//
//	go test -run '^$' -bench IntakeAck -benchtime 200x ./internal/slackloop/
func BenchmarkIntakeAck(b *testing.B) {
	l := newLoop(b, func(o *slackin.Options) { o.NewTicketsPerHour = -1 })
	var bare, ack []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, _, err := l.api.PostMessageContext(l.ctx, betaCh, slack.MsgOptionText("baseline", false)); err != nil {
			b.Fatal(err)
		}
		bare = append(bare, time.Since(start))

		env := l.f.MessageEvent(slackfake.MessageSpec{Channel: acmeCh, User: caraID, Text: "Question " + strconv.Itoa(i)})
		start = time.Now()
		l.deliver(env)
		l.f.Until(b, "the acknowledgement", func() bool { return len(l.f.Replies(acmeCh, env.MessageTS)) == 1 })
		ack = append(ack, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(bare)
	slices.Sort(ack)
	at := func(d []time.Duration, q int) float64 { return float64(d[min(len(d)-1, len(d)*q/100)].Microseconds()) }
	b.ReportMetric(at(bare, 50), "bare-p50-µs")
	b.ReportMetric(at(bare, 99), "bare-p99-µs")
	b.ReportMetric(at(ack, 50), "ack-p50-µs")
	b.ReportMetric(at(ack, 99), "ack-p99-µs")
	b.ReportMetric(at(ack, 50)/at(bare, 50), "p50-ratio")
}
