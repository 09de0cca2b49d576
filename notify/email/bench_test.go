package email

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ticketd/ticketd/notify/email/smtptest"
	"github.com/ticketd/ticketd/store"
)

// BenchmarkAdminReplyToSMTP measures the latency from an agent's reply
// (just before store.AddResponse) to the
// SMTP server accepting the mail, through the relay and the notifier, one
// reply at a time, over 10 tickets. It reports p50, p99 and max.
//
//	go test -run '^$' -bench AdminReplyToSMTP -benchtime 200x ./notify/email/
func BenchmarkAdminReplyToSMTP(b *testing.B) {
	e := newEnv(b, smtptest.Options{})
	// The relay as cmd runs it: signalled by writes, sweeping rarely.
	e.relay()
	o := e.options()
	o.NoTicketAck = true
	o.PollInterval = 30 * time.Second // no polling help: the ready signal must wake it
	e.start(o)
	tickets := make([]*store.Ticket, 10)
	for i := range tickets {
		tickets[i] = e.ticket(fmt.Sprintf("bench %d", i))
	}
	e.idle()

	lat := make([]time.Duration, 0, b.N)
	write := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		e.reply(tickets[i%len(tickets)], fmt.Sprintf("reply %d", i), false)
		write = append(write, time.Since(start))
		m := e.srv.WaitFor(b, i+1, 30*time.Second)[i]
		lat = append(lat, m.ReceivedAt.Sub(start))
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	pct := func(ds []time.Duration, p float64) time.Duration {
		return ds[min(len(ds)-1, int(float64(len(ds))*p))]
	}
	slices.Sort(lat)
	slices.Sort(write)
	b.ReportMetric(ms(pct(lat, 0.50)), "p50-ms")
	b.ReportMetric(ms(pct(lat, 0.99)), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
	// The share of the latency that is the reply's own store write.
	b.ReportMetric(ms(pct(write, 0.50)), "write-p50-ms")
}
