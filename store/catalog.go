package store

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"slices"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// catalog answers ticket listings on the embedded server, which can use no
// index but _id's: every other query decodes every document (0.3 ms each;
// a first page of 20,000 tickets took seconds). It holds a summary of each
// ticket in memory, loaded once at start and kept in step by every write
// (all of which go through this process's Store, under the ticket's lock);
// a listing filters and sorts the summaries and reads only the page's
// tickets, by _id. MongoDB keeps using its own indexes instead.
type catalog struct {
	mu   sync.RWMutex
	byID map[bson.ObjectID]summary
}

// summary is what listing filters and sorts on.
type summary struct {
	ID          bson.ObjectID `bson:"_id"`
	CreatorID   bson.ObjectID `bson:"creatorId"`
	TeamID      string        `bson:"teamId"`
	Category    string        `bson:"category"`
	Subject     string        `bson:"subject"`
	Description string        `bson:"description"`
	Status      Status        `bson:"status"`
	Priority    Priority      `bson:"priority"`
	UpdatedAt   time.Time     `bson:"updatedAt"`
	IsDelete    bool          `bson:"isDelete"`
}

func summarize(t *Ticket) summary {
	return summary{ID: t.ID, CreatorID: t.CreatorID, TeamID: t.TeamID, Category: t.Category, Subject: t.Subject,
		Description: t.Description, Status: t.Status, Priority: t.Priority, UpdatedAt: t.UpdatedAt, IsDelete: t.IsDelete}
}

// loadCatalog reads every ticket's summary: one scan, at start.
func (s *Store) loadCatalog(ctx context.Context) (*catalog, error) {
	start := time.Now()
	fields := bson.D{}
	for _, f := range []string{"creatorId", "teamId", "category", "subject", "description", "status", "priority", "updatedAt", "isDelete"} {
		fields = append(fields, bson.E{Key: f, Value: 1})
	}
	cur, err := s.tickets.Find(ctx, bson.D{}, options.Find().SetProjection(fields))
	if err != nil {
		return nil, fmt.Errorf("load ticket catalog: %w", classify(err))
	}
	c := &catalog{byID: map[bson.ObjectID]summary{}}
	for cur.Next(ctx) {
		var sm summary
		if err := cur.Decode(&sm); err != nil {
			cur.Close(ctx)
			return nil, fmt.Errorf("load ticket catalog: %w", err)
		}
		c.byID[sm.ID] = sm
	}
	if err := cur.Err(); err != nil {
		return nil, fmt.Errorf("load ticket catalog: %w", classify(err))
	}
	cur.Close(ctx)
	s.log.Info("ticket catalog loaded", "tickets", len(c.byID), "took", time.Since(start).Round(time.Millisecond))
	return c, nil
}

// put records a ticket's current state; nil-safe so MongoDB mode needs no
// checks at the call sites.
func (c *catalog) put(t *Ticket) {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.byID[t.ID] = summarize(t)
	c.mu.Unlock()
}

// query returns the ids of one page of matching tickets, newest-updated
// first, and how many match in all. Keyword matching is the same
// case-insensitive literal match the database query makes.
func (c *catalog) query(q ListQuery, kw *regexp.Regexp) ([]bson.ObjectID, int64) {
	c.mu.RLock()
	var hits []summary
	for _, sm := range c.byID {
		if q.matches(sm, kw) {
			hits = append(hits, sm)
		}
	}
	c.mu.RUnlock()
	slices.SortFunc(hits, func(a, b summary) int {
		if n := b.UpdatedAt.Compare(a.UpdatedAt); n != 0 {
			return n
		}
		return bytes.Compare(b.ID[:], a.ID[:]) // the order of the ids' hex, without formatting it
	})
	total := int64(len(hits))
	from := min(q.Offset, len(hits))
	to := min(from+q.Limit, len(hits))
	ids := make([]bson.ObjectID, 0, to-from)
	for _, sm := range hits[from:to] {
		ids = append(ids, sm.ID)
	}
	return ids, total
}

// matches applies a listing's filters to a summary; kw is the compiled
// keyword, nil for none.
func (q ListQuery) matches(sm summary, kw *regexp.Regexp) bool {
	switch {
	case sm.IsDelete,
		q.TeamID != "" && sm.TeamID != q.TeamID,
		!q.CreatorID.IsZero() && sm.CreatorID != q.CreatorID,
		q.Status != "" && sm.Status != q.Status,
		q.Priority != "" && sm.Priority != q.Priority,
		q.Category != "" && sm.Category != q.Category,
		kw != nil && !kw.MatchString(sm.Subject) && !kw.MatchString(sm.Description):
		return false
	}
	return true
}

// keywordRegexp is the keyword as the case-insensitive literal pattern the
// database query uses too; nil for no keyword. The keyword is valid UTF-8
// (ListTickets checks), so a quoted literal always compiles.
func keywordRegexp(keyword string) *regexp.Regexp {
	if keyword == "" {
		return nil
	}
	return regexp.MustCompile("(?i)" + regexp.QuoteMeta(keyword))
}

// listFromCatalog reads the page the catalog picked, ticket by ticket (by
// _id, the lookup the embedded server answers from an index).
func (s *Store) listFromCatalog(ctx context.Context, q ListQuery) ([]Ticket, int64, error) {
	kw := keywordRegexp(q.Keyword)
	ids, total := s.catalog.query(q, kw)
	if len(ids) == 0 {
		// Nothing to read: still say so only if the database is there, or
		// a client would take an outage for an empty list.
		if err := s.Ping(ctx); err != nil {
			return nil, 0, fmt.Errorf("list tickets: %w", err)
		}
	}
	out := make([]Ticket, 0, len(ids))
	for _, id := range ids {
		t := s.recent.get(id)
		if t == nil {
			var err error
			if t, err = s.load(ctx, id, withoutHistory); err != nil {
				return nil, 0, fmt.Errorf("list tickets: %w", err)
			}
		}
		// A write whose outcome was unknown, or one that landed since the
		// page was picked, may have changed the ticket: list what is true.
		if sm := summarize(t); !q.matches(sm, kw) {
			s.catalog.put(t)
			total--
			continue
		}
		out = append(out, *t)
	}
	return out, total, nil
}
