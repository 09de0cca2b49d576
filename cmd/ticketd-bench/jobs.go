package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/api"
	"github.com/ticketd/ticketd/internal/upkeep"
	"github.com/ticketd/ticketd/store"
)

// autoCloseSweep: the auto-close job over the large store, a tenth of
// whose tickets are resolved and idle, and the API's first-page latency
// while it runs against the same latency just before (same store, same
// run).
func (b *bench) autoCloseSweep(ctx context.Context) error {
	st, _, cleanup, err := openStore(ctx, b.large)
	if err != nil {
		return err
	}
	defer cleanup()
	// One ticket in ten (team-0's) resolved, through the store as an agent
	// would; found through the listing (the catalog), not a scan.
	team0, _, err := st.ListTickets(ctx, store.AllTickets, store.ListQuery{TeamID: "team-0", Limit: b.large})
	if err != nil {
		return fmt.Errorf("list team-0: %w", err)
	}
	resolved, agent := store.StatusResolved, store.Actor{ID: bson.NewObjectID(), Type: store.CreatorAdmin}
	var want int64
	for _, t := range team0 {
		if _, err := st.UpdateTicket(ctx, t.ID, store.AllTickets, store.TicketUpdate{Status: &resolved}, agent); err != nil {
			return fmt.Errorf("resolve: %w", err)
		}
		want++
	}
	base, secret, stop, err := serveAPI(st)
	if err != nil {
		return err
	}
	defer stop()
	tok, _ := api.NewToken(secret, bson.NewObjectID(), api.RoleAdmin, "", time.Hour, time.Now())
	fetch := func() (time.Duration, error) {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/ticket/admin-fetch", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		start := time.Now()
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		var page struct {
			Data []json.RawMessage `json:"data"`
		}
		err = json.NewDecoder(r.Body).Decode(&page)
		r.Body.Close()
		if r.StatusCode != 200 || err != nil || len(page.Data) != min(50, b.large) {
			return 0, fmt.Errorf("admin-fetch: status %d, %d tickets (%v)", r.StatusCode, len(page.Data), err)
		}
		return time.Since(start), nil
	}
	reqs := min(b.ops, 60)
	var idle []time.Duration
	for range reqs {
		d, err := fetch()
		if err != nil {
			return err
		}
		idle = append(idle, d)
	}

	// Eight days on, every resolved ticket has been idle long enough.
	later := func() time.Time { return time.Now().Add(8 * 24 * time.Hour) }
	job := upkeep.AutoClose(st, 7*24*time.Hour, later, slog.New(slog.NewTextHandler(io.Discard, nil)))
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- job(ctx) }()
	var busy []time.Duration
	var took time.Duration
	for running := true; running || len(busy) < 2; {
		d, err := fetch()
		if err != nil {
			return err
		}
		busy = append(busy, d)
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("auto-close job: %w", err)
			}
			took, running = time.Since(start), false
			done = nil
		default:
		}
	}
	_, closed, err := st.ListTickets(ctx, store.AllTickets, store.ListQuery{Status: store.StatusClosed, Limit: 1})
	if err != nil {
		return fmt.Errorf("count closed: %w", err)
	}
	if closed != want {
		return fmt.Errorf("auto-close closed %d of %d idle resolved tickets", closed, want)
	}
	si, sb := summarize(idle), summarize(busy)
	b.printf("## Auto-close job over %d tickets, %d of them resolved and idle (embedded store)\n\n", b.large, closed)
	b.printf("| | requests | admin-fetch p50 | admin-fetch p99 |\n|---|---:|---:|---:|\n")
	b.printf("| API alone | %d | %s | %s |\n", len(idle), ms(si.p50), ms(si.p99))
	b.printf("| API while the job runs | %d | %s | %s |\n\n", len(busy), ms(sb.p50), ms(sb.p99))
	b.printf("Job: %d tickets closed in %s (%.0f per second).\n\n", closed, took.Round(time.Millisecond), float64(closed)/took.Seconds())
	return nil
}
