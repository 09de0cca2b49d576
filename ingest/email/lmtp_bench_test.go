package email

// Benchmarks of the LMTP path against the embedded store, each with the
// store's own work measured in the same run. Each iteration runs a fixed
// workload; run them once:
//
//	go test ./ingest/email/ -run '^$' -bench 'LMTP' -benchtime=1x

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ticketd/ticketd/store"
)

// rawTicket is the ticket a benchmark mail j opens, written straight to
// the store: the baseline.
func rawTicket(cust *store.Customer, j int) store.NewTicket {
	return store.NewTicket{
		Creator: store.Actor{ID: cust.ID, Type: store.CreatorCustomer}, TeamID: cust.TeamID,
		Category: DefaultCategory, Subject: fmt.Sprintf("Raw %d", j), Description: "Hello,\nsomething is broken.",
		Source: store.SourceEmail, SourceKey: fmt.Sprintf("email:raw-%d@customer.test", j), MessageID: fmt.Sprintf("<raw-%d@customer.test>", j),
	}
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkLMTPLatency sends 200 mails one at a time over one LMTP
// connection and measures DATA -> 250 -> the ticket read back from the
// store by its Message-ID (what the API reads), p50/p99; and in the same
// run the same ticket created and read back through the store directly.
func BenchmarkLMTPLatency(b *testing.B) {
	const n = 200
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		st := newStore(b)
		o := lmtpOptions(b)
		o.RateLimitPerHour = -1
		_, addr := startLMTP(b, st, o)
		c, _ := lmtpClient(b, addr)
		lat := make([]time.Duration, 0, n)
		for j := 0; j < n; j++ {
			id := fmt.Sprintf("<lat-%d-%d@customer.test>", i, j)
			raw := testMail{from: fmt.Sprintf("c%d@customer.test", j), subject: fmt.Sprintf("Latency %d", j), msgID: id}.bytes()
			start := time.Now()
			if err := lmtpSend(c, testBase, raw); err != nil {
				b.Fatal(err)
			}
			tid, err := st.TicketIDByMessageID(ctx, store.NormalizeMessageID(id))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := st.Ticket(ctx, tid, store.AllTickets); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}

		cust, _, err := st.FindOrCreateCustomer(ctx, "raw@customer.test", "Raw", "")
		if err != nil {
			b.Fatal(err)
		}
		base := make([]time.Duration, 0, n)
		for j := 0; j < n; j++ {
			start := time.Now()
			t, _, err := st.CreateTicket(ctx, rawTicket(cust, i*n+j))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := st.Ticket(ctx, t.ID, store.AllTickets); err != nil {
				b.Fatal(err)
			}
			base = append(base, time.Since(start))
		}
		slices.Sort(lat)
		slices.Sort(base)
		b.ReportMetric(millis(lat[n/2]), "p50-ms")
		b.ReportMetric(millis(lat[n*99/100]), "p99-ms")
		b.ReportMetric(millis(base[n/2]), "store-p50-ms")
		b.ReportMetric(millis(base[n*99/100]), "store-p99-ms")
	}
}

// BenchmarkLMTPThroughput sends 2,000 mails over 4 LMTP connections at
// once, and in the same run creates 2,000 tickets through the store from 4
// goroutines: the ratio is the LMTP path's share of the store's rate.
func BenchmarkLMTPThroughput(b *testing.B) {
	const n, conns = 2000, 4
	ctx := context.Background()
	body := "Hello,\r\nsomething is broken, details below.\r\n\r\n" + strings.Repeat("log line of some length\r\n", 40)
	for i := 0; i < b.N; i++ {
		st := newStore(b)
		o := lmtpOptions(b)
		o.RateLimitPerHour = -1
		src, addr := startLMTP(b, st, o)
		mails := make([][]byte, n)
		for j := range mails {
			mails[j] = testMail{from: fmt.Sprintf("c%d@customer.test", j%50), subject: fmt.Sprintf("Bulk %d", j), body: body}.bytes()
		}
		parallel := func(work func(k, j int) error) time.Duration {
			var wg sync.WaitGroup
			errs := make(chan error, conns)
			start := time.Now()
			for k := 0; k < conns; k++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := k; j < n; j += conns {
						if err := work(k, j); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
			return time.Since(start)
		}
		clients := make([]func([]byte) error, conns)
		for k := range clients {
			c, _ := lmtpClient(b, addr)
			clients[k] = func(raw []byte) error { return lmtpSend(c, testBase, raw) }
		}
		took := parallel(func(k, j int) error { return clients[k](mails[j]) })
		if s := src.Stats(); s.Tickets != n {
			b.Fatalf("%d tickets, want %d", s.Tickets, n)
		}
		lmtpRate := float64(n) / took.Seconds()

		cust, _, err := st.FindOrCreateCustomer(ctx, "raw@customer.test", "Raw", "")
		if err != nil {
			b.Fatal(err)
		}
		took = parallel(func(k, j int) error {
			_, _, err := st.CreateTicket(ctx, rawTicket(cust, i*n+j))
			return err
		})
		storeRate := float64(n) / took.Seconds()
		b.ReportMetric(lmtpRate, "lmtp-msgs/s")
		b.ReportMetric(storeRate, "store-inserts/s")
		b.ReportMetric(lmtpRate/storeRate, "ratio")
	}
}
