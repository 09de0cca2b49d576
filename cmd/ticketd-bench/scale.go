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
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/api"
	"github.com/ticketd/ticketd/store"
)

// The store-size scenarios (issue 9) measure the embedded store at 1,000,
// 20,000 and 100,000 realistic tickets: listings and search through HTTP
// against the raw SQLite read of the same rows (scale), and the daemon's
// own start-up, idle CPU, memory and throughput under mixed load, as a
// separate process of the built binary (startup, idle, mixed; daemon.go).

// scaleOptions are the store-size scenarios' knobs.
type scaleOptions struct {
	sizes       []int
	cache       string        // where seeded stores are kept between runs
	label       string        // names the seeding code in the cache; "" means store/'s git tree
	seedWorkers int           // concurrent seeders
	seedAPI     int           // tickets seeded through the store API (the rest in bulk)
	budget      time.Duration // time spent on one listing figure, at most
	duration    time.Duration // of the mixed load
	idle        time.Duration // idle window for the CPU figure
	clients     int           // concurrent clients of the mixed load
	runs        int           // start-ups per size
	binary      string        // the built ticketd, once built
}

// scaleFlags registers the store-size flags on fs and returns what reads
// them once fs is parsed.
func scaleFlags(fs *flag.FlagSet) func() scaleOptions {
	sizes := fs.String("sizes", "1000,20000,100000", "store sizes, in tickets, of the seed, scale, startup, idle and mixed scenarios")
	cache := fs.String("cache", filepath.Join(os.TempDir(), "ticketd-bench-data"), "directory keeping seeded stores between runs")
	label := fs.String("seed-label", "", "names the seeding code in the cache (default: the git tree of store/)")
	workers := fs.Int("seed-workers", 4, "concurrent writers while seeding")
	viaAPI := fs.Int("seed-api", 1000, "how many of each store's tickets (the newest) are made through the store API; the rest are inserted in batches")
	budget := fs.Duration("budget", 10*time.Second, "time spent measuring one listing figure, at most (and at least 20 requests)")
	duration := fs.Duration("duration", time.Minute, "how long the mixed load runs at each size")
	idle := fs.Duration("idle", 65*time.Second, "how long the daemon stays idle for the CPU figure")
	clients := fs.Int("clients", 8, "concurrent clients of the mixed load")
	runs := fs.Int("runs", 3, "start-ups per size (the median is reported)")
	return func() scaleOptions {
		o := scaleOptions{cache: *cache, label: *label, seedWorkers: max(*workers, 1), seedAPI: max(*viaAPI, 0), budget: *budget,
			duration: *duration, idle: *idle, clients: max(*clients, 1), runs: max(*runs, 1)}
		for _, f := range strings.Split(*sizes, ",") {
			if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
				o.sizes = append(o.sizes, n)
			}
		}
		return o
	}
}

func (b *bench) sizeScenarios() map[string]func(context.Context) error {
	return map[string]func(context.Context) error{
		"seed": b.seedAll, "scale": b.scaleListings,
		"startup": b.startup, "idle": b.idleCPU, "mixed": b.mixedLoad,
	}
}

// loadavg is the machine's load, printed beside figures taken on a
// shared machine.
func loadavg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// seedAll seeds (or finds) every size and says what seeding took.
func (b *bench) seedAll(ctx context.Context) error {
	if len(b.scale.sizes) == 0 {
		return errNoSizes
	}
	b.printf("## Seeded stores (cached under %s)\n\n", b.scale.cache)
	b.printf("The oldest tickets are inserted in batches of 500 through the driver, as the store's operations leave them; the newest %d through the store API (create, 2-3 replies, a status change) with %d workers.\n\n", b.scale.seedAPI, b.scale.seedWorkers)
	b.printf("| tickets | responses | seeding took | in bulk | through the store API | API tickets/s | SQLITE_BUSY retries | load at the end | label |\n|---:|---:|---:|---:|---:|---:|---:|---|---|\n")
	for _, n := range b.scale.sizes {
		s, err := b.seedStore(ctx, n)
		if err != nil {
			return err
		}
		i := s.info
		b.printf("| %d | %d | %s | %d in %s | %d in %s | %.1f | %d | %s | %s |\n", i.Tickets, i.Responses, i.Took.Round(time.Second),
			i.Bulk, i.BulkTook.Round(time.Second), i.ViaAPI, i.APITook.Round(time.Second), float64(i.ViaAPI)/i.APITook.Seconds(), i.BusyRetries, i.Load, i.Label)
	}
	b.printf("\n")
	return nil
}

// listing is one listing figure: a route and its query, for a token.
type listing struct {
	label string
	path  string
	query url.Values
	tok   string
	scope store.Scope
	q     store.ListQuery // the same listing, asked of the store directly
	// vary, when set, is the keyword of the n-th request: one the store
	// keeps no matches of (it keeps the last 32 keywords'), for the cost of
	// a keyword searched for the first time.
	vary func(n int) string
}

// spelling returns the n-th spelling of word in upper and lower case
// (the bits of n say which letters are upper case).
func spelling(word string, n int) string {
	rs := []rune(strings.ToLower(word))
	for i := range rs {
		if n>>i&1 == 1 {
			rs[i] = unicode.ToUpper(rs[i])
		}
	}
	return string(rs)
}

// keyword is the keyword of the n-th request of l.
func (l listing) keyword(n int) string {
	if l.vary != nil {
		return l.vary(n)
	}
	return l.q.Keyword
}

// otherCase spells word in other case at every request (the same
// matches), never all in lower case: the warm figure keeps that one.
func otherCase(word string) func(int) string {
	return func(n int) string { return spelling(word, 1+n%(1<<min(len([]rune(word)), 16)-1)) }
}

// shortKeyword is the n-th keyword of size (1 or 2) characters, in turn:
// the 36 letters and digits, or the 200-odd letter pairs of the corpus's
// words. More than the 32 the store keeps, so each search is a first one.
func shortKeyword(size int) func(int) string {
	var words []string
	if size == 1 {
		for _, r := range "abcdefghijklmnopqrstuvwxyz0123456789" {
			words = append(words, string(r))
		}
	} else {
		seen := map[string]bool{}
		for _, w := range slices.Concat(things, problems) {
			w = strings.ToLower(w)
			for i := 0; i+2 <= len(w); i++ {
				if p := w[i : i+2]; !seen[p] && strings.Trim(p, "abcdefghijklmnopqrstuvwxyz") == "" {
					seen[p] = true
					words = append(words, p)
				}
			}
		}
	}
	return func(n int) string { return words[n%len(words)] }
}

// listingFigure is what one listing measured at one size.
type listingFigure struct {
	http, decode, store, raw stats
	reqs, rows               int
	total                    int64
	err                      string // why the figure could not be taken
}

// sizeRun is one seeded store opened in this process, with the API over
// it and the raw SQLite file beside it.
type sizeRun struct {
	s          *seeded
	st         *store.Store
	base       string
	adm, cust  string
	raw        *rawDB
	opened     time.Duration
	load       string
	cleanups   []func()
	lastBody   bytes.Buffer // the last request's answer
	lastIDs    []string     // the ids of the page in it (page)
	lastTotal  int64
	requests   int // made so far, to vary cold keywords
	httpClient *http.Client
}

func (r *sizeRun) close() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

// openSizeRun opens a copy of a seeded store with the API over it.
func openSizeRun(ctx context.Context, s *seeded) (*sizeRun, error) {
	r := &sizeRun{s: s, httpClient: &http.Client{}}
	dir, err := s.copyData()
	if err != nil {
		return nil, err
	}
	r.cleanups = append(r.cleanups, func() { os.RemoveAll(filepath.Dir(dir)) })
	start := time.Now()
	if r.st, err = store.Open(ctx, store.OpenOptions{DataDir: dir, Database: benchDatabase,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}); err != nil {
		r.close()
		return nil, err
	}
	r.opened = time.Since(start)
	r.cleanups = append(r.cleanups, func() { r.st.Close(ctx) })
	base, secret, stop, err := serveAPI(r.st)
	if err != nil {
		r.close()
		return nil, err
	}
	r.base = base
	r.cleanups = append(r.cleanups, stop)
	if r.raw, err = openRaw(ctx, filepath.Join(dir, benchDatabase+".sqlite")); err != nil {
		r.close()
		return nil, err
	}
	r.cleanups = append(r.cleanups, r.raw.close)
	r.adm, _ = api.NewToken(secret, bson.NewObjectID(), api.RoleAdmin, "", time.Hour, time.Now())
	r.cust, _ = api.NewToken(secret, personID("customer", "team-3", 0), api.RoleCustomer, "team-3", time.Hour, time.Now())
	return r, nil
}

// listings are the figures of issue 9 for a store of n tickets. The deep
// page is offset 5,000, or half the store below 10,000 tickets.
func (r *sizeRun) listings() []listing {
	ls := []listing{
		{label: "first page, admin", q: store.ListQuery{}},
		{label: "deep page (offset=5000, or n/2)", q: store.ListQuery{Offset: min(5000, r.s.n/2)}},
		{label: "status=open", q: store.ListQuery{Status: store.StatusOpen}},
		{label: "priority=high", q: store.ListQuery{Priority: store.PriorityHigh}},
		{label: "category=Billing", q: store.ListQuery{Category: "Billing"}},
		{label: "admin teamId=team-3", q: store.ListQuery{TeamID: "team-3"}},
		{label: "team scope (customer token, team-3)", q: store.ListQuery{}, tok: r.cust, scope: store.TeamScope("team-3"), path: "/api/ticket/fetch"},
	}
	for _, k := range searchKeywords {
		ls = append(ls, listing{label: fmt.Sprintf("keyword=%s (%s)", k.word, k.label), q: store.ListQuery{Keyword: k.word}})
	}
	for _, k := range searchKeywords[:2] {
		ls = append(ls, listing{label: fmt.Sprintf("keyword=%s (%s), first search: case varied per request", k.word, k.label),
			q: store.ListQuery{Keyword: k.word}, vary: otherCase(k.word)})
	}
	ls = append(ls, listing{label: "keyword of 2 letters, first search: a new one per request",
		q: store.ListQuery{Keyword: "ip"}, vary: shortKeyword(2)})
	ls = append(ls, listing{label: "keyword of 1 letter or digit, first search: a new one per request",
		q: store.ListQuery{Keyword: "a"}, vary: shortKeyword(1)})
	for i := range ls {
		l := &ls[i]
		if l.tok == "" {
			l.tok, l.scope, l.path = r.adm, store.AllTickets, "/api/ticket/admin-fetch"
		}
		l.query = url.Values{"limit": {"50"}}
		if l.q.Offset > 0 {
			l.query.Set("offset", strconv.Itoa(l.q.Offset))
		}
		for k, v := range map[string]string{"status": string(l.q.Status), "priority": string(l.q.Priority),
			"category": l.q.Category, "keyword": l.q.Keyword, "teamId": l.q.TeamID} {
			if v != "" && (k != "teamId" || l.path == "/api/ticket/admin-fetch") {
				l.query.Set(k, v)
			}
		}
		l.q.Limit = 50
	}
	return ls
}

// get asks the API for a listing and keeps its answer, read to the last
// byte (as load tools time a request); page decodes it.
func (r *sizeRun) get(ctx context.Context, l listing) error {
	query := l.query
	if l.vary != nil {
		query = maps.Clone(query)
		query.Set("keyword", l.keyword(r.requests))
	}
	r.requests++
	req, _ := http.NewRequestWithContext(ctx, "GET", r.base+l.path+"?"+query.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+l.tok)
	res, err := r.httpClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	r.lastBody.Reset()
	if _, err := r.lastBody.ReadFrom(res.Body); err != nil || res.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d (%v): %.200s", res.StatusCode, err, r.lastBody.Bytes())
	}
	return nil
}

// page decodes the last answer into the page's ids and total.
func (r *sizeRun) page() error {
	var page struct {
		Data []struct {
			ID string `json:"_id"`
		} `json:"data"`
		Total int64 `json:"total"`
	}
	if err := json.Unmarshal(r.lastBody.Bytes(), &page); err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	r.lastIDs = r.lastIDs[:0]
	for _, t := range page.Data {
		r.lastIDs = append(r.lastIDs, t.ID)
	}
	r.lastTotal = page.Total
	return nil
}

// scaleListings measures every listing figure at every size. All sizes
// are open at once and every figure alternates between them request by
// request, so that the load of a shared machine weighs on each size
// alike; each is measured against the store's own ListTickets and the
// raw SQLite read of the page's rows, taken the same way.
func (b *bench) scaleListings(ctx context.Context) error {
	if len(b.scale.sizes) == 0 {
		return errNoSizes
	}
	var runs []*sizeRun
	defer func() {
		for _, r := range runs {
			r.close()
		}
	}()
	for _, n := range b.scale.sizes {
		s, err := b.seedStore(ctx, n)
		if err != nil {
			return err
		}
		r, err := openSizeRun(ctx, s)
		if err != nil {
			return fmt.Errorf("%d tickets: %w", n, err)
		}
		r.load = loadavg()
		runs = append(runs, r)
	}
	// Every ticket must be listed, however the store was seeded.
	for _, r := range runs {
		if err := r.get(ctx, r.listings()[0]); err != nil {
			return err
		}
		if err := r.page(); err != nil {
			return err
		}
		if r.lastTotal != int64(r.s.n) {
			return fmt.Errorf("%d tickets seeded, but the first page says %d in all", r.s.n, r.lastTotal)
		}
	}
	figs := make([][]listingFigure, len(runs))
	lists := make([][]listing, len(runs))
	for i, r := range runs {
		lists[i] = r.listings()
		figs[i] = make([]listingFigure, len(lists[i]))
	}
	for k := range lists[0] {
		b.measureListing(ctx, runs, lists, figs, k)
	}

	b.printf("## Listings through HTTP against store size (embedded store, in-process API over loopback)\n\n")
	b.printf("Every figure alternates between the sizes request by request. HTTP: GET, timed to the last byte of the answer; client decode: the client's decoding of the last answer, timed on its own; store: store.ListTickets; raw: the page's rows read from the SQLite file by _id (one SELECT ... IN, same ids).\n\n")
	for i, r := range runs {
		b.printf("### %d tickets (opened in %s; load %s)\n\n", r.s.n, r.opened.Round(time.Millisecond), r.load)
		b.printf("| figure | matches | HTTP p50 | HTTP p99 | requests | client decode p50 | store p50 | raw read p50 (rows) | HTTP / raw |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for k, l := range lists[i] {
			f := figs[i][k]
			if f.err != "" {
				b.printf("| %s | | %s | | | | | | |\n", l.label, f.err)
				continue
			}
			ratio := "-"
			if f.rows > 0 {
				ratio = fmt.Sprintf("%.1fx", float64(f.http.p50)/float64(f.raw.p50))
			}
			b.printf("| %s | %d | %s | %s | %d | %s | %s | %s (%d) | %s |\n", l.label, f.total, ms(f.http.p50), ms(f.http.p99), f.reqs,
				ms(f.decode.p50), ms(f.store.p50), ms(f.raw.p50), f.rows, ratio)
		}
		b.printf("\n")
	}
	if len(runs) > 1 {
		first, last := 0, len(runs)-1
		b.printf("### HTTP p50 / p99 against store size (load now %s)\n\n| figure |", loadavg())
		for _, r := range runs {
			b.printf(" %d |", r.s.n)
		}
		b.printf(" p50 %d / %d |\n|---|", runs[last].s.n, runs[first].s.n)
		for range runs {
			b.printf("---:|")
		}
		b.printf("---:|\n")
		for k, l := range lists[0] {
			b.printf("| %s |", l.label)
			for i := range runs {
				if figs[i][k].reqs == 0 {
					b.printf(" failed |")
					continue
				}
				b.printf(" %s / %s |", ms(figs[i][k].http.p50), ms(figs[i][k].http.p99))
			}
			if figs[last][k].reqs == 0 || figs[first][k].reqs == 0 {
				b.printf(" - |\n")
				continue
			}
			b.printf(" %.2fx |\n", float64(figs[last][k].http.p50)/float64(figs[first][k].http.p50))
		}
		b.printf("\n")
	}
	b.printf("Targets (issue 9): listings within 1.5x from 1,000 to 100,000 tickets and within 5x the raw read; keyword p99 < 50 ms at 100,000.\n\n")
	return nil
}

// measureListing takes figure k at every size: HTTP requests alternating
// between the sizes, then the store's ListTickets (with the API's request
// timeout) and the raw read of the last page's ids, alike. A size whose
// request fails is measured no further for this figure; the failure is
// reported in its place.
func (b *bench) measureListing(ctx context.Context, runs []*sizeRun, lists [][]listing, figs [][]listingFigure, k int) {
	d, errs := b.alternate(len(runs), func(i int) error { return runs[i].get(ctx, lists[i][k]) })
	ids := make([][]string, len(runs))
	skip := make([]bool, len(runs))
	for i, r := range runs {
		f := &figs[i][k]
		if errs[i] != nil {
			f.err, skip[i] = fmt.Sprintf("HTTP failed after %d requests: %v", len(d[i]), errs[i]), true
			continue
		}
		// The client's decoding of the page, timed on its own.
		var decode []time.Duration
		for range 20 {
			t0 := time.Now()
			if err := r.page(); err != nil {
				f.err, skip[i] = err.Error(), true
				break
			}
			decode = append(decode, time.Since(t0))
		}
		if skip[i] {
			continue
		}
		f.http, f.decode, f.reqs, f.rows, f.total = summarize(d[i]), summarize(decode), len(d[i]), len(r.lastIDs), r.lastTotal
		ids[i] = slices.Clone(r.lastIDs)
	}
	d, errs = b.alternate(len(runs), func(i int) error {
		if skip[i] {
			return nil
		}
		ctx, cancel := context.WithTimeout(ctx, apiRequestTimeout)
		defer cancel()
		l := lists[i][k]
		q := l.q
		q.Keyword = l.keyword(runs[i].requests)
		runs[i].requests++
		_, _, err := runs[i].st.ListTickets(ctx, l.scope, q)
		return err
	})
	for i := range runs {
		if !skip[i] && errs[i] != nil {
			figs[i][k].err, skip[i] = fmt.Sprintf("store failed after %d calls: %v", len(d[i]), errs[i]), true
		} else if !skip[i] {
			figs[i][k].store = summarize(d[i])
		}
	}
	d, errs = b.alternate(len(runs), func(i int) error {
		if skip[i] {
			return nil
		}
		return runs[i].raw.read(ctx, ids[i])
	})
	for i := range runs {
		if !skip[i] && errs[i] != nil {
			figs[i][k].err = fmt.Sprintf("raw read failed: %v", errs[i])
		} else if !skip[i] {
			figs[i][k].raw = summarize(d[i])
		}
	}
}

// apiRequestTimeout is the API's default bound on one request, which the
// store-level figures are held to as well.
const apiRequestTimeout = 15 * time.Second

// alternate runs op(0), op(1), ... op(sizes-1) in rounds: two to warm up,
// then until the budget (per size) is spent, with at least 20 rounds (5
// when they are slow: past twice the budget) and at most b.ops. It
// returns each size's durations, and the error of each size whose op
// failed; a failed size is not run again.
func (b *bench) alternate(sizes int, op func(i int) error) ([][]time.Duration, []error) {
	d := make([][]time.Duration, sizes)
	errs := make([]error, sizes)
	start := time.Now()
	budget := b.scale.budget * time.Duration(sizes)
	for rounds := -2; ; rounds++ {
		took := time.Since(start)
		if rounds >= b.ops || (rounds >= 20 && took > budget) || (rounds >= 5 && took > 2*budget) {
			return d, errs
		}
		for i := range sizes {
			if errs[i] != nil {
				continue
			}
			t0 := time.Now()
			if err := op(i); err != nil {
				errs[i] = err
				continue
			}
			if rounds >= 0 {
				d[i] = append(d[i], time.Since(t0))
			}
		}
	}
}

// rawDB reads ticket documents straight from the embedded server's SQLite
// file: the floor under any listing.
type rawDB struct {
	db    *sql.DB
	table string
}

func openRaw(ctx context.Context, file string) (*rawDB, error) {
	db, err := sql.Open("sqlite", "file:"+file+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		return nil, err
	}
	r := &rawDB{db: db}
	if err := db.QueryRowContext(ctx, `SELECT table_name FROM _ferretdb_collections WHERE name = 'tickets'`).Scan(&r.table); err != nil {
		db.Close()
		return nil, fmt.Errorf("find the tickets table in %s: %w", file, err)
	}
	return r, nil
}

func (r *rawDB) close() { r.db.Close() }

// read fetches the documents with these ids (hex), by the expression the
// store's lookup index covers, and checks they are all there.
func (r *rawDB) read(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = `"` + id + `"` // the JSON text of the id, as the index holds it
	}
	q := fmt.Sprintf(`SELECT _ferretdb_sjson FROM %q WHERE _ferretdb_sjson->'$._id' IN (?%s)`, r.table, strings.Repeat(",?", len(ids)-1))
	rows, err := r.db.QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var doc []byte
		if err := rows.Scan(&doc); err != nil {
			return err
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if n != len(ids) {
		return fmt.Errorf("raw read found %d of %d tickets", n, len(ids))
	}
	return nil
}
