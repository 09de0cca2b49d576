package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The set of sinks the relay queues deliveries for is a property of the
// deployment, not of the workers one daemon runs: every daemon relays
// every ticket's events, and an event relayed by a daemon that did not know
// a sink would be lost for that sink. Each daemon derives the set from its
// configuration and joins the deployment with it (JoinDeployment); the
// store records the set, and refuses a daemon whose set differs from that
// of a daemon still alive. The relay refuses to run before joining, so no
// daemon can relay with a set of its own.

const (
	colDeployment = "deployment"
	colDaemons    = "daemons"
)

// DaemonHeartbeat is how often a daemon that joined a deployment says it is
// alive (RunRelay does it).
const DaemonHeartbeat = 30 * time.Second

// DaemonAlive is how recent a heartbeat must be for a daemon to count as
// running: a crashed daemon stops blocking a changed configuration after
// this long.
const DaemonAlive = 3 * time.Minute

// ErrNotJoined: the relay ran before the daemon joined a deployment.
var ErrNotJoined = errors.New("the daemon has not joined the deployment (JoinDeployment) and knows no sinks")

// deploymentDoc records the deployment's sinks.
type deploymentDoc struct {
	ID        string    `bson:"_id"` // always "sinks"
	Sinks     []string  `bson:"sinks"`
	UpdatedAt time.Time `bson:"updatedAt"`
	UpdatedBy string    `bson:"updatedBy"`
}

// daemonDoc is one running daemon, with its sinks and last heartbeat.
type daemonDoc struct {
	ID          string    `bson:"_id"`
	Host        string    `bson:"host"`
	PID         int       `bson:"pid"`
	Sinks       []string  `bson:"sinks"`
	StartedAt   time.Time `bson:"startedAt"`
	HeartbeatAt time.Time `bson:"heartbeatAt"`
}

// Joined says what JoinDeployment found.
type Joined struct {
	// Previous is the set the store had recorded; nil on a fresh store.
	Previous []string
	// Changed: the recorded set was different (or absent) and is now
	// this daemon's.
	Changed bool
}

func normSinks(sinks []string) []string {
	out := []string{}
	for _, s := range sinks {
		if s = strings.TrimSpace(s); s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

// JoinDeployment registers this daemon with its sinks (from the
// configuration) and makes them the relay's. When the store has recorded
// another set and a daemon with a different set is alive (heartbeat within
// DaemonAlive), it fails with ErrConflict and a message saying which
// daemon; otherwise it records this set (Joined.Changed when that changed
// anything; the caller logs it). An empty set is a set: events are then
// dropped by the relay, announced to nobody.
func (s *Store) JoinDeployment(ctx context.Context, sinks []string) (Joined, error) {
	sinks = normSinks(sinks)
	now := s.nowUTC()
	host, _ := os.Hostname()
	me := daemonDoc{ID: s.daemonID, Host: host, PID: os.Getpid(), Sinks: sinks, StartedAt: now, HeartbeatAt: now}
	// Register first, then look at the others: of two daemons starting at
	// once with different sets, at least one sees the other.
	if _, err := s.col(colDaemons).ReplaceOne(ctx, bson.D{{Key: "_id", Value: me.ID}}, me, options.Replace().SetUpsert(true)); err != nil {
		return Joined{}, fmt.Errorf("register daemon: %w", classify(err))
	}
	cur, err := s.col(colDaemons).Find(ctx, bson.D{{Key: "heartbeatAt", Value: bson.D{{Key: "$gte", Value: now.Add(-DaemonAlive)}}}})
	if err != nil {
		return Joined{}, fmt.Errorf("list daemons: %w", classify(err))
	}
	var alive []daemonDoc
	if err := cur.All(ctx, &alive); err != nil {
		return Joined{}, fmt.Errorf("list daemons: %w", classify(err))
	}
	for _, d := range alive {
		if d.ID != me.ID && !slices.Equal(normSinks(d.Sinks), sinks) {
			s.leave(ctx)
			return Joined{}, fmt.Errorf("%w: this daemon's configuration gives the sinks %v, but daemon %s on %s (pid %d, last heartbeat %s ago) runs with %v: give every daemon the same configuration, or stop that one (a crashed daemon stops counting %s after its last heartbeat)",
				ErrConflict, sinks, d.ID, d.Host, d.PID, now.Sub(d.HeartbeatAt).Round(time.Second), d.Sinks, DaemonAlive)
		}
	}
	var rec deploymentDoc
	err = s.col(colDeployment).FindOne(ctx, bson.D{{Key: "_id", Value: "sinks"}}).Decode(&rec)
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return Joined{}, fmt.Errorf("read deployment: %w", classify(err))
	}
	j := Joined{}
	if err == nil {
		j.Previous = rec.Sinks
	}
	if err != nil || !slices.Equal(normSinks(rec.Sinks), sinks) {
		j.Changed = true
		rec = deploymentDoc{ID: "sinks", Sinks: sinks, UpdatedAt: now, UpdatedBy: me.ID + " on " + host}
		if _, err := s.col(colDeployment).ReplaceOne(ctx, bson.D{{Key: "_id", Value: "sinks"}}, rec, options.Replace().SetUpsert(true)); err != nil {
			return Joined{}, fmt.Errorf("record deployment: %w", classify(err))
		}
	}
	s.sinksMu.Lock()
	s.sinks = sinks
	s.sinksMu.Unlock()
	return j, nil
}

// Sinks returns the deployment's sinks, and false before JoinDeployment.
func (s *Store) Sinks() ([]string, bool) {
	s.sinksMu.Lock()
	defer s.sinksMu.Unlock()
	return slices.Clone(s.sinks), s.sinks != nil
}

// Heartbeat says this daemon is alive (after JoinDeployment).
func (s *Store) Heartbeat(ctx context.Context) error {
	if _, ok := s.Sinks(); !ok {
		return nil
	}
	_, err := s.col(colDaemons).UpdateOne(ctx, bson.D{{Key: "_id", Value: s.daemonID}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "heartbeatAt", Value: s.nowUTC()}}}})
	if err != nil {
		return fmt.Errorf("heartbeat: %w", classify(err))
	}
	return nil
}

// LeaveDeployment removes this daemon's registration, so that a restart
// with a changed configuration right after a clean stop is not refused.
// Close does it too. The relay refuses to run afterwards.
func (s *Store) LeaveDeployment(ctx context.Context) {
	s.leave(ctx)
	s.sinksMu.Lock()
	s.sinks = nil
	s.sinksMu.Unlock()
}

func (s *Store) leave(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := s.col(colDaemons).DeleteOne(ctx, bson.D{{Key: "_id", Value: s.daemonID}}); err != nil {
		s.log.Warn("could not unregister the daemon; its heartbeat expires", "err", err)
	}
}
