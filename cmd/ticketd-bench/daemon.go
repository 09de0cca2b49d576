package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/api"
	"github.com/ticketd/ticketd/store"
)

// daemon is a ticketd serve process of the built binary over a seeded
// store: its start-up, CPU and memory are its own, not the bench's.
type daemon struct {
	cmd    *exec.Cmd
	base   string
	secret []byte
	log    string // the daemon's stderr
	exited chan struct{}
}

// ticketdBinary builds cmd/ticketd once per run, into the cache directory.
func (b *bench) ticketdBinary(ctx context.Context) (string, error) {
	if b.scale.binary != "" {
		return b.scale.binary, nil
	}
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
		return "", fmt.Errorf("find the module root (go env GOMOD): %v", err)
	}
	// One binary per seeding label: two runs of different checkouts on
	// one cache must not swap each other's daemon.
	label := b.scale.label
	if label == "" {
		label = storeLabel()
	}
	bin := filepath.Join(b.scale.cache, "bin", label, "ticketd")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/ticketd")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/ticketd: %w: %s", err, out)
	}
	b.scale.binary = bin
	return bin, nil
}

// startDaemon runs the binary over dataDir (embedded store, no mail, no
// Slack) and returns once /readyz answers 200, with the time that took
// from launching the process.
func (b *bench) startDaemon(ctx context.Context, dataDir string) (*daemon, time.Duration, error) {
	bin, err := b.ticketdBinary(ctx)
	if err != nil {
		return nil, 0, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, 0, err
	}
	addr := ln.Addr().String()
	ln.Close()
	secret := make([]byte, 24)
	rand.Read(secret)
	d := &daemon{base: "http://" + addr, secret: []byte(hex.EncodeToString(secret)),
		log: filepath.Join(filepath.Dir(dataDir), "ticketd.log"), exited: make(chan struct{})}
	cfg := filepath.Join(filepath.Dir(dataDir), "ticketd.yaml")
	yaml := fmt.Sprintf("dataDir: %s\nhttp: {listen: %q}\nauth: {jwtSecret: %q}\nlog: {level: warn}\n", dataDir, addr, d.secret)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		return nil, 0, err
	}
	logf, err := os.OpenFile(d.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, 0, err
	}
	defer logf.Close()
	d.cmd = exec.Command(bin, "serve", "-config", cfg)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	start := time.Now()
	if err := d.cmd.Start(); err != nil {
		return nil, 0, err
	}
	go func() { d.cmd.Wait(); close(d.exited) }()
	client := &http.Client{Timeout: 5 * time.Second}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(20 * time.Minute)
	for {
		res, err := client.Get(d.base + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return d, time.Since(start), nil
			}
		}
		select {
		case <-tick.C:
		case <-d.exited:
			return nil, 0, fmt.Errorf("ticketd exited before it was ready: %s", d.tail())
		case <-deadline:
			d.stop()
			return nil, 0, fmt.Errorf("ticketd not ready after 20 minutes: %s", d.tail())
		case <-ctx.Done():
			d.stop()
			return nil, 0, ctx.Err()
		}
	}
}

// tail is the end of the daemon's log, for error messages.
func (d *daemon) tail() string {
	raw, _ := os.ReadFile(d.log)
	if len(raw) > 2000 {
		raw = raw[len(raw)-2000:]
	}
	return string(raw)
}

// logCount counts the log lines that contain s.
func (d *daemon) logCount(s string) int {
	raw, _ := os.ReadFile(d.log)
	return bytes.Count(raw, []byte(s))
}

// stop asks the daemon to shut down (SIGTERM) and waits; after a minute it
// kills it.
func (d *daemon) stop() {
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(time.Minute):
		d.cmd.Process.Kill()
		<-d.exited
	}
}

// memory reads the daemon's resident set and its peak, in MB.
func (d *daemon) memory() (rss, hwm float64, err error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			hwm = kb / 1024
		}
	}
	return rss, hwm, nil
}

// cpu reads the CPU time the daemon has used, user and system.
func (d *daemon) cpu() (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", d.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; the fields after it are fixed.
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc stat: %q", raw)
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const clockTicks = 100 // USER_HZ, 100 on Linux
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// withDaemon copies the seeded store, starts the daemon over the copy, runs
// fn and stops the daemon.
func (b *bench) withDaemon(ctx context.Context, s *seeded, fn func(d *daemon, startup time.Duration) error) error {
	dir, err := s.copyData()
	if err != nil {
		return err
	}
	defer os.RemoveAll(filepath.Dir(dir))
	d, took, err := b.startDaemon(ctx, dir)
	if err != nil {
		return err
	}
	defer d.stop()
	return fn(d, took)
}

// startup: launching the binary to /readyz answering 200, -runs times on
// the same copy of each seeded store, with the RSS right after.
func (b *bench) startup(ctx context.Context) error {
	if len(b.scale.sizes) == 0 {
		return errNoSizes
	}
	if _, err := b.ticketdBinary(ctx); err != nil {
		return err
	}
	b.printf("## Start-up of `ticketd serve` (built binary, embedded store) to /readyz 200, %d runs per size\n\n", b.scale.runs)
	b.printf("| tickets | runs | median | RSS after start-up (median) | load |\n|---:|---|---:|---:|---|\n")
	for _, n := range b.scale.sizes {
		s, err := b.seedStore(ctx, n)
		if err != nil {
			return err
		}
		dir, err := s.copyData()
		if err != nil {
			return err
		}
		var took []time.Duration
		var rss []float64
		for range b.scale.runs {
			d, t, err := b.startDaemon(ctx, dir)
			if err != nil {
				os.RemoveAll(filepath.Dir(dir))
				return err
			}
			r, _, err := d.memory()
			d.stop()
			if err != nil {
				os.RemoveAll(filepath.Dir(dir))
				return err
			}
			took, rss = append(took, t), append(rss, r)
		}
		os.RemoveAll(filepath.Dir(dir))
		runs := make([]string, len(took))
		for i, t := range took {
			runs[i] = fmt.Sprintf("%.2f s", t.Seconds())
		}
		slices.Sort(took)
		slices.Sort(rss)
		b.printf("| %d | %s | %.2f s | %.0f MB | %s |\n", n, strings.Join(runs, ", "), took[len(took)/2].Seconds(), rss[len(rss)/2], loadavg())
	}
	b.printf("\nTarget (issue 9): under 3 s at 100,000 tickets.\n\n")
	return nil
}

// idleCPU: the CPU time the daemon uses while nobody asks anything of it,
// over -idle from the moment it is ready.
func (b *bench) idleCPU(ctx context.Context) error {
	if len(b.scale.sizes) == 0 {
		return errNoSizes
	}
	b.printf("## CPU of an idle daemon over %s after /readyz (utime+stime from /proc)\n\n", b.scale.idle)
	b.printf("| tickets | CPU while idle | vs %d | RSS at the end | \"sweep failed\" logged | load |\n|---:|---:|---:|---:|---:|---|\n", b.scale.sizes[0])
	var first time.Duration
	for _, n := range b.scale.sizes {
		s, err := b.seedStore(ctx, n)
		if err != nil {
			return err
		}
		err = b.withDaemon(ctx, s, func(d *daemon, _ time.Duration) error {
			c0, err := d.cpu()
			if err != nil {
				return err
			}
			select {
			case <-time.After(b.scale.idle):
			case <-d.exited:
				return fmt.Errorf("ticketd exited while idle: %s", d.tail())
			case <-ctx.Done():
				return ctx.Err()
			}
			c1, err := d.cpu()
			if err != nil {
				return err
			}
			rss, _, err := d.memory()
			if err != nil {
				return err
			}
			used := c1 - c0
			if first == 0 {
				first = max(used, 10*time.Millisecond) // one clock tick at least: no division by zero
			}
			b.printf("| %d | %.2f s | %.1fx | %.0f MB | %d | %s |\n", n, used.Seconds(), float64(used)/float64(first), rss, d.logCount("sweep failed"), loadavg())
			return nil
		})
		if err != nil {
			return fmt.Errorf("%d tickets: %w", n, err)
		}
	}
	b.printf("\nTarget (issue 9): idle CPU at 100,000 tickets within 2x of the figure at 1,000.\n\n")
	return nil
}

// mixedOp is one kind of request of the mixed load.
type mixedOp struct {
	name   string
	weight int
}

var mixedOps = []mixedOp{
	{"read: first page", 15}, {"read: filtered page", 10}, {"read: one ticket", 15},
	{"reply", 25}, {"update", 20}, {"create", 15},
}

// mixedLoad: -clients clients send the mixed load (40 % reads, replies,
// updates, creates) for -duration at each size; throughput, latency and
// the daemon's memory before and after.
func (b *bench) mixedLoad(ctx context.Context) error {
	if len(b.scale.sizes) == 0 {
		return errNoSizes
	}
	b.printf("## Mixed API load on the daemon: %d clients for %s per size (", b.scale.clients, b.scale.duration)
	for i, o := range mixedOps {
		if i > 0 {
			b.printf(", ")
		}
		b.printf("%d %% %s", o.weight, o.name)
	}
	b.printf(")\n\n")
	b.printf("| tickets | req/s | vs %d | p50 | p99 | errors (\"database is locked\" in the log) | RSS after start-up | RSS after load | peak RSS (VmHWM) | daemon CPU | load |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n", b.scale.sizes[0])
	var first float64
	perOp := map[int]map[string]stats{}
	for _, n := range b.scale.sizes {
		s, err := b.seedStore(ctx, n)
		if err != nil {
			return err
		}
		ids, err := s.ids()
		if err != nil {
			return err
		}
		err = b.withDaemon(ctx, s, func(d *daemon, _ time.Duration) error {
			rss0, _, err := d.memory()
			if err != nil {
				return err
			}
			c0, _ := d.cpu()
			r, err := runMixed(ctx, d, ids, n, b.scale.clients, b.scale.duration)
			if err != nil {
				return err
			}
			c1, _ := d.cpu()
			rss1, hwm, err := d.memory()
			if err != nil {
				return err
			}
			rate := float64(r.count) / r.took.Seconds()
			if first == 0 {
				first = rate
			}
			all := summarize(r.all)
			b.printf("| %d | %.1f | %.2fx | %s | %s | %d (%d) | %.0f MB | %.0f MB | %.0f MB | %.0f s | %s |\n", n, rate, rate/first,
				ms(all.p50), ms(all.p99), r.errors, d.logCount("database is locked"), rss0, rss1, hwm, (c1 - c0).Seconds(), loadavg())
			perOp[n] = map[string]stats{}
			for name, d := range r.byOp {
				perOp[n][name] = summarize(d)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("%d tickets: %w", n, err)
		}
	}
	b.printf("\np50 / p99 by request kind:\n\n| kind |")
	for _, n := range b.scale.sizes {
		b.printf(" %d |", n)
	}
	b.printf("\n|---|")
	for range b.scale.sizes {
		b.printf("---:|")
	}
	b.printf("\n")
	for _, o := range mixedOps {
		b.printf("| %s |", o.name)
		for _, n := range b.scale.sizes {
			st := perOp[n][o.name]
			b.printf(" %s / %s |", ms(st.p50), ms(st.p99))
		}
		b.printf("\n")
	}
	b.printf("\nTargets (issue 9): throughput at 100,000 at least 0.8x the figure at 1,000; RSS under 150 MB after an hour of load at 100,000.\n\n")
	return nil
}

// mixedResult is what one mixed run measured.
type mixedResult struct {
	count, errors int
	took          time.Duration
	all           []time.Duration
	byOp          map[string][]time.Duration
}

// runMixed sends the mixed load to d from clients clients until duration
// has passed; ids are the tickets replies, updates and reads go to, n the
// number the seeded store holds (creates continue its corpus).
func runMixed(ctx context.Context, d *daemon, ids []bson.ObjectID, n, clients int, duration time.Duration) (mixedResult, error) {
	adm, err := api.NewToken(d.secret, bson.NewObjectID(), api.RoleAdmin, "", 24*time.Hour, time.Now())
	if err != nil {
		return mixedResult{}, err
	}
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	res := mixedResult{byOp: map[string][]time.Duration{}}
	var mu sync.Mutex
	var firstErr error
	weights := make([]int, len(mixedOps))
	for i, o := range mixedOps {
		weights[i] = o.weight
	}
	start := time.Now()
	stopAt := start.Add(duration)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := mrand.New(mrand.NewPCG(uint64(c), uint64(n)))
			for k := 0; time.Now().Before(stopAt) && ctx.Err() == nil; k++ {
				op := weighted(r, mixedOps, weights)
				req, err := mixedRequest(ctx, d, r, op.name, ids, n+c*1_000_000+k, adm)
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				t0 := time.Now()
				resp, err := client.Do(req)
				took := time.Since(t0)
				failed := err != nil
				if err == nil {
					_, _ = bytes.NewBuffer(nil).ReadFrom(resp.Body)
					resp.Body.Close()
					failed = resp.StatusCode >= 300
				}
				mu.Lock()
				res.count++
				res.all = append(res.all, took)
				res.byOp[op.name] = append(res.byOp[op.name], took)
				if failed {
					res.errors++
					if res.errors == 1 {
						fmt.Fprintf(os.Stderr, "mixed load: %s failed: %v %v\n", op.name, err, statusOf(resp))
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.took = time.Since(start)
	if firstErr != nil {
		return res, firstErr
	}
	if res.count == 0 {
		return res, errors.New("mixed load: no request finished")
	}
	return res, nil
}

func statusOf(r *http.Response) string {
	if r == nil {
		return ""
	}
	return r.Status
}

// mixedRequest builds one request of the mixed load; k numbers it, so a
// create makes corpus ticket k.
func mixedRequest(ctx context.Context, d *daemon, r *mrand.Rand, kind string, ids []bson.ObjectID, k int, adm string) (*http.Request, error) {
	id := ids[r.IntN(len(ids))].Hex()
	var method, path string
	var body any
	tok := adm
	switch kind {
	case "read: first page":
		method, path = "GET", "/api/ticket/admin-fetch?limit=50"
	case "read: filtered page":
		method, path = "GET", fmt.Sprintf("/api/ticket/admin-fetch?limit=50&status=%s&priority=%s",
			store.Statuses[r.IntN(len(store.Statuses))], store.Priorities[r.IntN(len(store.Priorities))])
	case "read: one ticket":
		method, path = "GET", "/api/ticket/admin-fetch-one?id="+id
	case "reply":
		p := planTicket(k)
		method, path, body = "POST", "/api/ticket/admin-create-reply?id="+id, map[string]string{"description": p.replies[0].text}
	case "update":
		method, path = "PATCH", "/api/ticket/admin-update?id="+id
		body = map[string]string{"status": string(store.Statuses[r.IntN(len(store.Statuses))]),
			"priority": string(store.Priorities[r.IntN(len(store.Priorities))])}
	case "create":
		p := planTicket(k)
		var err error
		tok, err = api.NewToken(d.secret, personID("customer", p.team, p.customer), api.RoleCustomer, p.team, time.Hour, time.Now())
		if err != nil {
			return nil, err
		}
		method, path = "POST", "/api/ticket/create"
		body = map[string]string{"category": p.category, "subject": p.subject, "description": p.description, "priority": string(p.priority)}
	default:
		return nil, fmt.Errorf("unknown request kind %q", kind)
	}
	var rd *bytes.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequestWithContext(ctx, method, d.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}
