package email

// Benchmarks of the IMAP path against the in-process server and the
// embedded store. Each iteration runs a fixed workload; run them once:
//
//	go test ./ingest/email/ -run '^$' -bench 'IMAP' -benchtime=1x

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ticketd/ticketd/store"
)

// BenchmarkIMAPIdleLatency appends 200 messages one at a time, each once the
// source is idling, and measures APPEND -> ticket stored (p50, p99).
func BenchmarkIMAPIdleLatency(b *testing.B) {
	const n = 200
	for i := 0; i < b.N; i++ {
		h := startIMAP(b, imapOpts{})
		st := newStore(b)
		o := h.baseOptions(b)
		o.RateLimitPerHour = -1
		src := startSource(b, st, o)
		lat := make([]time.Duration, 0, n)
		idles := 0
		for j := 0; j < n; j++ {
			// Wait for the source to be idling again: from "+ idling" on,
			// the harness announces every append (see harnessSession).
			waitFor(b, "IDLE", func() bool { return strings.Count(h.debug.String(), "+ idling") > idles })
			idles = strings.Count(h.debug.String(), "+ idling")
			start := time.Now()
			h.appendMail("INBOX", testMail{from: fmt.Sprintf("c%d@customer.test", j), subject: fmt.Sprintf("Latency %d", j)}.bytes())
			for src.Stats().Tickets < uint64(j+1) {
				time.Sleep(100 * time.Microsecond)
			}
			lat = append(lat, time.Since(start))
		}
		src.stop(b)
		slices.Sort(lat)
		b.ReportMetric(float64(lat[n/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[n*99/100].Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(lat[n-1].Microseconds())/1000, "max-ms")
	}
}

// BenchmarkIMAPSustainedIngest reads 2,000 waiting messages into tickets,
// and in the same run measures the store's raw CreateTicket rate, so the
// IMAP path's overhead shows as a ratio.
func BenchmarkIMAPSustainedIngest(b *testing.B) {
	const n = 2000
	for i := 0; i < b.N; i++ {
		h := startIMAP(b, imapOpts{})
		st := newStore(b)
		for j := 0; j < n; j++ {
			h.appendMail("INBOX", testMail{from: fmt.Sprintf("c%d@customer.test", j%50), subject: fmt.Sprintf("Bulk %d", j),
				body: "Hello,\r\nsomething is broken, details below.\r\n\r\n" + strings.Repeat("log line of some length\r\n", 40)}.bytes())
		}
		o := h.baseOptions(b)
		o.RateLimitPerHour = -1
		start := time.Now()
		src := startSource(b, st, o)
		for src.Stats().Tickets < n {
			if time.Since(start) > 10*time.Minute {
				b.Fatalf("only %d tickets after 10 minutes", src.Stats().Tickets)
			}
			time.Sleep(5 * time.Millisecond)
		}
		imapRate := float64(n) / time.Since(start).Seconds()
		src.stop(b)

		raw := newStore(b)
		ctx := context.Background()
		cust, _, err := raw.FindOrCreateCustomer(ctx, "raw@customer.test", "Raw", "")
		if err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		for j := 0; j < n; j++ {
			_, _, err := raw.CreateTicket(ctx, store.NewTicket{
				Creator: store.Actor{ID: cust.ID, Type: store.CreatorCustomer}, TeamID: cust.TeamID,
				Category: DefaultCategory, Subject: fmt.Sprintf("Raw %d", j), Description: "Hello", Source: store.SourceEmail,
				SourceKey: fmt.Sprintf("email:raw-%d", j),
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		storeRate := float64(n) / time.Since(start).Seconds()
		b.ReportMetric(imapRate, "imap-msgs/s")
		b.ReportMetric(storeRate, "store-inserts/s")
		b.ReportMetric(imapRate/storeRate, "ratio")
	}
}
