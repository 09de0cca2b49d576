package store

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

const indexWriterDir = "TICKETD_TEST_INDEX_WRITER_DIR"

// TestMain makes the test binary, run by TestIndexSurvivesKill with
// indexWriterDir set, the writer it kills instead of the tests.
func TestMain(m *testing.M) {
	if dir := os.Getenv(indexWriterDir); dir != "" {
		writeTicketsUntilKilled(dir)
	}
	os.Exit(m.Run())
}

// writeTicketsUntilKilled writes tickets into the store in dir until the
// process is killed, saying "wrote N" after each write.
func writeTicketsUntilKilled(dir string) {
	ctx := context.Background()
	s, err := Open(ctx, OpenOptions{DataDir: dir, Database: "crash", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	admin := Actor{ID: bson.NewObjectID(), Type: CreatorAdmin}
	for i := 0; ; i++ {
		cust := Actor{ID: bson.NewObjectID(), Type: CreatorCustomer}
		tk, _, err := s.CreateTicket(ctx, NewTicket{Creator: cust,
			TeamID: fmt.Sprint("team-", i%3), Subject: fmt.Sprintf("printer %d jammed", i), Description: "paper everywhere",
			Priority: Priorities[i%len(Priorities)]})
		if err == nil {
			st := Statuses[i%len(Statuses)]
			_, err = s.UpdateTicket(ctx, tk.ID, AllTickets, TicketUpdate{Status: &st}, admin)
		}
		if err == nil {
			_, _, err = s.EditOpening(ctx, tk.ID, AllTickets, fmt.Sprintf("scanner %d", i), "toner low", cust)
		}
		if err == nil && i%4 == 0 {
			_, err = s.DeleteTicket(ctx, tk.ID, AllTickets, admin)
		}
		if err != nil {
			fmt.Println("write:", err)
			os.Exit(2)
		}
		fmt.Printf("wrote %d\n", i)
	}
}

// The listing index is kept by triggers inside the document's own SQLite
// transaction, so there is no point between the document write and the
// index write for a crash to fall into. This kills a writer (kill -9, at
// whatever point of a write it happens to be) several times and checks
// after each restart that the index says exactly what the documents say.
func TestIndexSurvivesKill(t *testing.T) {
	dir := t.TempDir()
	for round := 1; round <= 3; round++ {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), indexWriterDir+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(out)
		for wrote := 0; wrote < 10*round; {
			if !lines.Scan() {
				cmd.Wait()
				t.Fatalf("round %d: the writer stopped: %v", round, lines.Err())
			}
			if strings.HasPrefix(lines.Text(), "wrote ") {
				wrote++
			} else {
				t.Logf("writer: %s", lines.Text())
			}
		}
		// Kill it in the middle of its next writes.
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		go io.Copy(io.Discard, out)
		cmd.Wait()

		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		s, err := Open(ctx, OpenOptions{DataDir: dir, Database: "crash", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		n := checkIndexMatchesDocuments(t, ctx, s)
		t.Logf("round %d: %d tickets, index agrees", round, n)
		s.Close(ctx)
		cancel()
	}
}

// checkIndexMatchesDocuments compares the listing, counts and search tables
// with the ticket documents, read through the server, and returns how many
// tickets there are.
func checkIndexMatchesDocuments(t *testing.T, ctx context.Context, s *Store) int {
	t.Helper()
	cur, err := s.tickets.Find(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	var docs []Ticket
	if err := cur.All(ctx, &docs); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	wantText := map[string]string{}
	groups := map[string]int{}
	for _, d := range docs {
		del := 0
		if d.IsDelete {
			del = 1
		} else {
			groups[fmt.Sprint(d.TeamID, "|", d.Status, "|", d.Priority, "|", d.Category)]++
		}
		want[d.ID.Hex()] = fmt.Sprint(d.RefID, d.SourceKey, d.TeamID, d.CreatorID.Hex(), d.Status, d.Priority, d.Category,
			d.UpdatedAt.UnixMilli(), del, len(d.Outbox), d.CreatedAt.UnixMilli(), d.CreatorType,
			d.FirstResponse != nil && d.FirstResponse.RespondedAt != nil, d.FirstResponse != nil && d.FirstResponse.BreachedAt != nil)
		wantText[d.ID.Hex()] = d.Subject + "|" + d.Description
	}
	got := map[string]string{}
	gotText := map[string]string{}
	eachRow(t, s.index.db, `SELECT l.id, l.ref, l.source_key, l.team, l.creator, l.status, l.priority, l.category, l.updated, l.deleted, l.outbox,
		l.created, l.creator_type, l.responded = 1, l.breached = 1,
		s.subject || '|' || s.description FROM ticketd_listing l LEFT JOIN ticketd_search s ON s.rowid = l.rid`, func(r []any) {
		id := r[0].(string)
		r[13], r[14] = r[13] == int64(1), r[14] == int64(1)
		got[id] = fmt.Sprint(r[1:15]...)
		if r[15] != nil {
			gotText[id] = r[15].(string)
		}
	})
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("listing table:\n got %v\nwant %v", got, want)
	}
	if fmt.Sprint(gotText) != fmt.Sprint(wantText) {
		t.Errorf("search table:\n got %v\nwant %v", gotText, wantText)
	}
	var searchRows int
	if err := s.index.db.QueryRowContext(ctx, `SELECT count(*) FROM ticketd_search`).Scan(&searchRows); err != nil || searchRows != len(docs) {
		t.Errorf("search table has %d rows (%v), want %d", searchRows, err, len(docs))
	}
	// The short-keyword index has a row for each, holding its subject's
	// last two characters.
	var shortRows, missing int
	err = s.index.db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM ticketd_short),
		(SELECT count(*) FROM ticketd_search WHERE rowid NOT IN (SELECT rowid FROM ticketd_short))`).Scan(&shortRows, &missing)
	if err != nil || shortRows != len(docs) || missing != 0 {
		t.Errorf("short-keyword table has %d rows, %d search rows not in it (%v), want %d and none", shortRows, missing, err, len(docs))
	}
	for _, d := range docs {
		subject := []rune(d.Subject)
		phrase, _ := shortGramPhrase(string(subject[max(0, len(subject)-2):]))
		var found int
		err := s.index.db.QueryRowContext(ctx, `SELECT count(*) FROM ticketd_short WHERE ticketd_short MATCH ?
			AND rowid = (SELECT rid FROM ticketd_listing WHERE id = ?)`, phrase, d.ID.Hex()).Scan(&found)
		if err != nil || found != 1 {
			t.Errorf("ticket %s: the end of its subject %q not in the short-keyword table (%v)", d.ID.Hex(), d.Subject, err)
		}
	}
	gotGroups := map[string]int{}
	eachRow(t, s.index.db, `SELECT team, status, priority, category, n FROM ticketd_counts WHERE n != 0`, func(r []any) {
		gotGroups[fmt.Sprint(r[0], "|", r[1], "|", r[2], "|", r[3])] = int(r[4].(int64))
	})
	if fmt.Sprint(gotGroups) != fmt.Sprint(groups) {
		t.Errorf("counts table:\n got %v\nwant %v", gotGroups, groups)
	}
	return len(docs)
}

func eachRow(t *testing.T, db *sql.DB, q string, fn func([]any)) {
	t.Helper()
	rows, err := db.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		fn(vals)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

// A store written before the index existed (or by a version with another
// index) gets it built at open, from the documents.
func TestIndexRebuildsForAnOlderStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := Open(ctx, OpenOptions{DataDir: dir, Database: "old", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 12; i++ {
		if _, _, err := s.CreateTicket(ctx, NewTicket{Creator: Actor{Type: CreatorCustomer}, TeamID: "t", Subject: fmt.Sprint("old ticket ", i)}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close(ctx)

	for _, older := range []struct{ name, sql string }{
		{"no index at all", `DROP TABLE ticketd_search; DROP TABLE ticketd_short; DROP TABLE ticketd_positions; DROP TABLE ticketd_counts; DROP TABLE ticketd_listing; DROP TABLE ticketd_meta`},
		{"an index of another version, out of step", `UPDATE ticketd_meta SET value = '0'; DELETE FROM ticketd_listing WHERE rid % 2 = 0`},
		{"the triggers gone", `DROP TRIGGER ticketd_tickets_update`},
	} {
		db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "old.sqlite"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(older.sql); err != nil {
			t.Fatalf("%s: %v", older.name, err)
		}
		db.Close()
		s, err := Open(ctx, OpenOptions{DataDir: dir, Database: "old", Logger: quiet})
		if err != nil {
			t.Fatalf("%s: %v", older.name, err)
		}
		if n := checkIndexMatchesDocuments(t, ctx, s); n != 12 {
			t.Errorf("%s: %d tickets, want 12", older.name, n)
		}
		for _, keyword := range []string{"OLD TICKET 1", "1", "T 1"} {
			if _, total, err := s.ListTickets(ctx, AllTickets, ListQuery{Keyword: keyword}); err != nil || total != 3 {
				t.Errorf("%s: search for %q found %d (%v), want 3 (1, 10, 11)", older.name, keyword, total, err)
			}
		}
		s.Close(ctx)
	}
}
