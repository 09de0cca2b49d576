package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// A lease is a named lock with an owner, an expiry and a fencing token, in
// the leases collection, shared by every daemon of a deployment.
//
// Each acquisition is its own document, _id "<name>#<token>", inserted
// under the unique _id: the insert is the compare-and-set. The embedded
// server's findAndModify reads and then writes without a lock, so two
// clients on it could both "win" a conditional update; of two inserts of
// the same _id exactly one succeeds on every server. The current holder is
// the document with the highest token; older ones are deleted once a newer
// one exists, and a released lease is kept (expired) so that tokens keep
// growing.

const colLeases = "leases"

// Lease is a named, owned, expiring lock in the store; Token is a fencing
// token that grows with every new acquisition.
type Lease struct {
	Name, Owner string
	Token       int64
	Expires     time.Time
}

// leaseDoc is one acquisition of a lease.
type leaseDoc struct {
	ID         string    `bson:"_id"` // leaseDocID(name, token)
	Name       string    `bson:"name"`
	Owner      string    `bson:"owner"`
	Token      int64     `bson:"token"`
	AcquiredAt time.Time `bson:"acquiredAt"`
	ExpiresAt  time.Time `bson:"expiresAt"`
}

func (d leaseDoc) lease() *Lease {
	return &Lease{Name: d.Name, Owner: d.Owner, Token: d.Token, Expires: d.ExpiresAt}
}

// leaseDocID orders acquisitions of a name by token, also as strings.
func leaseDocID(name string, token int64) string { return fmt.Sprintf("%s#%019d", name, token) }

// DaemonID identifies this Store's process among the deployment's daemons
// (the daemons collection), for use as a lease owner.
func (s *Store) DaemonID() string { return s.daemonID }

// currentLease returns the latest acquisition of name; ErrNotFound when it
// was never taken.
func (s *Store) currentLease(ctx context.Context, name string) (*leaseDoc, error) {
	var d leaseDoc
	err := s.col(colLeases).FindOne(ctx, bson.D{{Key: "name", Value: name}},
		options.FindOne().SetSort(bson.D{{Key: "token", Value: -1}})).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read lease %s: %w", name, classify(err))
	}
	return &d, nil
}

// AcquireLease takes the lease name for owner for ttl. When owner holds it
// already (unexpired) it is renewed and keeps its Token; when it is free,
// expired or released, a new acquisition gets the next Token. It fails
// with ErrLeaseHeld when another owner holds it unexpired, or won the race
// for it.
func (s *Store) AcquireLease(ctx context.Context, name, owner string, ttl time.Duration) (*Lease, error) {
	if name == "" || owner == "" || ttl <= 0 {
		return nil, fmt.Errorf("acquire lease %q for %q: %w: name, owner and a positive ttl are required", name, owner, ErrInvalid)
	}
	now := s.nowUTC()
	cur, err := s.currentLease(ctx, name)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	var token int64 = 1
	if cur != nil {
		if cur.ExpiresAt.After(now) {
			if cur.Owner != owner {
				return nil, fmt.Errorf("acquire lease %s: %w: %s holds it until %s", name, ErrLeaseHeld, cur.Owner, cur.ExpiresAt.Format(time.RFC3339))
			}
			l := cur.lease()
			if err := s.RenewLease(ctx, l, ttl); err != nil {
				if errors.Is(err, ErrLeaseLost) {
					return nil, fmt.Errorf("acquire lease %s: %w", name, ErrLeaseHeld)
				}
				return nil, err
			}
			return l, nil
		}
		token = cur.Token + 1
	}
	d := leaseDoc{ID: leaseDocID(name, token), Name: name, Owner: owner, Token: token, AcquiredAt: now, ExpiresAt: now.Add(ttl)}
	if _, err := s.col(colLeases).InsertOne(ctx, d); err != nil {
		if mongo.IsDuplicateKeyError(err) {
			return nil, fmt.Errorf("acquire lease %s: %w: another owner took token %d first", name, ErrLeaseHeld, token)
		}
		return nil, fmt.Errorf("acquire lease %s: %w", name, classify(err))
	}
	// Older acquisitions are history now; losing this cleanup only keeps
	// a few small documents longer.
	if _, err := s.col(colLeases).DeleteMany(ctx, bson.D{{Key: "name", Value: name}, {Key: "token", Value: bson.D{{Key: "$lt", Value: token}}}}); err != nil {
		s.log.Warn("could not delete old lease acquisitions", "lease", name, "err", err)
	}
	return d.lease(), nil
}

// RenewLease moves l's expiry to ttl from now, and updates l.Expires. It
// fails with ErrLeaseLost when l expired or a newer acquisition exists.
func (s *Store) RenewLease(ctx context.Context, l *Lease, ttl time.Duration) error {
	now := s.nowUTC()
	exp := now.Add(ttl)
	res, err := s.col(colLeases).UpdateOne(ctx,
		bson.D{{Key: "_id", Value: leaseDocID(l.Name, l.Token)}, {Key: "owner", Value: l.Owner}, {Key: "expiresAt", Value: bson.D{{Key: "$gt", Value: now}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "expiresAt", Value: exp}}}})
	if err != nil {
		return fmt.Errorf("renew lease %s: %w", l.Name, classify(err))
	}
	if res.MatchedCount == 0 {
		return fmt.Errorf("renew lease %s (token %d): %w", l.Name, l.Token, ErrLeaseLost)
	}
	// A newer acquisition read our expired document before this update
	// landed: the newer one wins.
	cur, err := s.currentLease(ctx, l.Name)
	if err != nil {
		return fmt.Errorf("renew lease %s: %w", l.Name, err)
	}
	if cur.Token != l.Token || cur.Owner != l.Owner {
		return fmt.Errorf("renew lease %s (token %d): %w: %s holds token %d", l.Name, l.Token, ErrLeaseLost, cur.Owner, cur.Token)
	}
	l.Expires = exp
	return nil
}

// ReleaseLease ends l now, so that another owner can take it at once. It
// is a no-op when l was lost already.
func (s *Store) ReleaseLease(ctx context.Context, l *Lease) error {
	now := s.nowUTC()
	_, err := s.col(colLeases).UpdateOne(ctx,
		bson.D{{Key: "_id", Value: leaseDocID(l.Name, l.Token)}, {Key: "owner", Value: l.Owner}, {Key: "expiresAt", Value: bson.D{{Key: "$gt", Value: now}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "expiresAt", Value: now}}}})
	if err != nil {
		return fmt.Errorf("release lease %s: %w", l.Name, classify(err))
	}
	l.Expires = now
	return nil
}

// Leases lists the latest acquisition of every lease, by name, for the
// admin listing; expired and released ones are included (Expires says so).
func (s *Store) Leases(ctx context.Context) ([]Lease, error) {
	cur, err := s.col(colLeases).Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", classify(err))
	}
	var docs []leaseDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("list leases: %w", classify(err))
	}
	out := []Lease{}
	for _, d := range docs {
		// Sorted by _id, a name's acquisitions come together, by token.
		if n := len(out); n > 0 && out[n-1].Name == d.Name {
			out[n-1] = *d.lease()
			continue
		}
		out = append(out, *d.lease())
	}
	return out, nil
}
