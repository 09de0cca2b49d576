package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestEmbeddedUpdatesUseAnIndex proves that the embedded server's update
// and lookup by _id do not scan the table: SQLite's own query planner is
// asked about the exact statements the backend runs, for every collection.
// (BenchmarkEmbeddedUpdateScaling measures the same thing in time.)
func TestEmbeddedUpdatesUseAnIndex(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	s, err := Open(ctx, OpenOptions{DataDir: dir, Database: "plan"}) // always embedded
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if !s.serial {
		t.Fatal("the embedded store must run serialized (updates filtered on _id only)")
	}
	// Write something so every table has rows.
	if _, _, err := s.CreateTicket(ctx, NewTicket{Creator: Actor{Type: CreatorCustomer}, TeamID: "t", Subject: "s"}); err != nil {
		t.Fatal(err)
	}

	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "plan.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT name, table_name FROM _ferretdb_collections`)
	if err != nil {
		t.Fatal(err)
	}
	tables := map[string]string{}
	for rows.Next() {
		var name, table string
		if err := rows.Scan(&name, &table); err != nil {
			t.Fatal(err)
		}
		tables[name] = table
	}
	rows.Close()
	for _, name := range Collections() {
		table, ok := tables[name]
		if !ok {
			t.Errorf("collection %s was not created at start", name)
			continue
		}
		for _, stmt := range []string{
			`UPDATE %q SET _ferretdb_sjson = ? WHERE _ferretdb_sjson->'$._id' = ?`,
			`SELECT _ferretdb_sjson FROM %q WHERE _ferretdb_sjson->'$._id' = ?`,
		} {
			plan := explain(t, db, fmt.Sprintf(stmt, table), "x", "y")
			if !strings.Contains(plan, "USING INDEX") || strings.Contains(plan, "SCAN") {
				t.Errorf("%s: %q plans as %q, want an index search", name, stmt[:6], plan)
			}
		}
	}
}

// explain returns SQLite's plan for a query, its steps joined by "; ".
func explain(t *testing.T, db *sql.DB, q string, args ...any) string {
	t.Helper()
	rows, err := db.Query("EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		t.Fatalf("explain %s: %v", q, err)
	}
	defer rows.Close()
	var details []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		details = append(details, detail)
	}
	return strings.Join(details, "; ")
}
