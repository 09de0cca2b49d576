package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/internal/testwait"
	"github.com/ticketd/ticketd/internal/upkeep"
	"github.com/ticketd/ticketd/notify/email/smtptest"
	"github.com/ticketd/ticketd/store"
	"github.com/ticketd/ticketd/store/storetest"
)

// multiYAML configures one of several daemons on the shared store uri/db,
// all reading the same IMAP mailbox and sending through the same SMTP
// server. The mailbox lease is short, so that the test sees a takeover
// soon after a kill, but not so short that a daemon slowed by a loaded
// machine (-race, parallel packages) loses it while alive; a delivery's
// claim outlasts a send at the SMTP timeout, or a slow send would be
// reclaimed and sent again while still in flight (seen: 5 of 300 in CI
// with 3 s claims). The SMTP timeout is well under the claim, and long
// enough that a loaded machine does not time out a send the server has
// accepted (which would send it again).
func multiYAML(t *testing.T, dir, uri, db string, imapPort, smtpPort int) string {
	t.Helper()
	cfg := emailYAML(dir, imapPort, smtpPort)
	for _, r := range [][2]string{
		{"log: {level: debug}", "log: {level: info}"},
		{`pollSchedule: "@every 1h"`, `pollSchedule: "@every 1h"` + "\n    mailboxLeaseTTL: 10s"},
		{"security: plain}", "security: plain, timeout: 10s}"},
		{"backoffBase: 100ms", "backoffBase: 100ms\n    lease: 30s\n    pollInterval: 1s"},
	} {
		if !strings.Contains(cfg, r[0]) {
			t.Fatalf("emailYAML has no %q to change", r[0])
		}
		cfg = strings.Replace(cfg, r[0], r[1], 1)
	}
	return cfg + fmt.Sprintf(`store: {uri: %q, database: %s}
auth: {jwtSecret: %s}
jobs:
  leaseTTL: 10s
  outboxSweep: {schedule: "@every 3s"}
`, uri, db, strings.Repeat("k", 32))
}

// mailboxState is what a daemon's /readyz says of the mailbox: reading,
// standby or starting ("" when it does not name it).
func mailboxState(t *testing.T, base string) string {
	t.Helper()
	_, m := readyz(t, base)
	data, _ := m["data"].(map[string]any)
	comps, _ := data["components"].([]any)
	for _, c := range comps {
		c := c.(map[string]any)
		if strings.HasPrefix(fmt.Sprint(c["name"]), "mailbox ") {
			if c["degraded"] == true {
				t.Errorf("the mailbox is reported degraded: %v", c)
			}
			return fmt.Sprint(c["state"])
		}
	}
	return ""
}

// waitProgress waits until count reaches want, failing only when it stops
// growing for testwait.Timeout: a long run on a slow machine is fine, a
// stall is not.
func waitProgress(t *testing.T, what string, want int, count func() int) {
	t.Helper()
	last := -1
	for last < want {
		testwait.For(t, fmt.Sprintf("%s to grow past %d (want %d)", what, last, want), func() bool {
			n := count()
			if n > last {
				last = n
				return true
			}
			return false
		})
	}
}

// Three daemons on one store (the embedded server shared by URI, or
// MONGODB_URI): 300 mails become 300 tickets, each acknowledged by mail,
// while the daemon reading the mailbox is killed (SIGKILL) midway and
// another takes the mailbox over once its lease expires.
func TestThreeDaemonsOneStore(t *testing.T) {
	const mails = 300
	uri, db := storetest.SharedURI(t)
	imapPort, mailbox := startIMAP(t)
	smtp := smtptest.Start(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "ticketd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	var daemons []daemon
	for i := range 3 {
		d := filepath.Join(dir, fmt.Sprint("d", i))
		os.MkdirAll(d, 0o700)
		cfg := filepath.Join(d, "ticketd.yaml")
		if err := os.WriteFile(cfg, []byte(multiYAML(t, d, uri, db, imapPort, smtp.Port())), 0o600); err != nil {
			t.Fatal(err)
		}
		base, proc := startBinary(t, bin, cfg)
		daemons = append(daemons, daemon{base, proc})
	}
	// The test's own view of the store.
	st, _ := storetest.OpenWith(t, store.OpenOptions{URI: uri, Database: db})
	ctx := context.Background()
	count := func(col string, filter bson.D) int {
		n, err := st.Database().Collection(col).CountDocuments(ctx, filter)
		if err != nil {
			t.Fatal(err)
		}
		return int(n)
	}

	reader := -1
	testwait.For(t, "one daemon reading the mailbox, two standing by", func() bool {
		reading, standby := 0, 0
		for i, d := range daemons {
			switch mailboxState(t, d.base) {
			case "reading":
				reading, reader = reading+1, i
			case "standby":
				standby++
			}
		}
		return reading == 1 && standby == 2
	})

	start := time.Now()
	for i := range mails {
		deliver(t, mailbox, fmt.Sprintf(`
From: Customer %[1]d <c%[1]d@customer.test>
To: support@example.com
Subject: Question %[1]d
Message-ID: <q%[1]d@customer.test>
Date: Tue, 24 Nov 2026 10:00:00 +0000
Content-Type: text/plain; charset=utf-8

Question number %[1]d.
`, i))
	}
	tickets := func() int { return count("tickets", bson.D{}) }
	waitProgress(t, "tickets before the kill", mails/3, tickets)

	// Kill the reader with SIGKILL: it neither releases its lease nor
	// finishes the message in flight.
	killed := daemons[reader]
	before, err := st.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := killed.proc.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed.proc.Wait()
	killedAt := time.Now()
	atKill := tickets()
	var survivors []daemon
	for i, d := range daemons {
		if i != reader {
			survivors = append(survivors, d)
		}
	}
	testwait.For(t, "a survivor reading the mailbox", func() bool {
		for _, d := range survivors {
			if mailboxState(t, d.base) == "reading" {
				return true
			}
		}
		return false
	})
	takeover := time.Since(killedAt)
	after, err := st.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	old, cur := imapLease(t, before), imapLease(t, after)
	if cur.Token <= old.Token || cur.Owner == old.Owner {
		t.Errorf("mailbox lease before the kill %+v, after %+v: want a new token and owner", old, cur)
	}

	waitProgress(t, "tickets", mails, tickets)
	if n := tickets(); n != mails {
		t.Errorf("%d tickets from %d mails", n, mails)
	}
	// Every mail is acknowledged; a notification is the same mail (the
	// same Message-ID) however often it is sent.
	acked := func() map[string]int {
		byID := map[string]int{}
		for _, m := range smtp.Messages() {
			byID[m.Header("Message-ID")]++
		}
		return byID
	}
	waitProgress(t, "acknowledgements", mails, func() int { return len(acked()) })
	testwait.For(t, "the outbox drained", func() bool { return count("outbox", bson.D{}) == 0 })
	elapsed := time.Since(start)
	byID, replied := acked(), map[string]bool{}
	dups := 0
	for _, m := range smtp.Messages() {
		replied[m.Header("In-Reply-To")] = true
	}
	for id, n := range byID {
		if n > 1 {
			dups += n - 1
			t.Logf("notification %s sent %d times", id, n)
		}
	}
	if len(byID) != mails || len(replied) != mails {
		t.Errorf("%d distinct notifications answering %d distinct mails, want %d and %d", len(byID), len(replied), mails, mails)
	}
	checkJobRanOnce(t, st, old.Owner, survivors[0].base, survivors[1].base)
	t.Logf("3 daemons, one killed at %d tickets: %d mails -> %d tickets and %d acknowledgements (%d sent twice) in %s; mailbox taken over %s after the kill (lease TTL 10s)",
		atKill, mails, tickets(), len(byID), dups, elapsed.Round(time.Millisecond), takeover.Round(time.Millisecond))
	// A kill -9 may resend what the killed daemon was sending (the same
	// Message-ID, so a mail client shows it once): its claim runs out and
	// a survivor sends it again. Nothing else is sent twice: a claim is
	// taken once (store/claimshared.go), a relay racing a completion is
	// dropped at the claim (dropDelivered), and a message the relay has
	// accepted is not resent for an error after it (notify/email/sender.go).
	if dups > 1 {
		t.Errorf("%d notifications sent more than once, want at most 1 (the send the kill interrupted)", dups)
	}
}

type daemon struct {
	base string
	proc *exec.Cmd
}

// checkJobRanOnce checks that each slot of the outbox sweep (every 3 s)
// ran on one daemon of the three: one run record per slot, each finished
// but the latest (running now) and the killed daemon's last, which may have
// died running; and that the slots were contended (the survivors were turned
// away from slots another daemon held or had run), so that once is the
// store's doing, not chance.
func checkJobRanOnce(t *testing.T, st *store.Store, killed string, survivors ...string) {
	t.Helper()
	cur, err := st.Database().Collection("jobRuns").Find(context.Background(), bson.D{{Key: "job", Value: upkeep.OutboxSweepJob}})
	if err != nil {
		t.Fatal(err)
	}
	var runs []store.JobRun
	if err := cur.All(context.Background(), &runs); err != nil {
		t.Fatal(err)
	}
	var latest time.Time
	for _, r := range runs {
		if r.Slot.After(latest) {
			latest = r.Slot
		}
	}
	slots, holders, unfinished := map[time.Time]int{}, map[string]int{}, 0
	for _, r := range runs {
		slots[r.Slot]++
		holders[r.Holder]++
		switch {
		case r.Outcome == store.JobOK:
		case r.Outcome == store.JobRunning && r.Slot.Equal(latest): // running now
		case r.Outcome == store.JobRunning && r.Holder == killed: // died running
			unfinished++
		default:
			t.Errorf("run %s by %s: %s %s", r.ID, r.Holder, r.Outcome, r.Error)
		}
	}
	for slot, n := range slots {
		if n != 1 {
			t.Errorf("slot %s ran %d times", slot, n)
		}
	}
	turnedAway := 0
	held := regexp.MustCompile(`ticketd_job_runs_total\{job="` + upkeep.OutboxSweepJob + `",outcome="(?:held|already-ran)"\} (\d+)`)
	for _, base := range survivors {
		for _, m := range held.FindAllStringSubmatch(string(scrape(t, base)), -1) {
			n, _ := strconv.Atoi(m[1])
			turnedAway += n
		}
	}
	if len(runs) < 3 || unfinished > 1 || turnedAway == 0 {
		t.Errorf("%d runs of the outbox sweep by %d daemons, %d unfinished, survivors turned away %d times; want several runs, at most the killed daemon's unfinished, and contention", len(runs), len(holders), unfinished, turnedAway)
	}
	t.Logf("outbox sweep: %d slots, each run once, by %d daemons; survivors turned away from a slot %d times", len(slots), len(holders), turnedAway)
}

// imapLease is the mailbox's lease among ls.
func imapLease(t *testing.T, ls []store.Lease) store.Lease {
	t.Helper()
	for _, l := range ls {
		if strings.HasPrefix(l.Name, "imap:") {
			return l
		}
	}
	t.Fatalf("no mailbox lease among %+v", ls)
	return store.Lease{}
}
