// Package store keeps tickets, customers, agents, the audit log and the
// outbox in MongoDB (or the embedded MongoDB-compatible server) and enforces
// the schema's invariants. It imports no other ticketd package.
package store

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"
)

// Collection names.
const (
	colTickets   = "tickets"
	colCustomers = "customers"
	colAgents    = "agents"
	colCounters  = "counters"
	colKeys      = "keys"
	colOutbox    = "outbox"
)

// Options configures a Store. The zero value is usable.
type Options struct {
	// Logger receives the store's log lines; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil means time.Now. Times are kept in UTC with
	// millisecond precision, as BSON dates are.
	Now func() time.Time
	// Serialized says every writer of this database goes through this one
	// Store (true for the embedded server, which only this process opens).
	// Then the in-process ticket locks alone keep read-modify-write safe and
	// updates filter on _id only, the one filter the embedded server can
	// answer from an index. Otherwise updates also compare __v, so that two
	// daemons sharing a MongoDB never overwrite each other.
	Serialized bool
	// Limits caps subjects and descriptions; the zero value means the
	// defaults.
	Limits Limits

	// sqliteFile, set by Open for the embedded server, is its SQLite
	// database, where the listing index lives (see listindex.go).
	sqliteFile string
	// writes, set by Open, learns from the client's command monitor whether
	// the database refuses writes; nil means Ready checks the ping only.
	writes *writeHealth
}

// Store is the ticket store. Its methods are safe for concurrent use.
type Store struct {
	client *mongo.Client
	db     *mongo.Database
	log    *slog.Logger
	now    func() time.Time
	serial bool
	limits Limits

	tickets   *mongo.Collection
	customers *mongo.Collection
	agents    *mongo.Collection
	counters  *mongo.Collection
	keys      *mongo.Collection
	outbox    *mongo.Collection

	locks  stripedLock
	recent *recentTickets // nil unless serialized; see cache.go
	index  *listIndex     // nil unless embedded; see listindex.go
	// customers by address, nil unless serialized: customers never change
	// once created, and every mail looks its sender up.
	customersByEmail *lru[string, Customer]
	counterMu        sync.Mutex // serializes refId allocation on the embedded server
	claimMu          sync.Mutex // serializes outbox claims on the embedded server

	// pending receives the id of every ticket that gained outbox events, so
	// the relay can move them without scanning.
	pending chan bson.ObjectID

	readyMu sync.Mutex
	ready   map[string]chan struct{} // per sink: deliveries were queued

	writes *writeHealth // see Ready

	daemonID string // this process, in the daemons collection
	sinksMu  sync.Mutex
	sinks    []string // the deployment's sinks; nil until JoinDeployment

	closers   []func(context.Context) error
	closeOnce sync.Once
	closeErr  error
}

// New wraps an open database, creating its indexes (idempotently).
func New(ctx context.Context, client *mongo.Client, db *mongo.Database, opts Options) (*Store, error) {
	s := &Store{
		client:    client,
		db:        db,
		log:       opts.Logger,
		now:       opts.Now,
		serial:    opts.Serialized,
		limits:    opts.Limits.withDefaults(),
		tickets:   db.Collection(colTickets),
		customers: db.Collection(colCustomers),
		agents:    db.Collection(colAgents),
		counters:  db.Collection(colCounters),
		keys:      db.Collection(colKeys),
		outbox:    db.Collection(colOutbox),
		pending:   make(chan bson.ObjectID, 4096),
		writes:    opts.writes,
		daemonID:  bson.NewObjectID().Hex(),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.serial {
		s.recent = newRecentTickets(1024)
		s.customersByEmail = newLRU[string, Customer](10000)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.writes == nil {
		s.writes = newWriteHealth(s.now)
	}
	if err := s.ensureIndexes(ctx); err != nil {
		return nil, err
	}
	if opts.sqliteFile != "" {
		if err := fixEmbeddedIDIndexes(ctx, opts.sqliteFile); err != nil {
			return nil, err
		}
		ix, err := openListIndex(ctx, opts.sqliteFile, s.log)
		if err != nil {
			return nil, err
		}
		s.index = ix
		s.closers = append(s.closers, func(context.Context) error { return ix.close() })
	}
	return s, nil
}

// Limits returns the text limits every ticket and response is held to, for
// adapters that check or cut before they write.
func (s *Store) Limits() Limits { return s.limits }

// Collections lists every collection the store uses, for tools that need
// them all to exist (the embedded index fix).
func Collections() []string {
	return []string{colTickets, colCustomers, colAgents, colCounters, colKeys, colOutbox,
		colMailboxes, colAttachments, colChunks, colQuarantine, colIgnored, colDeployment, colDaemons}
}

// indexSpec is one secondary index, named so that a restart can tell which
// ones exist.
type indexSpec struct {
	name    string
	keys    bson.D
	unique  bool
	partial bson.D // partialFilterExpression; nil for none
}

// needed says whether this deployment gets the index. The embedded server
// answers every query but a lookup by _id with a scan, so there a
// non-unique index only costs: SQLite re-parses the whole document for each
// index expression on every write. Unique indexes enforce invariants and
// are kept everywhere.
func (i indexSpec) needed(serialized bool) bool { return i.unique || !serialized }

func (s *Store) ensureIndexes(ctx context.Context) error {
	asc := func(k string) bson.E { return bson.E{Key: k, Value: 1} }
	desc := func(k string) bson.E { return bson.E{Key: k, Value: -1} }
	listing := func(filter ...bson.E) bson.D {
		return append(bson.D(filter), asc("isDelete"), desc("updatedAt"), desc("_id"))
	}
	idx := map[*mongo.Collection][]indexSpec{
		s.tickets: {
			{name: "sourceKey_unique", keys: bson.D{asc("sourceKey")}, unique: true},
			{name: "refId", keys: bson.D{asc("refId")}},
			// Listings: each filter, then the listing order, so that a page
			// and its count read only the matching entries.
			{name: "live_updated", keys: listing()},
			{name: "team_live_updated", keys: listing(asc("teamId"))},
			{name: "creator_live_updated", keys: listing(asc("creatorId"))},
			{name: "status_live_updated", keys: listing(asc("status"))},
			{name: "priority_live_updated", keys: listing(asc("priority"))},
			{name: "category_live_updated", keys: listing(asc("category"))},
			// The outbox sweep: only tickets holding events are in it.
			{name: "pending_events", keys: bson.D{asc("outbox._id")},
				partial: bson.D{{Key: "outbox._id", Value: bson.D{{Key: "$exists", Value: true}}}}},
		},
		s.customers:          {{name: "email", keys: bson.D{asc("email")}}},
		s.agents:             {{name: "email", keys: bson.D{asc("email")}}},
		s.col(colQuarantine): {{name: "received", keys: bson.D{desc("receivedAt")}}},
		s.col(colIgnored):    {{name: "at", keys: bson.D{desc("at")}}},
		s.outbox: {
			{name: "sink_state_next", keys: bson.D{asc("sink"), asc("state"), asc("nextAttemptAt")}},
			{name: "sink_ticket_state_seq", keys: bson.D{asc("sink"), asc("ticketId"), asc("state"), asc("seq")}},
		},
	}
	for col, specs := range idx {
		// Create only the indexes that are missing: the embedded server
		// panics on a createIndexes that repeats existing ones (seen with
		// FerretDB v1.24 on every restart).
		have, err := indexNames(ctx, col)
		if err != nil {
			return err
		}
		var missing []mongo.IndexModel
		for _, spec := range specs {
			if spec.needed(s.serial) && !have[spec.name] {
				opts := options.Index().SetName(spec.name).SetUnique(spec.unique)
				if spec.partial != nil {
					opts.SetPartialFilterExpression(spec.partial)
				}
				missing = append(missing, mongo.IndexModel{Keys: spec.keys, Options: opts})
			}
		}
		if len(missing) == 0 {
			continue
		}
		for _, m := range missing {
			_, err := col.Indexes().CreateOne(ctx, m)
			var ce mongo.CommandError
			if errors.As(err, &ce) && ce.Code == 238 { // NotImplemented: the embedded server lacks partial indexes
				s.log.Info("index not supported by this server; its queries scan instead", "collection", col.Name(), "err", err)
				continue
			}
			if err != nil {
				return fmt.Errorf("create indexes on %s: %w", col.Name(), classify(err))
			}
		}
	}
	// Every collection must exist, with or without secondary indexes, so
	// that the embedded server's _id index fix sees them all.
	for _, name := range Collections() {
		err := s.db.CreateCollection(ctx, name)
		var ce mongo.CommandError
		if err != nil && !(errors.As(err, &ce) && ce.Code == 48) { // 48: NamespaceExists
			return fmt.Errorf("create collection %s: %w", name, classify(err))
		}
	}
	return nil
}

func indexNames(ctx context.Context, col *mongo.Collection) (map[string]bool, error) {
	cur, err := col.Indexes().List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list indexes of %s: %w", col.Name(), classify(err))
	}
	var specs []struct {
		Name string `bson:"name"`
	}
	if err := cur.All(ctx, &specs); err != nil {
		return nil, fmt.Errorf("list indexes of %s: %w", col.Name(), classify(err))
	}
	names := map[string]bool{}
	for _, s := range specs {
		names[s.Name] = true
	}
	return names, nil
}

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx, nil); err != nil {
		return fmt.Errorf("ping database: %w", errors.Join(ErrUnavailable, err))
	}
	return nil
}

// Close disconnects from the database and stops the embedded server, if
// any. Later calls return the first call's result.
func (s *Store) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		if _, joined := s.Sinks(); joined {
			s.leave(ctx)
		}
		errs := []error{s.client.Disconnect(ctx)}
		for i := len(s.closers) - 1; i >= 0; i-- {
			errs = append(errs, s.closers[i](ctx))
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// Database exposes the underlying database, for benchmarks that compare the
// store with the raw driver.
func (s *Store) Database() *mongo.Database { return s.db }

func (s *Store) nowUTC() time.Time { return s.now().UTC().Truncate(time.Millisecond) }

// classify marks errors that mean the database is unreachable or refuses
// to write (disk full, read-only: see writeRefused), so the API can answer
// 503 rather than 500 and the mail source retries the message rather than
// hold it against the mail.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if mongo.IsNetworkError(err) || mongo.IsTimeout(err) || errors.Is(err, mongo.ErrClientDisconnected) ||
		errors.Is(err, context.DeadlineExceeded) || writeRefused(err) {
		return errors.Join(ErrUnavailable, err)
	}
	// Server selection failures are the driver's way of saying "no server".
	var sel topology.ServerSelectionError
	if errors.As(err, &sel) {
		return errors.Join(ErrUnavailable, err)
	}
	return err
}

// stripedLock serializes writers of the same ticket inside this process
// without a map that grows with the number of tickets.
type stripedLock [256]sync.Mutex

func (l *stripedLock) lock(id bson.ObjectID) func() {
	h := fnv.New32a()
	h.Write(id[:])
	m := &l[h.Sum32()%uint32(len(l))]
	m.Lock()
	return m.Unlock
}
