package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/ticketd/ticketd/store"
)

// benchDatabase is the database the seeded stores hold: the daemon's
// default, so the built binary serves them without a store section.
const benchDatabase = "ticketd"

// seeded is a store of n corpus tickets, made once and kept under the
// cache directory: seeding 100,000 tickets through the store takes many
// minutes, so every run after the first reuses it (on a copy, when the run
// writes).
type seeded struct {
	n    int
	root string // <cache>/<n>-c<corpus>-<label>
	info seedInfo
}

// seedInfo is what the cache remembers of how a store was made.
type seedInfo struct {
	Tickets   int           `json:"tickets"`
	Responses int           `json:"responses"`
	Took      time.Duration `json:"took"`
	Workers   int           `json:"workers"`
	Bulk      int           `json:"bulk"` // inserted through the driver
	BulkTook  time.Duration `json:"bulkTook"`
	ViaAPI    int           `json:"viaAPI"` // made through the store API
	APITook   time.Duration `json:"apiTook"`
	// BusyRetries counts store operations the embedded server refused
	// with SQLITE_BUSY ("database is locked") and the seeding repeated.
	BusyRetries int       `json:"busyRetries"`
	Load        string    `json:"load"` // /proc/loadavg when the seeding ended
	At          time.Time `json:"at"`
	Label       string    `json:"label"`
}

func (s *seeded) dataDir() string { return filepath.Join(s.root, "data") }
func (s *seeded) idsFile() string { return filepath.Join(s.root, "ids") }

// ids returns the seeded tickets' ids in the order they were made.
func (s *seeded) ids() ([]bson.ObjectID, error) {
	f, err := os.Open(s.idsFile())
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ids []bson.ObjectID
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		id, err := bson.ObjectIDFromHex(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.idsFile(), err)
		}
		ids = append(ids, id)
	}
	return ids, sc.Err()
}

// copyData copies the seeded data directory to a fresh temporary one for a
// run that writes (or whose store writes at open); the caller removes it.
func (s *seeded) copyData() (string, error) {
	dir, err := os.MkdirTemp("", "ticketd-bench-run-")
	if err != nil {
		return "", err
	}
	if out, err := exec.Command("cp", "-a", s.dataDir(), filepath.Join(dir, "data")).CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("copy %s: %w: %s", s.dataDir(), err, out)
	}
	return filepath.Join(dir, "data"), nil
}

// storeLabel names the store code that seeds: the git tree of store/, so
// a store seeded by another version of the code (one that keeps other
// indexes beside the documents) is not taken for this one's.
func storeLabel() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD:store").Output()
	if err != nil {
		return "nogit"
	}
	label := strings.TrimSpace(string(out))
	// Uncommitted changes to store/ make another store too.
	if diff, err := exec.Command("git", "diff", "HEAD", "--", "store").Output(); err == nil && len(diff) > 0 {
		label += fmt.Sprintf("-dirty%x", sha256.Sum256(diff))[:6+len("-dirty")]
	}
	return label
}

// seedStore returns the cached store of n tickets, seeding it first if the
// cache has none.
func (b *bench) seedStore(ctx context.Context, n int) (*seeded, error) {
	label := b.scale.label
	if label == "" {
		label = storeLabel()
	}
	s := &seeded{n: n, root: filepath.Join(b.scale.cache, fmt.Sprintf("%d-c%d-a%d-%s", n, corpusVersion, b.scale.seedAPI, label))}
	if raw, err := os.ReadFile(filepath.Join(s.root, "seed.json")); err == nil {
		if err := json.Unmarshal(raw, &s.info); err != nil {
			return nil, fmt.Errorf("%s: %w", s.root, err)
		}
		return s, nil
	}
	if err := os.MkdirAll(b.scale.cache, 0o755); err != nil {
		return nil, err
	}
	// Seed beside the final place and rename when done: an interrupted
	// seeding is never taken for a complete one.
	tmp, err := os.MkdirTemp(b.scale.cache, "seeding-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintf(os.Stderr, "seeding %d tickets into %s (once; later runs reuse it)\n", n, s.root)
	info, err := seed(ctx, filepath.Join(tmp, "data"), filepath.Join(tmp, "ids"), n, b.scale.seedAPI, b.scale.seedWorkers)
	if err != nil {
		return nil, fmt.Errorf("seed %d tickets: %w", n, err)
	}
	info.Label = label
	raw, _ := json.MarshalIndent(info, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, "seed.json"), raw, 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, s.root); err != nil {
		return nil, err
	}
	s.info = info
	return s, nil
}

// seed makes n corpus tickets and writes their ids to idsFile. Through
// the store's own operations (create, two or three replies, a status
// change, as the daemon would) the embedded server takes five commits per
// ticket: measured 9-11 tickets/s on this shared machine, hours for
// 100,000. So all but the last viaAPI tickets are inserted in batches
// through the driver, as the documents those operations make (same
// fields, audit lines, __v, no pending events; times spread over the past
// year), and the last viaAPI go through the store API, with workers in
// parallel. Whatever the store keeps beside the documents in SQLite itself
// (triggers) sees both kinds of insert; the listing figures check that
// every ticket is listed. The relay runs as in a daemon without notifiers,
// so no ticket is left with pending events.
func seed(ctx context.Context, dataDir, idsFile string, n, viaAPI, workers int) (seedInfo, error) {
	st, err := store.Open(ctx, store.OpenOptions{DataDir: dataDir, Database: benchDatabase,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return seedInfo{}, err
	}
	defer st.Close(ctx)
	if _, err := st.JoinDeployment(ctx, nil); err != nil {
		return seedInfo{}, err
	}
	relayCtx, stopRelay := context.WithCancel(ctx)
	relayDone := make(chan error, 1)
	go func() { relayDone <- st.RunRelay(relayCtx, 24*time.Hour) }()
	defer func() { stopRelay(); <-relayDone }()

	start := time.Now()
	ids := make([]bson.ObjectID, n)
	viaAPI = min(viaAPI, n)
	bulk := n - viaAPI
	responses, err := seedBulk(ctx, st, ids[:bulk], start)
	if err != nil {
		return seedInfo{}, err
	}
	bulkTook := time.Since(start)
	var done, busy atomic.Int64
	next := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				id, err := seedTicket(ctx, st, i, &busy)
				if err != nil {
					errs <- fmt.Errorf("ticket %d: %w", i, err)
					return
				}
				ids[i] = id
				done.Add(1)
			}
		}()
	}
	progress := time.NewTicker(15 * time.Second)
	defer progress.Stop()
	var failed error
	apiStart := time.Now()
feed:
	for i := bulk; i < n; {
		select {
		case next <- i:
			i++
		case failed = <-errs:
			break feed
		case <-progress.C:
			fmt.Fprintf(os.Stderr, "  %d of %d tickets through the store API in %s\n", done.Load(), viaAPI, time.Since(apiStart).Round(time.Second))
		}
	}
	close(next)
	wg.Wait()
	if failed == nil {
		select {
		case failed = <-errs:
		default:
		}
	}
	if failed != nil {
		return seedInfo{}, failed
	}
	apiTook := time.Since(apiStart)
	for i := bulk; i < n; i++ {
		responses += len(planTicket(i).replies)
	}
	// Whatever the relay's signal channel dropped is relayed now, ticket by
	// ticket: a sweep of the whole store is what issue 9 is about, and
	// times out past 65,000 tickets before it.
	for _, id := range ids[bulk:] {
		if _, err := st.RelayTicket(ctx, id); err != nil {
			return seedInfo{}, err
		}
	}
	took := time.Since(start)
	st.LeaveDeployment(ctx)

	var out strings.Builder
	for _, id := range ids {
		out.WriteString(id.Hex() + "\n")
	}
	if err := os.WriteFile(idsFile, []byte(out.String()), 0o644); err != nil {
		return seedInfo{}, err
	}
	load, _ := os.ReadFile("/proc/loadavg")
	return seedInfo{Tickets: n, Responses: responses, Took: took, Workers: workers, Bulk: bulk, BulkTook: bulkTook,
		ViaAPI: viaAPI, APITook: apiTook, BusyRetries: int(busy.Load()), Load: strings.TrimSpace(string(load)), At: time.Now().UTC()}, nil
}

// seedBulk inserts corpus tickets 0..len(ids)-1 through the driver, in
// batches, as the store's operations would have left them, and sets the
// ticket number sequence past them.
func seedBulk(ctx context.Context, st *store.Store, ids []bson.ObjectID, now time.Time) (int, error) {
	const batch = 500
	col := st.Database().Collection("tickets")
	responses := 0
	docs := make([]any, 0, batch)
	start := time.Now()
	for i := range ids {
		t := bulkTicket(i, len(ids), now)
		ids[i] = t.ID
		responses += len(t.Response)
		docs = append(docs, t)
		if len(docs) == batch || i == len(ids)-1 {
			if _, err := col.InsertMany(ctx, docs); err != nil {
				return 0, fmt.Errorf("insert tickets: %w", err)
			}
			docs = docs[:0]
			if (i+1)%20000 < batch {
				fmt.Fprintf(os.Stderr, "  %d of %d tickets inserted in %s\n", i+1, len(ids), time.Since(start).Round(time.Second))
			}
		}
	}
	if len(ids) > 0 {
		_, err := st.Database().Collection("counters").UpdateOne(ctx, bson.D{{Key: "_id", Value: "tickets"}},
			bson.D{{Key: "$max", Value: bson.D{{Key: "seq", Value: int64(len(ids))}}}}, options.UpdateOne().SetUpsert(true))
		if err != nil {
			return 0, fmt.Errorf("set the ticket number sequence: %w", err)
		}
	}
	return responses, nil
}

// bulkTicket is corpus ticket i of n as the store's operations make it
// (CreateTicket, AddResponse per reply, UpdateTicket for the status),
// opened at a time spread over the year before now, with its events
// already relayed.
func bulkTicket(i, n int, now time.Time) store.Ticket {
	p := planTicket(i)
	r := mrand.New(mrand.NewPCG(uint64(corpusVersion)+1, uint64(i)))
	customer := store.Actor{ID: personID("customer", p.team, p.customer), Type: store.CreatorCustomer, Via: store.SourceAPI}
	agent := store.Actor{ID: personID("agent", p.team, p.customer%5), Type: store.CreatorAdmin, Via: store.SourceAPI}
	at := now.Add(-time.Duration(n-i) * (365 * 24 * time.Hour / time.Duration(n))).UTC().Truncate(time.Millisecond)
	id := bson.NewObjectIDFromTimestamp(at)
	log := func(by store.Actor, what string) store.LogEntry {
		return store.LogEntry{ID: bson.NewObjectIDFromTimestamp(at), TicketID: id, ActionTaken: what, ActionBy: by.ID.Hex(), ActionByType: by.Type, ActionAt: at}
	}
	t := store.Ticket{
		ID: id, CreatorID: customer.ID, CreatorType: store.CreatorCustomer, Category: p.category,
		Subject: p.subject, Description: p.description, Priority: p.priority, Status: store.StatusCreated,
		Response: []store.Response{}, CreatedAt: at, RefID: int64(i + 1), TeamID: p.team,
		Source: store.SourceAPI, SourceKey: string(store.SourceAPI) + ":" + id.Hex(),
		Logs: []store.LogEntry{log(customer, "Ticket created")}, Outbox: []store.Event{},
	}
	for _, rp := range p.replies {
		at = at.Add(time.Duration(5+r.IntN(600)) * time.Minute)
		by := agent
		if rp.byCustomer {
			by = customer
		}
		t.Response = append(t.Response, store.Response{ID: bson.NewObjectIDFromTimestamp(at), CreatorID: by.ID, CreatorType: by.Type,
			Description: rp.text, CreatedAt: at, UpdatedAt: at, Source: store.SourceAPI})
		t.Logs = append(t.Logs, log(by, "Response added by "+string(by.Type)))
		t.V++
		// The first agent reply a customer sees is the ticket's first
		// response (see store.FirstResponse).
		if !rp.byCustomer && t.FirstResponse == nil {
			answered := at
			t.FirstResponse = &store.FirstResponse{RespondedAt: &answered}
		}
	}
	if p.status != store.StatusCreated {
		at = at.Add(time.Duration(5+r.IntN(600)) * time.Minute)
		t.Logs = append(t.Logs, log(agent, fmt.Sprintf("Status changed from %s to %s", t.Status, p.status)))
		t.Status = p.status
		t.V++
	}
	t.UpdatedAt = at
	return t
}

// seedTicket makes ticket i of the corpus through the store API and
// returns its id. An operation the embedded server refuses with
// SQLITE_BUSY (its write transaction rolled back, nothing stored) is
// repeated, a few times at most, and counted in busy.
func seedTicket(ctx context.Context, st *store.Store, i int, busy *atomic.Int64) (bson.ObjectID, error) {
	retry := func(op func() error) error {
		for attempt := 0; ; attempt++ {
			err := op()
			if err == nil || attempt == 4 || !strings.Contains(err.Error(), "SQLITE_BUSY") {
				return err
			}
			busy.Add(1)
		}
	}
	p := planTicket(i)
	customer := store.Actor{ID: personID("customer", p.team, p.customer), Type: store.CreatorCustomer, Via: store.SourceAPI}
	agent := store.Actor{ID: personID("agent", p.team, p.customer%5), Type: store.CreatorAdmin, Via: store.SourceAPI}
	var t *store.Ticket
	if err := retry(func() (err error) {
		t, _, err = st.CreateTicket(ctx, store.NewTicket{Creator: customer, TeamID: p.team, Category: p.category,
			Subject: p.subject, Description: p.description, Priority: p.priority, Source: store.SourceAPI})
		return err
	}); err != nil {
		return bson.ObjectID{}, err
	}
	for _, r := range p.replies {
		by := agent
		if r.byCustomer {
			by = customer
		}
		if err := retry(func() error {
			_, _, err := st.AddResponse(ctx, t.ID, store.AllTickets, store.NewResponse{Author: by, Description: r.text, Source: store.SourceAPI})
			return err
		}); err != nil {
			return bson.ObjectID{}, err
		}
	}
	if p.status != store.StatusCreated {
		status := p.status
		if err := retry(func() error {
			_, err := st.UpdateTicket(ctx, t.ID, store.AllTickets, store.TicketUpdate{Status: &status}, agent)
			return err
		}); err != nil {
			return bson.ObjectID{}, err
		}
	}
	return t.ID, nil
}

// personID is a stable id for a team's customer or agent number k.
func personID(kind, team string, k int) bson.ObjectID {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s/%s/%d", kind, team, k)))
	var id bson.ObjectID
	copy(id[:], sum[:])
	return id
}

var errNoSizes = errors.New("no sizes given (-sizes)")
