// Command ticketd-bench measures the store and the API on this machine and
// prints the figures quoted in BENCHMARKS.md. Every scenario measures its
// baseline in the same run, so the ratios hold even when absolute times
// drift on a shared machine.
//
//	go run ./cmd/ticketd-bench [-scenario all|update|reply|fetch|open|autoclose] [-small 1000] [-large 20000]
//	go run ./cmd/ticketd-bench -scenario seed|scale|startup|idle|mixed [-sizes 1000,20000,100000] [-duration 1m]
package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	_ "modernc.org/sqlite"

	"github.com/ticketd/ticketd/api"
	"github.com/ticketd/ticketd/store"
)

func main() {
	scenario := flag.String("scenario", "all", "all, update, reply, fetch, open or autoclose; or one of the store-size scenarios seed, scale, startup, idle, mixed (not in all)")
	small := flag.Int("small", 1000, "tickets in the small store")
	large := flag.Int("large", 20000, "tickets in the large store")
	ops := flag.Int("ops", 500, "measured operations per figure")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	scale := scaleFlags(flag.CommandLine)
	flag.Parse()
	ctx := context.Background()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "ticketd-bench:", err)
			os.Exit(1)
		}
		defer f.Close()
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	b := &bench{small: *small, large: *large, ops: *ops, out: os.Stdout, scale: scale()}
	if err := b.run(ctx, *scenario); err != nil {
		fmt.Fprintln(os.Stderr, "ticketd-bench:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

type bench struct {
	small, large, ops int
	out               io.Writer
	scale             scaleOptions // for the store-size scenarios (scale.go)
}

func (b *bench) printf(format string, args ...any) { fmt.Fprintf(b.out, format, args...) }

func (b *bench) run(ctx context.Context, scenario string) error {
	all := map[string]func(context.Context) error{"update": b.updateScaling, "reply": b.replyThroughput, "fetch": b.fetchLatency, "open": b.openTime,
		"autoclose": b.autoCloseSweep}
	for name, fn := range b.sizeScenarios() {
		all[name] = fn
	}
	if scenario != "all" {
		fn, ok := all[scenario]
		if !ok {
			return fmt.Errorf("unknown scenario %q", scenario)
		}
		return fn(ctx)
	}
	for _, name := range []string{"update", "reply", "fetch", "open", "autoclose"} {
		if err := all[name](ctx); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// openStore opens a fresh embedded store holding n tickets. They are
// inserted through the driver, then the store is opened again, as after a
// restart, so that it knows them (its catalog is loaded at open).
func openStore(ctx context.Context, n int) (*store.Store, string, func(), error) {
	dir, err := os.MkdirTemp("", "ticketd-bench-")
	if err != nil {
		return nil, "", nil, err
	}
	open := func() (*store.Store, error) {
		return store.Open(ctx, store.OpenOptions{DataDir: dir, Database: "bench",
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}
	st, err := open()
	if err == nil {
		err = populate(ctx, st, n)
		st.Close(ctx)
	}
	if err == nil {
		st, err = open()
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", nil, err
	}
	return st, dir, func() { st.Close(ctx); os.RemoveAll(dir) }, nil
}

// populate inserts n realistic tickets (two responses, three log lines,
// ten teams) in batches through the driver: creating them one by one
// through the store would measure the set-up, not the figure.
func populate(ctx context.Context, st *store.Store, n int) error {
	col := st.Database().Collection("tickets")
	now := time.Now().UTC().Truncate(time.Millisecond)
	batch := make([]any, 0, 500)
	for i := 0; i < n; i++ {
		id, cust, agent := bson.NewObjectID(), bson.NewObjectID(), bson.NewObjectID()
		at := now.Add(-time.Duration(n-i) * time.Minute)
		t := store.Ticket{
			ID: id, CreatorID: cust, CreatorType: store.CreatorCustomer, Category: "Support",
			Subject:     fmt.Sprintf("Printer %d does not print", i),
			Description: strings.Repeat("The printer on the second floor shows error E42 again. ", 4),
			Priority:    store.PriorityLow, Status: store.StatusOpen, CreatedAt: at, UpdatedAt: at, V: 2,
			RefID: int64(i + 1), TeamID: fmt.Sprintf("team-%d", i%10), Source: store.SourceAPI, SourceKey: "api:" + id.Hex(),
			Response: []store.Response{
				{ID: bson.NewObjectID(), CreatorID: agent, CreatorType: store.CreatorAdmin, Description: "We are looking into it.", CreatedAt: at, UpdatedAt: at},
				{ID: bson.NewObjectID(), CreatorID: cust, CreatorType: store.CreatorCustomer, Description: "Thanks, still broken.", CreatedAt: at, UpdatedAt: at},
			},
			Logs: []store.LogEntry{
				{ID: bson.NewObjectID(), TicketID: id, ActionTaken: "Ticket created", ActionBy: cust.Hex(), ActionByType: store.CreatorCustomer, ActionAt: at},
				{ID: bson.NewObjectID(), TicketID: id, ActionTaken: "Response added by admin", ActionBy: agent.Hex(), ActionByType: store.CreatorAdmin, ActionAt: at},
				{ID: bson.NewObjectID(), TicketID: id, ActionTaken: "Response added by customer", ActionBy: cust.Hex(), ActionByType: store.CreatorCustomer, ActionAt: at},
			},
			Outbox: []store.Event{},
		}
		batch = append(batch, t)
		if len(batch) == cap(batch) || i == n-1 {
			if _, err := col.InsertMany(ctx, batch); err != nil {
				return fmt.Errorf("populate: %w", err)
			}
			batch = batch[:0]
		}
	}
	return nil
}

func ticketIDs(ctx context.Context, st *store.Store) ([]bson.ObjectID, error) {
	cur, err := st.Database().Collection("tickets").Find(ctx, bson.D{})
	if err != nil {
		return nil, err
	}
	var docs []struct {
		ID bson.ObjectID `bson:"_id"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return nil, err
	}
	ids := make([]bson.ObjectID, len(docs))
	for i, d := range docs {
		ids[i] = d.ID
	}
	return ids, nil
}

// dropIDFix removes the lookup index the store adds, to measure the
// embedded server as it comes.
func dropIDFix(ctx context.Context, dir string) error {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "bench.sqlite")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer db.Close()
	var table string
	if err := db.QueryRowContext(ctx, `SELECT table_name FROM _ferretdb_collections WHERE name = 'tickets'`).Scan(&table); err != nil {
		return err
	}
	_, err = db.ExecContext(ctx, fmt.Sprintf(`DROP INDEX %q`, table+"_ticketd_id_lookup"))
	return err
}

type stats struct{ p50, p99 time.Duration }

func summarize(d []time.Duration) stats {
	slices.Sort(d)
	return stats{p50: d[len(d)/2], p99: d[(len(d)*99)/100]}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

// updateScaling: median UpdateTicket latency at the small and the large
// size, with the store's index fix and without it.
func (b *bench) updateScaling(ctx context.Context) error {
	b.printf("## Update cost against store size (embedded store, %d updates each)\n\n", b.ops)
	b.printf("| tickets | index fix | p50 | p99 |\n")
	b.printf("|---:|---|---:|---:|\n")
	medians := map[string]time.Duration{}
	for _, n := range []int{b.small, b.large} {
		st, dir, cleanup, err := openStore(ctx, n)
		if err != nil {
			return err
		}
		ids, err := ticketIDs(ctx, st)
		if err != nil {
			cleanup()
			return err
		}
		for _, fixed := range []bool{true, false} {
			if !fixed {
				if err := dropIDFix(ctx, dir); err != nil {
					cleanup()
					return fmt.Errorf("drop index: %w", err)
				}
			}
			ops := b.ops
			if !fixed {
				ops = min(ops, 100) // the unfixed store is slow; 100 is enough for a median
			}
			d := make([]time.Duration, 0, ops)
			for i := 0; i < ops; i++ {
				p := store.Priorities[i%len(store.Priorities)]
				id := ids[rand.IntN(len(ids))]
				start := time.Now()
				if _, err := st.UpdateTicket(ctx, id, store.AllTickets, store.TicketUpdate{Priority: &p}, store.Actor{Type: store.CreatorAdmin, ID: bson.NewObjectID()}); err != nil {
					cleanup()
					return err
				}
				d = append(d, time.Since(start))
			}
			s := summarize(d)
			medians[fmt.Sprint(n, fixed)] = s.p50
			b.printf("| %d | %v | %s | %s |\n", n, map[bool]string{true: "yes", false: "no (as shipped)"}[fixed], ms(s.p50), ms(s.p99))
		}
		cleanup()
	}
	b.printf("\nRatio of medians, %d vs %d tickets: with the fix %.2fx (target <= 1.5x), without %.2fx\n\n",
		b.large, b.small,
		float64(medians[fmt.Sprint(b.large, true)])/float64(medians[fmt.Sprint(b.small, true)]),
		float64(medians[fmt.Sprint(b.large, false)])/float64(medians[fmt.Sprint(b.small, false)]))
	return nil
}

// serveAPI runs the real API over a store on a loopback port.
func serveAPI(st *store.Store) (string, []byte, func(), error) {
	secret := []byte("bench-secret-0123456789abcdef0123")
	a, err := api.New(st, api.Options{JWTSecret: secret}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return "", nil, nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, nil, err
	}
	srv := &http.Server{Handler: a.Handler()}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), secret, func() { srv.Close() }, nil
}

// replyThroughput: 16 clients adding responses through the HTTP API, against
// 16 goroutines doing the raw driver's $push of the same response on the
// same store, same tickets.
func (b *bench) replyThroughput(ctx context.Context) error {
	const clients, tickets, rounds = 16, 64, 8 // 2 warm-up rounds, then 3 per path
	per := max(b.ops/clients, 2)
	st, _, cleanup, err := openStore(ctx, tickets*rounds)
	if err != nil {
		return err
	}
	defer cleanup()
	all, err := ticketIDs(ctx, st)
	if err != nil {
		return err
	}
	// Each round writes to tickets of its own, so every round starts from
	// the same document sizes whichever path it measures.
	var ids []bson.ObjectID
	nextRound := func() { ids, all = all[:tickets], all[tickets:] }
	base, secret, stop, err := serveAPI(st)
	if err != nil {
		return err
	}
	defer stop()
	tok, _ := api.NewToken(secret, bson.NewObjectID(), api.RoleAdmin, "", time.Hour, time.Now())
	body, _ := json.Marshal(map[string]string{"description": "We are looking into your issue and will update you soon."})
	httpClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}

	viaAPI := func(i int) error {
		req, _ := http.NewRequestWithContext(ctx, "POST", base+"/api/ticket/admin-create-reply?id="+ids[i%len(ids)].Hex(), bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		res, err := httpClient.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			return fmt.Errorf("reply: %d", res.StatusCode)
		}
		return nil
	}
	col := st.Database().Collection("tickets")
	agent := bson.NewObjectID()
	// The baseline is the very update the store makes for a reply, sent
	// once through the driver: push the response, its audit line and its
	// announcement, set updatedAt, increment __v. The ratio is what the
	// layers above it cost: HTTP, JWT, validation, the per-ticket lock and
	// the read that decides what to write.
	viaDriver := func(i int) error {
		id := ids[i%len(ids)]
		now := time.Now().UTC().Truncate(time.Millisecond)
		r := store.Response{ID: bson.NewObjectID(), CreatorID: agent, CreatorType: store.CreatorAdmin,
			Description: "We are looking into your issue and will update you soon.", CreatedAt: now, UpdatedAt: now}
		l := store.LogEntry{ID: bson.NewObjectID(), TicketID: id, ActionTaken: "Response added by admin", ActionBy: agent.Hex(), ActionByType: store.CreatorAdmin, ActionAt: now}
		e := store.Event{ID: bson.NewObjectID(), Kind: store.EventResponseAdded, TicketID: id, ResponseID: &r.ID, ActorID: agent, ActorType: store.CreatorAdmin, At: now}
		return col.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{
			{Key: "$set", Value: bson.D{{Key: "updatedAt", Value: now}}},
			{Key: "$inc", Value: bson.D{{Key: "__v", Value: int64(1)}}},
			{Key: "$push", Value: bson.D{
				{Key: "response", Value: r},
				{Key: "logs", Value: bson.D{{Key: "$each", Value: bson.A{l}}}},
				{Key: "outbox", Value: bson.D{{Key: "$each", Value: bson.A{e}}}},
			}},
		}).Err()
	}
	run := func(op func(int) error) (float64, error) {
		nextRound()
		var wg sync.WaitGroup
		errs := make(chan error, clients)
		start := time.Now()
		for c := 0; c < clients; c++ {
			wg.Add(1)
			go func(c int) {
				defer wg.Done()
				for j := 0; j < per; j++ {
					if err := op(c*per + j); err != nil {
						errs <- err
						return
					}
				}
			}(c)
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return 0, err
		}
		return float64(clients*per) / time.Since(start).Seconds(), nil
	}
	// Warm both paths, then alternate three rounds each (in both orders) and
	// keep the medians.
	if _, err := run(viaDriver); err != nil {
		return err
	}
	if _, err := run(viaAPI); err != nil {
		return err
	}
	var apiRates, rawRates []float64
	for round := 0; round < 3; round++ {
		first, second := &rawRates, &apiRates
		ops := [2]func(int) error{viaDriver, viaAPI}
		if round%2 == 1 {
			first, second = second, first
			ops[0], ops[1] = ops[1], ops[0]
		}
		r, err := run(ops[0])
		if err != nil {
			return err
		}
		*first = append(*first, r)
		if r, err = run(ops[1]); err != nil {
			return err
		}
		*second = append(*second, r)
	}
	slices.Sort(apiRates)
	slices.Sort(rawRates)
	b.printf("## Reply throughput, %d concurrent clients, %d replies per round over %d fresh tickets (embedded store)\n\n", clients, clients*per, tickets)
	b.printf("| path | replies/s (median of 3 rounds) |\n")
	b.printf("|---|---:|\n")
	b.printf("| raw driver: the same update, one findAndModify (baseline) | %.0f |\n", rawRates[1])
	b.printf("| POST /api/ticket/admin-create-reply | %.0f |\n", apiRates[1])
	b.printf("\nRatio API / raw driver: %.2f (target >= 0.7)\n\n", apiRates[1]/rawRates[1])
	return nil
}

// fetchLatency: GET admin-fetch and a customer's team fetch (first page of
// 50) at the small and the large size, through HTTP.
func (b *bench) fetchLatency(ctx context.Context) error {
	b.printf("## Fetch latency through HTTP, first page of 50 (embedded store; %d requests at %d tickets, %d at %d)\n\n",
		min(b.ops, 200), b.small, min(b.ops, 60), b.large)
	b.printf("| tickets | route | p50 | p99 |\n")
	b.printf("|---:|---|---:|---:|\n")
	for _, n := range []int{b.small, b.large} {
		// At the large size every request scans the table; fewer suffice.
		reqs := min(b.ops, 200)
		if n == b.large {
			reqs = min(b.ops, 60)
		}
		st, _, cleanup, err := openStore(ctx, n)
		if err != nil {
			return err
		}
		base, secret, stop, err := serveAPI(st)
		if err != nil {
			cleanup()
			return err
		}
		adm, _ := api.NewToken(secret, bson.NewObjectID(), api.RoleAdmin, "", time.Hour, time.Now())
		cust, _ := api.NewToken(secret, bson.NewObjectID(), api.RoleCustomer, "team-3", time.Hour, time.Now())
		for _, c := range []struct {
			path, tok string
			want      int // tickets on the first page
		}{
			{"/api/ticket/admin-fetch", adm, min(50, n)},
			{"/api/ticket/fetch", cust, min(50, n/10)}, // one team of ten
		} {
			d := make([]time.Duration, 0, reqs)
			for i := 0; i < reqs; i++ {
				req, _ := http.NewRequestWithContext(ctx, "GET", base+c.path, nil)
				req.Header.Set("Authorization", "Bearer "+c.tok)
				start := time.Now()
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					stop()
					cleanup()
					return err
				}
				var page struct {
					Data []json.RawMessage `json:"data"`
				}
				err = json.NewDecoder(res.Body).Decode(&page)
				res.Body.Close()
				d = append(d, time.Since(start))
				if res.StatusCode != 200 || err != nil || len(page.Data) != c.want {
					stop()
					cleanup()
					return fmt.Errorf("%s: status %d, %d tickets, want %d (%v)", c.path, res.StatusCode, len(page.Data), c.want, err)
				}
			}
			s := summarize(d)
			b.printf("| %d | GET %s | %s | %s |\n", n, c.path, ms(s.p50), ms(s.p99))
		}
		stop()
		cleanup()
	}
	b.printf("\n")
	return nil
}

// openTime: how long opening an existing embedded store takes (index check,
// _id fix, loading the ticket catalog) at the small and the large size.
func (b *bench) openTime(ctx context.Context) error {
	b.printf("## Start-up: opening an existing embedded store\n\n")
	b.printf("| tickets | open (median of 3) |\n|---:|---:|\n")
	for _, n := range []int{b.small, b.large} {
		st, dir, cleanup, err := openStore(ctx, n)
		if err != nil {
			return err
		}
		st.Close(ctx)
		var d []time.Duration
		for i := 0; i < 3; i++ {
			start := time.Now()
			again, err := store.Open(ctx, store.OpenOptions{DataDir: dir, Database: "bench", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				cleanup()
				return err
			}
			d = append(d, time.Since(start))
			again.Close(ctx)
		}
		cleanup()
		b.printf("| %d | %s |\n", n, ms(summarize(d).p50))
	}
	b.printf("\n")
	return nil
}
