package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// The delivery queue on the process's own embedded server. FerretDB pushes
// a filter down to SQLite only when it is exactly {_id}; any other query of
// the outbox decodes every delivery in it. A claim, a relay's count and a
// completion each did, so a queue of 2,000 acknowledgements after a burst
// (or an SMTP outage) cost 2,000 decodes per delivery, several times over.
//
// So the listing index's file also holds ticketd_queue: a row per delivery
// with what the queue is ordered and looked up by, kept in step by triggers
// on the server's outbox table, in the transaction of each write, like the
// listing. The store finds a delivery's id there and reads and writes the
// delivery by _id, checking in Go what the filter used to check; every
// write of an existing delivery holds claimMu, so what was checked cannot
// change before the write (this process is the database's only client).

// queueColumns and queueValues are a ticketd_queue row of an outbox row.
const queueColumns = "id, sink, ticket, state, seq, next"

func queueValues(row string) string {
	return strings.Join([]string{
		field(row, "_id"),
		fieldOr(row, "sink", "''"),
		fieldOr(row, "ticketId", "''"),
		fieldOr(row, "state", "''"),
		fieldOr(row, "seq", "0"),
		fieldOr(row, "nextAttemptAt", "0"),
	}, ", ")
}

// queueSchema creates the queue table and its triggers for the outbox
// table o, and fills it.
func queueSchema(o string) []string {
	upsert := func(row string) string {
		return `INSERT INTO ticketd_queue(` + queueColumns + `) VALUES (` + queueValues(row) + `)
			ON CONFLICT(id) DO UPDATE SET sink = excluded.sink, ticket = excluded.ticket, state = excluded.state,
			seq = excluded.seq, next = excluded.next;`
	}
	return []string{
		`CREATE TABLE ticketd_queue (
			id TEXT PRIMARY KEY, -- the delivery's _id
			sink TEXT NOT NULL, ticket TEXT NOT NULL, state TEXT NOT NULL,
			seq INTEGER NOT NULL,
			next INTEGER NOT NULL -- nextAttemptAt, ms since the epoch
		) WITHOUT ROWID`,
		`CREATE INDEX ticketd_queue_due ON ticketd_queue(sink, state, next, id)`,
		`CREATE INDEX ticketd_queue_ticket ON ticketd_queue(ticket, sink, state, seq, id)`,
		`CREATE TRIGGER ticketd_outbox_insert AFTER INSERT ON ` + o + ` BEGIN ` + upsert("new") + ` END`,
		`CREATE TRIGGER ticketd_outbox_update AFTER UPDATE ON ` + o + ` BEGIN ` + upsert("new") + ` END`,
		`CREATE TRIGGER ticketd_outbox_delete AFTER DELETE ON ` + o + ` BEGIN
			DELETE FROM ticketd_queue WHERE id = ` + field("old", "_id") + `;
		END`,
		`INSERT INTO ticketd_queue(` + queueColumns + `) SELECT ` + queueValues(o) + ` FROM ` + o,
	}
}

// queueDrops are what a rebuild drops first.
var queueDrops = []string{
	"DROP TRIGGER IF EXISTS ticketd_outbox_insert", "DROP TRIGGER IF EXISTS ticketd_outbox_update",
	"DROP TRIGGER IF EXISTS ticketd_outbox_delete", "DROP TABLE IF EXISTS ticketd_queue",
}

// ownQueue reports whether the outbox is this process's own embedded
// server's, with ticketd_queue beside it.
func (s *Store) ownQueue() bool { return s.serial && s.index != nil }

// dueDelivery is the id of the delivery to sink due first at now.
func (ix *listIndex) dueDelivery(ctx context.Context, sink string, now time.Time) (string, error) {
	var id string
	err := ix.db.QueryRowContext(ctx, `SELECT id FROM ticketd_queue WHERE sink = ? AND state = ? AND next <= ?
		ORDER BY next, id LIMIT 1`, sink, string(DeliveryPending), now.UnixMilli()).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("find a due %s delivery: %w", sink, unreadable(err))
	}
	return id, nil
}

// queuedFor reports whether ticket has a delivery to sink in one of states.
func (ix *listIndex) queuedFor(ctx context.Context, ticket bson.ObjectID, sink string, states ...DeliveryState) (bool, error) {
	args := []any{ticket.Hex(), sink}
	for _, st := range states {
		args = append(args, string(st))
	}
	var n int
	err := ix.db.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM ticketd_queue WHERE ticket = ? AND sink = ?
		AND state IN (?`+strings.Repeat(", ?", len(states)-1)+`) LIMIT 1)`, args...).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("find the deliveries of %s/%s: %w", ticket.Hex(), sink, unreadable(err))
	}
	return n > 0, nil
}

// firstWaiting is the id of ticket's earliest waiting delivery to sink.
func (ix *listIndex) firstWaiting(ctx context.Context, ticket bson.ObjectID, sink string) (string, error) {
	var id string
	err := ix.db.QueryRowContext(ctx, `SELECT id FROM ticketd_queue WHERE ticket = ? AND sink = ? AND state = ?
		ORDER BY seq, id LIMIT 1`, ticket.Hex(), sink, string(DeliveryWaiting)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("find the next delivery of %s/%s: %w", ticket.Hex(), sink, unreadable(err))
	}
	return id, nil
}
