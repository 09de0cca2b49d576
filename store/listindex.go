package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fastjson"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// listIndex answers listings, keyword search, look-ups by number or source
// key and the outbox sweep on the embedded server, whose query engine uses
// no index but _id's (every other query decodes every document: 0.45 ms a
// ticket, so a sweep of 100,000 tickets never finished).
//
// It lives inside the embedded server's own SQLite file: a narrow table of
// the fields listings filter and sort on (ticketd_listing), a count per
// team/status/priority/category (ticketd_counts), an FTS5 trigram index
// of subjects and descriptions (ticketd_search) and one of their one- and
// two-character grams (ticketd_short, shortgrams.go). SQLite triggers on the
// server's tickets table keep them in step, inside the very transaction that
// writes the document: there is no moment at which the document is written
// and the index is not, so no crash (kill -9, power loss) can leave them
// apart, and writes from any client of the server are covered, not only
// this process's. A listing reads the page's ids and the page's documents
// in one SQLite read transaction, a consistent snapshot.
//
// A store without the index, or with one of another version, rebuilds it at
// open, in one transaction with the triggers' creation.
type listIndex struct {
	db    *sql.DB
	table string // the embedded server's tickets table, quoted for SQL
	queue string // its outbox table, quoted (queueindex.go)
	log   *slog.Logger

	// tickets decodes the stored ticket documents (sjson.go), without
	// their audit log and outbox; parsers keeps its parsers between
	// listings, with the memory each grew to.
	tickets *sjsonDecoder
	parsers sync.Pool

	folds       *foldCheck   // foldcheck.go
	keywords    keywordCache // search.go
	rareMatches int          // a keyword with at most this many matches is sorted, not walked (tests lower it)
}

// listIndexVersion changes whenever the tables or triggers below change;
// a store opened with another version rebuilds them.
const listIndexVersion = "6"

// field is the SQL for a top-level field of a row of the tickets table
// (row is "new" or "old" in a trigger, the table alias in a query).
func field(row, name string) string {
	return fmt.Sprintf("%s._ferretdb_sjson->>'$.%s'", row, name)
}

// fieldOr is field, or def where the document has no such field.
func fieldOr(row, name, def string) string {
	return "coalesce(" + field(row, name) + ", " + def + ")"
}

// listingValues is the ticketd_listing row of a tickets row.
func listingValues(row string) string {
	return strings.Join([]string{
		field(row, "_id"),
		field(row, "refId"),
		field(row, "sourceKey"),
		fieldOr(row, "teamId", "''"),
		fieldOr(row, "creatorId", "''"),
		fieldOr(row, "status", "''"),
		fieldOr(row, "priority", "''"),
		fieldOr(row, "category", "''"),
		fieldOr(row, "updatedAt", "0"),
		fieldOr(row, "isDelete", "0"),
		fmt.Sprintf("coalesce(json_array_length(%s._ferretdb_sjson, '$.outbox'), 0)", row),
		fieldOr(row, "createdAt", "0"),
		fieldOr(row, "creatorType", "''"),
		row + "._ferretdb_sjson->>'$.firstResponse.respondedAt' IS NOT NULL",
		row + "._ferretdb_sjson->>'$.firstResponse.breachedAt' IS NOT NULL",
	}, ", ")
}

const listingColumns = "id, ref, source_key, team, creator, status, priority, category, updated, deleted, outbox, " +
	"created, creator_type, responded, breached"

// openListing is the condition of the partial index on open tickets; a
// query must repeat it word for word for SQLite to use that index.
const openListing = "deleted = 0 AND status IN ('created', 'open', 'in-progress')"

// listIndexSchema creates the tables and triggers for the tickets table t.
func listIndexSchema(t string) []string {
	upsert := func(row string) string {
		return `INSERT INTO ticketd_listing(` + listingColumns + `) VALUES (` + listingValues(row) + `)
			ON CONFLICT(id) DO UPDATE SET ref = excluded.ref, source_key = excluded.source_key, team = excluded.team,
			creator = excluded.creator, status = excluded.status, priority = excluded.priority, category = excluded.category,
			updated = excluded.updated, deleted = excluded.deleted, outbox = excluded.outbox, created = excluded.created,
			creator_type = excluded.creator_type, responded = excluded.responded, breached = excluded.breached;`
	}
	// The search rows of a ticket share its listing row's rid.
	ridOf := func(row string) string {
		return `(SELECT rid FROM ticketd_listing WHERE id = ` + field(row, "_id") + `)`
	}
	reindex := func(row, when string) string {
		rid := ridOf(row)
		return `DELETE FROM ticketd_search WHERE rowid = ` + rid + ` AND ` + when + `;
			DELETE FROM ticketd_short WHERE rowid = ` + rid + ` AND ` + when + `;
			INSERT INTO ticketd_search(rowid, subject, description)
			SELECT rid, coalesce(` + field(row, "subject") + `, ''), coalesce(` + field(row, "description") + `, '')
			FROM ticketd_listing WHERE id = ` + field(row, "_id") + ` AND ` + when + `;
			INSERT INTO ticketd_short(rowid, grams) SELECT rowid, ` + shortGrams("subject") + ` || ` + shortGrams("description") + `
			FROM ticketd_search WHERE rowid = ` + rid + ` AND ` + when + `;`
	}
	textChanged := "(" + field("old", "subject") + " IS NOT " + field("new", "subject") +
		" OR " + field("old", "description") + " IS NOT " + field("new", "description") + ")"
	live := func(row string) string { return row + ".deleted = 0" }
	// Every change of the text a search matched, or of which rows exist
	// below the highest, advances the text generation (search.go).
	bumpTextGen := `UPDATE ticketd_meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'textGen';`
	sameGroup := "team = old.team AND status = old.status AND priority = old.priority AND category = old.category"
	partial := func(name, cols string) string {
		return `CREATE INDEX ticketd_listing_` + name + ` ON ticketd_listing(` + cols + `updated DESC, id DESC) WHERE deleted = 0`
	}
	return slices.Concat([]string{
		`CREATE TABLE ticketd_listing (
			rid INTEGER PRIMARY KEY,
			id TEXT NOT NULL UNIQUE, -- the ticket's _id, hex
			ref INTEGER,
			source_key TEXT,
			team TEXT NOT NULL, creator TEXT NOT NULL, status TEXT NOT NULL, priority TEXT NOT NULL, category TEXT NOT NULL,
			updated INTEGER NOT NULL, -- ms since the epoch
			deleted INTEGER NOT NULL,
			outbox INTEGER NOT NULL, -- events in the document not yet relayed
			created INTEGER NOT NULL, -- ms since the epoch
			creator_type TEXT NOT NULL,
			responded INTEGER NOT NULL, -- firstResponse.respondedAt is set
			breached INTEGER NOT NULL -- firstResponse.breachedAt is set
		)`,
		partial("updated", ""),
		partial("team", "team, "),
		partial("creator", "creator, "),
		partial("status", "status, "),
		partial("priority", "priority, "),
		partial("category", "category, "),
		`CREATE INDEX ticketd_listing_ref ON ticketd_listing(ref)`,
		`CREATE INDEX ticketd_listing_source_key ON ticketd_listing(source_key)`,
		`CREATE INDEX ticketd_listing_outbox ON ticketd_listing(rid) WHERE outbox > 0`,
		// A search's count takes the deleted tickets out of its matches.
		`CREATE INDEX ticketd_listing_deleted ON ticketd_listing(rid) WHERE deleted = 1`,
		// The scheduled jobs' questions are about open tickets, oldest first.
		`CREATE INDEX ticketd_listing_open ON ticketd_listing(created, id) WHERE ` + openListing,
		`CREATE TABLE ticketd_counts (
			team TEXT NOT NULL, status TEXT NOT NULL, priority TEXT NOT NULL, category TEXT NOT NULL,
			n INTEGER NOT NULL,
			PRIMARY KEY (team, status, priority, category)
		) WITHOUT ROWID`,
		`CREATE VIRTUAL TABLE ticketd_search USING fts5(subject, description, tokenize = 'trigram case_sensitive 0')`,
	}, shortGramSchema, []string{
		// Counts follow the listing rows.
		`CREATE TRIGGER ticketd_counts_insert AFTER INSERT ON ticketd_listing WHEN ` + live("new") + ` BEGIN
			INSERT INTO ticketd_counts VALUES (new.team, new.status, new.priority, new.category, 1)
			ON CONFLICT DO UPDATE SET n = n + 1;
		END`,
		`CREATE TRIGGER ticketd_counts_delete AFTER DELETE ON ticketd_listing WHEN ` + live("old") + ` BEGIN
			UPDATE ticketd_counts SET n = n - 1 WHERE ` + sameGroup + `;
		END`,
		`CREATE TRIGGER ticketd_counts_update AFTER UPDATE ON ticketd_listing
		WHEN old.team IS NOT new.team OR old.status IS NOT new.status OR old.priority IS NOT new.priority
			OR old.category IS NOT new.category OR old.deleted IS NOT new.deleted BEGIN
			UPDATE ticketd_counts SET n = n - 1 WHERE ` + live("old") + ` AND ` + sameGroup + `;
			INSERT INTO ticketd_counts SELECT new.team, new.status, new.priority, new.category, 1 WHERE ` + live("new") + `
			ON CONFLICT DO UPDATE SET n = n + 1;
		END`,

		// The listing and search rows follow the documents.
		`CREATE TRIGGER ticketd_tickets_insert AFTER INSERT ON ` + t + ` BEGIN
			` + upsert("new") + `
			` + reindex("new", "1") + `
		END`,
		`CREATE TRIGGER ticketd_tickets_update AFTER UPDATE ON ` + t + ` BEGIN
			` + upsert("new") + `
		END`,
		// Only an edit touches the search index; most updates (replies,
		// status) leave the text as it was.
		`CREATE TRIGGER ticketd_tickets_retext AFTER UPDATE ON ` + t + ` WHEN ` + textChanged + ` BEGIN
			` + reindex("new", "1") + `
			` + bumpTextGen + `
		END`,
		`CREATE TRIGGER ticketd_tickets_delete AFTER DELETE ON ` + t + ` BEGIN
			DELETE FROM ticketd_search WHERE rowid = ` + ridOf("old") + `;
			DELETE FROM ticketd_short WHERE rowid = ` + ridOf("old") + `;
			DELETE FROM ticketd_listing WHERE id = ` + field("old", "_id") + `;
			` + bumpTextGen + `
		END`,

		// What is there already.
		`INSERT INTO ticketd_listing(` + listingColumns + `) SELECT ` + listingValues(t) + ` FROM ` + t,
		`INSERT INTO ticketd_search(rowid, subject, description)
			SELECT l.rid, coalesce(` + field(t, "subject") + `, ''), coalesce(` + field(t, "description") + `, '')
			FROM ` + t + ` JOIN ticketd_listing l ON l.id = ` + field(t, "_id"),
		`INSERT INTO ticketd_short(rowid, grams) SELECT rowid, ` + shortGrams("subject") + ` || ` + shortGrams("description") + ` FROM ticketd_search`,
	})
}

// listIndexDrops are what a rebuild drops first (the triggers on the
// index's own tables go with them).
var listIndexDrops = []string{
	"DROP TRIGGER IF EXISTS ticketd_tickets_insert", "DROP TRIGGER IF EXISTS ticketd_tickets_update",
	"DROP TRIGGER IF EXISTS ticketd_tickets_delete", "DROP TRIGGER IF EXISTS ticketd_tickets_retext",
	"DROP TABLE IF EXISTS ticketd_search", "DROP TABLE IF EXISTS ticketd_short", "DROP TABLE IF EXISTS ticketd_positions",
	"DROP TABLE IF EXISTS ticketd_counts", "DROP TABLE IF EXISTS ticketd_listing",
}

// openListIndex opens the index in the embedded server's SQLite file,
// building it when it is missing, of another version, or not attached to
// the current tickets table.
func openListIndex(ctx context.Context, file string, log *slog.Logger) (*listIndex, error) {
	db, err := sql.Open("sqlite", "file:"+file+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return nil, fmt.Errorf("open listing index in %s: %w", file, err)
	}
	db.SetMaxOpenConns(4)
	ix := &listIndex{db: db, log: log, rareMatches: rareMatches}
	ix.parsers.New = func() any { return new(fastjson.Parser) }
	if ix.tickets, err = newSJSONDecoder[Ticket]("logs", "outbox"); err != nil {
		db.Close()
		return nil, err
	}
	if ix.folds, err = newFoldCheck(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := ix.prepare(ctx); err != nil {
		ix.close()
		return nil, fmt.Errorf("listing index in %s: %w", file, err)
	}
	return ix, nil
}

func (ix *listIndex) close() error { return errors.Join(ix.db.Close(), ix.folds.close()) }

func (ix *listIndex) prepare(ctx context.Context) error {
	var table string
	err := ix.db.QueryRowContext(ctx, `SELECT table_name FROM _ferretdb_collections WHERE name = ?`, colTickets).Scan(&table)
	if err != nil {
		return fmt.Errorf("find the tickets table: %w", err)
	}
	ix.table = `"` + table + `"`
	var queue string
	err = ix.db.QueryRowContext(ctx, `SELECT table_name FROM _ferretdb_collections WHERE name = ?`, colOutbox).Scan(&queue)
	if err != nil {
		return fmt.Errorf("find the outbox table: %w", err)
	}
	ix.queue = `"` + queue + `"`
	if _, err := ix.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS ticketd_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`); err != nil {
		return err
	}
	var version string
	err = ix.db.QueryRowContext(ctx, `SELECT value FROM ticketd_meta WHERE key = 'listIndex'`).Scan(&version)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	var attached, queued int
	err = ix.db.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE tbl_name = ?), count(*) FILTER (WHERE tbl_name = ?)
		FROM sqlite_master WHERE type = 'trigger'`, table, queue).Scan(&attached, &queued)
	if err != nil {
		return err
	}
	if version == listIndexVersion && attached == 4 && queued == 3 {
		return nil
	}
	return ix.rebuild(ctx, version)
}

// rebuild drops and recreates the index and fills it from the documents,
// in one write transaction: no write of the server can fall between the
// fill and the triggers.
func (ix *listIndex) rebuild(ctx context.Context, was string) error {
	start := time.Now()
	conn, err := ix.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	stmts := append(slices.Concat(listIndexDrops, queueDrops, listIndexSchema(ix.table)), queueSchema(ix.queue)...)
	stmts = append(stmts, `INSERT INTO ticketd_meta VALUES ('listIndex', '`+listIndexVersion+`')
		ON CONFLICT(key) DO UPDATE SET value = excluded.value`,
		`INSERT INTO ticketd_meta VALUES ('textGen', '0') ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1`)
	for _, q := range stmts {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			_, _ = conn.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`)
			return fmt.Errorf("rebuild: %w\n%s", err, q)
		}
	}
	if _, err := conn.ExecContext(ctx, `COMMIT`); err != nil {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`)
		return fmt.Errorf("rebuild: %w", err)
	}
	var n int64
	_ = ix.db.QueryRowContext(ctx, `SELECT count(*) FROM ticketd_listing`).Scan(&n)
	ix.log.Info("listing index built", "tickets", n, "previous_version", was, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// where renders a listing's filters but the keyword (search.go) as SQL
// over ticketd_listing l.
func (q ListQuery) where() (string, []any) {
	conds := []string{"l.deleted = 0"}
	var args []any
	add := func(cond string, v any) {
		conds = append(conds, cond)
		args = append(args, v)
	}
	if q.TeamID != "" {
		add("l.team = ?", q.TeamID)
	}
	if !q.CreatorID.IsZero() {
		add("l.creator = ?", q.CreatorID.Hex())
	}
	if q.Status != "" {
		add("l.status = ?", string(q.Status))
	}
	if q.Priority != "" {
		add("l.priority = ?", string(q.Priority))
	}
	if q.Category != "" {
		add("l.category = ?", q.Category)
	}
	return strings.Join(conds, " AND "), args
}

// list returns one page of tickets and the number matching, read in one
// snapshot.
func (ix *listIndex) list(ctx context.Context, q ListQuery) ([]Ticket, int64, error) {
	tx, err := ix.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("list tickets: %w", unreadable(err))
	}
	defer tx.Rollback()
	if q.Keyword != "" {
		ids, total, err := ix.search(ctx, tx, q)
		if err != nil {
			return nil, 0, fmt.Errorf("search tickets: %w", err)
		}
		tickets, err := ix.read(ctx, tx, ids)
		if err != nil {
			return nil, 0, fmt.Errorf("search tickets: %w", err)
		}
		return tickets, total, nil
	}
	where, args := q.where()
	ids, err := queryStrings(ctx, tx, `SELECT l.id FROM ticketd_listing l WHERE `+where+
		` ORDER BY l.updated DESC, l.id DESC LIMIT ? OFFSET ?`, append(args, q.Limit, q.Offset)...)
	if err != nil {
		return nil, 0, fmt.Errorf("list tickets: %w", unreadable(err))
	}
	var total int64
	if q.CreatorID.IsZero() {
		total, err = countListed(ctx, tx, where, args)
	} else {
		err = tx.QueryRowContext(ctx, `SELECT count(*) FROM ticketd_listing l WHERE `+where, args...).Scan(&total)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("count tickets: %w", unreadable(err))
	}
	tickets, err := ix.read(ctx, tx, ids)
	if err != nil {
		return nil, 0, fmt.Errorf("list tickets: %w", err)
	}
	return tickets, total, nil
}

// countListed counts the live tickets passing where (from ListQuery.where,
// without a creator: the counts table has a row per team, status, priority
// and category, not per creator).
func countListed(ctx context.Context, tx *sql.Tx, where string, args []any) (int64, error) {
	var n int64
	where = strings.NewReplacer("l.deleted = 0", "1", "l.", "").Replace(where)
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(sum(n), 0) FROM ticketd_counts WHERE `+where, args...).Scan(&n); err != nil {
		return 0, unreadable(err)
	}
	return n, nil
}

// openTickets returns, oldest first, at most limit open tickets (created,
// open or in progress) that also meet cond, an SQL condition on
// ticketd_listing's columns ("1" for none).
func (ix *listIndex) openTickets(ctx context.Context, cond string, limit int) ([]Ticket, error) {
	tx, err := ix.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, unreadable(err)
	}
	defer tx.Rollback()
	ids, err := queryStrings(ctx, tx, `SELECT id FROM ticketd_listing WHERE `+openListing+` AND `+cond+
		` ORDER BY created, id LIMIT ?`, limit)
	if err != nil {
		return nil, unreadable(err)
	}
	return ix.read(ctx, tx, ids)
}

// read decodes the documents of ids, in that order, without their audit
// log and outbox (withoutHistory).
func (ix *listIndex) read(ctx context.Context, tx *sql.Tx, ids []string) ([]Ticket, error) {
	out := make([]Ticket, 0, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	// The _id expression is the one the embedded server's _id index (and
	// fixEmbeddedIDIndexes's) is on; its value is the id as JSON text.
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = `"` + id + `"`
	}
	rows, err := tx.QueryContext(ctx, `SELECT _ferretdb_sjson FROM `+ix.table+
		` WHERE _ferretdb_sjson->'$._id' IN (?`+strings.Repeat(", ?", len(ids)-1)+`)`, args...)
	if err != nil {
		return nil, unreadable(err)
	}
	defer rows.Close()
	docs := make(map[string]Ticket, len(ids))
	p := ix.parsers.Get().(*fastjson.Parser)
	defer ix.parsers.Put(p)
	var doc sql.RawBytes // converted before the next row
	for rows.Next() {
		if err := rows.Scan(&doc); err != nil {
			return nil, unreadable(err)
		}
		var t Ticket
		if err := ix.tickets.decodeInto(p, doc, &t); err != nil {
			return nil, fmt.Errorf("stored ticket: %w", err)
		}
		docs[t.ID.Hex()] = t
	}
	if err := rows.Err(); err != nil {
		return nil, unreadable(err)
	}
	for _, id := range ids {
		if t, ok := docs[id]; ok { // both read in one snapshot: always there
			out = append(out, t)
		}
	}
	return out, nil
}

// idBy finds the id of the ticket whose column (ref or source_key) holds v;
// ErrNotFound when none does.
func (ix *listIndex) idBy(ctx context.Context, column string, v any) (bson.ObjectID, error) {
	var hex string
	err := ix.db.QueryRowContext(ctx, `SELECT id FROM ticketd_listing WHERE `+column+` = ? LIMIT 1`, v).Scan(&hex)
	if errors.Is(err, sql.ErrNoRows) {
		return bson.NilObjectID, ErrNotFound
	}
	if err != nil {
		return bson.NilObjectID, fmt.Errorf("look up ticket by %s: %w", column, unreadable(err))
	}
	return bson.ObjectIDFromHex(hex)
}

// withEvents returns the ids of the tickets holding events not yet relayed.
func (ix *listIndex) withEvents(ctx context.Context) ([]bson.ObjectID, error) {
	hexes, err := queryStrings(ctx, ix.db, `SELECT id FROM ticketd_listing WHERE outbox > 0`)
	if err != nil {
		return nil, fmt.Errorf("find tickets with events: %w", unreadable(err))
	}
	ids := make([]bson.ObjectID, 0, len(hexes))
	for _, h := range hexes {
		id, err := bson.ObjectIDFromHex(h)
		if err != nil {
			return nil, fmt.Errorf("find tickets with events: %w", err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// unreadable marks a failure to read the index as the store being
// unavailable (the API's 503), as a failure to reach MongoDB is; a closed
// store and a locked or broken file are both that to a caller.
func unreadable(err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	return errors.Join(ErrUnavailable, err)
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func queryStrings(ctx context.Context, db querier, q string, args ...any) ([]string, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
