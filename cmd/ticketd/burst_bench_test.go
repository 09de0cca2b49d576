package main

// Issue 9's burst figure, measured against the real daemon: serve with the
// email bridge, reading an IMAP server (go-imap's in-memory one, over TCP)
// and mailing its acknowledgements to a local SMTP server, with the outbox
// relay running, as an operator runs it. BENCHMARKS.md quotes it; no timing
// is asserted anywhere.
//
//	go test ./cmd/ticketd/ -run '^$' -bench EmailBurst -benchtime 1x -count 3 -timeout 60m

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/ticketd/ticketd/notify/email/smtptest"
	"github.com/ticketd/ticketd/store"
)

// burstMails are appended to the mailbox at once, from burstSenders;
// -burst.mails makes a quicker run for profiling.
var burstMails = flag.Int("burst.mails", 2000, "mails in BenchmarkEmailBurst's burst")

// burstAcks makes BenchmarkEmailBurst also wait for every acknowledgement
// mail (all-acks-ms, store-ops-with-acks/mail). Off by default: the
// notifier's claims scan the whole outbox on the embedded server, so
// 2,000 queued deliveries take many minutes to drain (issue 9).
var burstAcks = flag.Bool("burst.acks", false, "also wait for every acknowledgement mail")

const (
	burstSenders = 50
	// burstRawWriters is how many goroutines write the baseline's tickets
	// in its concurrent form.
	burstRawWriters = 4
)

// BenchmarkEmailBurst: 2,000 mails from 50 senders appended to the
// daemon's IDLE-watched mailbox at once, until every one is stored and
// acknowledged on the IMAP server (the daemon flags a mail \Seen only once
// it is stored), then checked through the API: 2,000 tickets, one per mail.
// The daemon's notifier mails an acknowledgement for each ticket meanwhile,
// as in production. Baseline, in the same iteration: the same 2,000 tickets
// (subject, description, Message-ID, source key, the 50 customers) written
// with store.CreateTicket into a fresh embedded store, once by one
// goroutine and once by burstRawWriters; the faster is the baseline.
//
// Reported besides the ratio: the store commands the daemon sent per mail
// (relay and notifier included) up to the last ticket; how many
// acknowledgement mails went out meanwhile; the CPU the process used
// during the burst, in cores; with -burst.acks, when the last
// acknowledgement mail was accepted by SMTP and the store commands per
// mail up to then.
func BenchmarkEmailBurst(b *testing.B) {
	var burst, all, raw1, rawN latencies
	var opsTickets, opsAll, cores, acked float64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		r := runBurst(b, i)
		b.StartTimer()
		burst = append(burst, r.tickets)
		all = append(all, r.acks)
		opsTickets += r.opsTickets / float64(b.N)
		opsAll += r.opsAll / float64(b.N)
		cores += r.cores / float64(b.N)
		acked += float64(r.acked) / float64(b.N)
		b.StopTimer()
		raw1 = append(raw1, rawBurst(b, i, 1))
		rawN = append(rawN, rawBurst(b, i, burstRawWriters))
		b.StartTimer()
	}
	b.StopTimer()
	med := burst.quantile(0.5)
	base := min(raw1.quantile(0.5), rawN.quantile(0.5))
	b.ReportMetric(ms(med), "burst-ms")
	b.ReportMetric(float64(*burstMails)/med.Seconds(), "mails/s")
	b.ReportMetric(float64(*burstMails)/raw1.quantile(0.5).Seconds(), "raw-1-tickets/s")
	b.ReportMetric(float64(*burstMails)/rawN.quantile(0.5).Seconds(), fmt.Sprintf("raw-%d-tickets/s", burstRawWriters))
	b.ReportMetric(base.Seconds()/med.Seconds(), "throughput-ratio")
	b.ReportMetric(opsTickets, "store-ops/mail")
	b.ReportMetric(acked, "acks-mailed-meanwhile")
	if *burstAcks {
		b.ReportMetric(ms(all.quantile(0.5)), "all-acks-ms")
		b.ReportMetric(opsAll, "store-ops-with-acks/mail")
	}
	b.ReportMetric(cores, "cpu-cores")
}

// burstResult is one burst through the daemon.
type burstResult struct {
	tickets    time.Duration // append of the first mail to the last one stored and acknowledged
	acks       time.Duration // ... to the last acknowledgement mail accepted by SMTP
	opsTickets float64       // store commands per mail, up to the last ticket
	opsAll     float64       // ... up to the last acknowledgement mail
	acked      int           // acknowledgement mails sent by the last ticket
	cores      float64       // process CPU time / wall time, during the burst
}

// runBurst starts a daemon on an empty store, warms it with one mail, and
// appends round's burst.
func runBurst(tb testing.TB, round int) burstResult {
	tb.Helper()
	imapPort, mailbox := startIMAP(tb)
	mail := smtptest.Start(tb)
	dir := tb.TempDir()
	cfgPath := filepath.Join(dir, "ticketd.yaml")
	cfgText := strings.Replace(emailYAML(dir, imapPort, mail.Port()), "    pollSchedule:", "    rateLimitPerHour: -1\n    pollSchedule:", 1)
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		tb.Fatal(err)
	}
	cfg, err := loadConfig(cfgPath, noEnv)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Log.Level = "warn" // a line for every mail would be measured too
	ctx := context.Background()
	stores := make(chan *store.Store, 1)
	base, stop := serveInProcess(tb, ctx, cfg, &serveHooks{store: func(st *store.Store) { stores <- st }})
	defer stop()
	st := <-stores
	admin := tokenFor(tb, cfgPath, "-role", "admin")

	// Warm-up: one mail through the whole path, acknowledgement included,
	// so that the burst meets a daemon idling on its mailbox.
	appendRaw(tb, mailbox, burstMail(-1, 0))
	if !waitSeen(tb, mailbox, 0) {
		tb.Fatal("the warm-up mail was not acknowledged")
	}
	mail.WaitFor(tb, 1, time.Minute)

	raws := make([][]byte, *burstMails)
	for j := range raws {
		raws[j] = burstMail(round, j)
	}
	counts0 := st.CommandCounts()
	ops0 := sumCounts(counts0)
	cpu0 := cpuTime()
	start := time.Now()
	for _, raw := range raws {
		appendRaw(tb, mailbox, raw)
	}
	if !waitSeen(tb, mailbox, 30*time.Minute) {
		m, _ := http.Get(base + "/metrics")
		var sb strings.Builder
		if m != nil {
			var buf bytes.Buffer
			buf.ReadFrom(m.Body)
			for _, l := range strings.Split(buf.String(), "\n") {
				if strings.HasPrefix(l, "ticketd_") {
					sb.WriteString(l + "\n")
				}
			}
		}
		tb.Fatalf("not all mails acknowledged; the daemon's counters:\n%s", sb.String())
	}
	var r burstResult
	r.tickets = time.Since(start)
	r.cores = (cpuTime() - cpu0).Seconds() / r.tickets.Seconds()
	counts := st.CommandCounts()
	r.opsTickets = float64(sumCounts(counts)-ops0) / float64(*burstMails)
	for name, n := range counts {
		tb.Logf("%s: %.2f per mail", name, float64(n-counts0[name])/float64(*burstMails))
	}
	r.acked = len(mail.Messages()) - 1
	if *burstAcks {
		mail.WaitFor(tb, *burstMails+1, 30*time.Minute)
		r.acks = time.Since(start)
		r.opsAll = float64(sumCounts(st.CommandCounts())-ops0) / float64(*burstMails)
	}

	checkBurstTickets(tb, base, admin, round)
	return r
}

// checkBurstTickets reads every ticket back through the API: one per mail
// of the round, and the warm-up's. Every mail was acknowledged, and the
// daemon acknowledges only what it stored, so there is nothing to wait for.
func checkBurstTickets(tb testing.TB, base, admin string, round int) {
	tb.Helper()
	seen := map[string]int{}
	for offset := 0; ; offset += 50 {
		req, _ := http.NewRequest("GET", fmt.Sprintf("%s/api/ticket/admin-fetch?limit=50&offset=%d", base, offset), nil)
		req.Header.Set("Authorization", "Bearer "+admin)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			tb.Fatal(err)
		}
		var page struct {
			Data []struct {
				Subject string `json:"subject"`
			} `json:"data"`
		}
		err = json.NewDecoder(res.Body).Decode(&page)
		res.Body.Close()
		if err != nil || res.StatusCode != http.StatusOK {
			tb.Fatalf("admin-fetch at %d: %d %v", offset, res.StatusCode, err)
		}
		for _, t := range page.Data {
			seen[t.Subject]++
		}
		if len(page.Data) < 50 {
			break
		}
	}
	if len(seen) != *burstMails+1 {
		tb.Fatalf("%d distinct tickets, want %d", len(seen), *burstMails+1)
	}
	for j := 0; j < *burstMails; j++ {
		if n := seen[burstSubject(round, j)]; n != 1 {
			tb.Fatalf("mail %d made %d tickets", j, n)
		}
	}
}

// waitSeen waits until no mail in the inbox lacks \Seen, polling the IMAP
// server's own state (not the daemon's); a zero timeout means a minute.
func waitSeen(tb testing.TB, mailbox *imapmemserver.User, timeout time.Duration) bool {
	tb.Helper()
	if timeout == 0 {
		timeout = time.Minute
	}
	deadline := time.Now().Add(timeout)
	poll := time.NewTicker(2 * time.Millisecond) // the figure's resolution
	defer poll.Stop()
	for {
		s, err := mailbox.Status("INBOX", &imap.StatusOptions{NumUnseen: true})
		if err != nil {
			tb.Fatal(err)
		}
		if *s.NumUnseen == 0 {
			return true
		}
		if time.Now().After(deadline) {
			tb.Logf("%d mails still unseen after %s", *s.NumUnseen, timeout)
			return false
		}
		<-poll.C
	}
}

func appendRaw(tb testing.TB, mailbox *imapmemserver.User, raw []byte) {
	tb.Helper()
	if _, err := mailbox.Append("INBOX", bytes.NewReader(raw), &imap.AppendOptions{}); err != nil {
		tb.Fatal(err)
	}
}

func tokenFor(tb testing.TB, cfgPath string, args ...string) string {
	tb.Helper()
	var out, errb strings.Builder
	if err := run(context.Background(), append([]string{"token", "-config", cfgPath}, args...), &out, &errb, noEnv); err != nil {
		tb.Fatalf("token: %v %s", err, errb.String())
	}
	return strings.TrimSpace(out.String())
}

func sumCounts(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// The burst's mails: each sender writes a few paragraphs and signs; every
// third mail comes as HTML with a plain-text alternative, as most mail
// programs send it. The signature is stripped from the ticket's
// description, so each mail also keeps its whole text as
// original-message.txt, as real mail does.
func burstSender(j int) (name, addr string) {
	s := j % burstSenders
	return fmt.Sprintf("Customer %d", s), fmt.Sprintf("c%d@customer%d.test", s, s%7)
}

func burstSubject(round, j int) string {
	return fmt.Sprintf("Burst %d mail %d: the invoice export stops halfway", round, j)
}

func burstMessageID(round, j int) string { return fmt.Sprintf("<burst-%d-%d@customer.test>", round, j) }

// burstMailText is what the customer wrote, the ticket's description.
func burstMailText(round, j int) string {
	return fmt.Sprintf("Hello,\n\nsince this morning the invoice export stops halfway through (mail %d of burst %d). "+
		"The progress bar reaches about 40 percent and then nothing happens; after ten minutes the page "+
		"shows a timeout. Yesterday the same export of about 1,200 invoices worked fine.\n\n"+
		"What I tried: a different browser, a smaller date range (one week instead of one month), and "+
		"logging out and in again. The smaller range works, the month does not.\n\n"+
		"Could you have a look? We need the export for the accounting deadline on Friday. "+
		"The account is the one this mail comes from.\n\nThanks a lot", j, round)
}

const burstSignature = "Customer Support Team Lead\nExample Customer Ltd, 12 High Street, Springfield\n+1 555 0100 | www.customer.test"

func burstMail(round, j int) []byte {
	name, addr := burstSender(j)
	text := burstMailText(round, j)
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s <%s>\r\nTo: support@example.com\r\nSubject: %s\r\nMessage-ID: %s\r\n"+
		"Date: Tue, 01 Dec 2026 10:%02d:%02d +0000\r\nMIME-Version: 1.0\r\n",
		name, addr, burstSubject(round, j), burstMessageID(round, j), (j/60)%60, j%60)
	plain := strings.ReplaceAll(text+"\n"+name+"\n\n-- \n"+name+"\n"+burstSignature+"\n", "\n", "\r\n")
	if j%3 != 2 {
		b.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
		b.WriteString(plain)
		return []byte(b.String())
	}
	b.WriteString("Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n--b1\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	b.WriteString(plain)
	b.WriteString("\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n<html><body>")
	for _, p := range strings.Split(text+"\n"+name, "\n\n") {
		b.WriteString("<p>" + strings.ReplaceAll(p, "\n", "<br>") + "</p>\r\n")
	}
	b.WriteString("<div class=\"signature\">-- <br>" + name + "<br>" + strings.ReplaceAll(burstSignature, "\n", "<br>") + "</div></body></html>\r\n--b1--\r\n")
	return []byte(b.String())
}

// rawBurst writes round's tickets straight into a fresh embedded store
// with writers goroutines, as the mail bridge would write them (customers
// found or created by address, then CreateTicket with the mail's keys), and
// returns how long it took.
func rawBurst(tb testing.TB, round, writers int) time.Duration {
	tb.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, store.OpenOptions{DataDir: filepath.Join(tb.TempDir(), "raw"), Database: "ticketd", Logger: quietLog()})
	if err != nil {
		tb.Fatal(err)
	}
	defer st.Close(context.WithoutCancel(ctx))
	return timeWriters(tb, *burstMails, writers, func(j int) error {
		name, addr := burstSender(j)
		cust, _, err := st.FindOrCreateCustomer(ctx, addr, name, "")
		if err != nil {
			return err
		}
		_, _, err = st.CreateTicket(ctx, store.NewTicket{
			Creator: store.Actor{ID: cust.ID, Type: store.CreatorCustomer}, TeamID: cust.TeamID,
			Category: "Support", Subject: burstSubject(round, j), Description: burstMailText(round, j) + "\n" + name,
			Source: store.SourceEmail, SourceKey: "email:" + store.NormalizeMessageID(burstMessageID(round, j)),
			MessageID: burstMessageID(round, j),
		})
		return err
	})
}
