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
}

// Store is the ticket store. Its methods are safe for concurrent use.
type Store struct {
	client *mongo.Client
	db     *mongo.Database
	log    *slog.Logger
	now    func() time.Time
	serial bool

	tickets   *mongo.Collection
	customers *mongo.Collection
	agents    *mongo.Collection
	counters  *mongo.Collection
	keys      *mongo.Collection
	outbox    *mongo.Collection

	locks     stripedLock
	counterMu sync.Mutex // serializes refId allocation on the embedded server
	claimMu   sync.Mutex // serializes outbox claims on the embedded server

	// pending receives the id of every ticket that gained outbox events, so
	// the relay can move them without scanning.
	pending chan bson.ObjectID

	readyMu sync.Mutex
	ready   map[string]chan struct{} // per sink: deliveries were queued

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
		tickets:   db.Collection(colTickets),
		customers: db.Collection(colCustomers),
		agents:    db.Collection(colAgents),
		counters:  db.Collection(colCounters),
		keys:      db.Collection(colKeys),
		outbox:    db.Collection(colOutbox),
		pending:   make(chan bson.ObjectID, 4096),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if err := s.ensureIndexes(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Collections lists every collection the store uses, for tools that need
// them all to exist (the embedded index fix).
func Collections() []string {
	return []string{colTickets, colCustomers, colAgents, colCounters, colKeys, colOutbox,
		colMailboxes, colAttachments, colQuarantine, colIgnored}
}

func (s *Store) ensureIndexes(ctx context.Context) error {
	idx := map[*mongo.Collection][]mongo.IndexModel{
		s.tickets: {
			{Keys: bson.D{{Key: "sourceKey", Value: 1}}, Options: options.Index().SetUnique(true).SetName("sourceKey_unique")},
			{Keys: bson.D{{Key: "teamId", Value: 1}, {Key: "updatedAt", Value: -1}}, Options: options.Index().SetName("team_updated")},
			{Keys: bson.D{{Key: "updatedAt", Value: -1}}, Options: options.Index().SetName("updated")},
			{Keys: bson.D{{Key: "refId", Value: 1}}, Options: options.Index().SetName("refId")},
		},
		s.customers: {
			{Keys: bson.D{{Key: "email", Value: 1}}, Options: options.Index().SetName("email")},
		},
		s.agents: {
			{Keys: bson.D{{Key: "email", Value: 1}}, Options: options.Index().SetName("email")},
		},
		s.col(colQuarantine): {
			{Keys: bson.D{{Key: "receivedAt", Value: -1}}, Options: options.Index().SetName("received")},
		},
		s.col(colIgnored): {
			{Keys: bson.D{{Key: "at", Value: -1}}, Options: options.Index().SetName("at")},
		},
		s.outbox: {
			{Keys: bson.D{{Key: "sink", Value: 1}, {Key: "state", Value: 1}, {Key: "nextAttemptAt", Value: 1}}, Options: options.Index().SetName("sink_state_next")},
		},
	}
	for col, models := range idx {
		if _, err := col.Indexes().CreateMany(ctx, models); err != nil {
			return fmt.Errorf("create indexes on %s: %w", col.Name(), classify(err))
		}
	}
	// Collections without secondary indexes must exist too, so that the
	// embedded server's _id index fix sees them.
	for _, col := range []*mongo.Collection{s.counters, s.keys, s.col(colMailboxes), s.col(colAttachments)} {
		err := s.db.CreateCollection(ctx, col.Name())
		var ce mongo.CommandError
		if err != nil && !(errors.As(err, &ce) && ce.Code == 48) { // 48: NamespaceExists
			return fmt.Errorf("create collection %s: %w", col.Name(), classify(err))
		}
	}
	return nil
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

// classify marks errors that mean the database is unreachable, so the API
// can answer 503 rather than 500.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if mongo.IsNetworkError(err) || mongo.IsTimeout(err) || errors.Is(err, mongo.ErrClientDisconnected) ||
		errors.Is(err, context.DeadlineExceeded) {
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
