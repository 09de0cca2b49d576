package store

import (
	"context"
	"database/sql"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// Keyword search on the embedded store (listIndex). The full-text index
// finds the tickets whose text holds a keyword; what remains is to order
// them and count them under the listing's filters. A rare keyword is
// cheapest driven from its matches: look them up, sort them. A common one
// ("password" in a quarter of 100,000 tickets) is not: sorting 26,000
// matches to show 50 of them took 0.5-0.9 s. So the matches are read once
// into a bit set of listing rows, and the listing is walked in its own
// order (an index walk, as without a keyword), keeping the rows in the set:
// the first page of a common keyword is found within a few hundred rows.
//
// The sets of recent keywords are kept (a bounded cache, a bit per ticket)
// and brought up to date rather than read again: new tickets have higher
// row ids than any before, so only rows above the set's highest are looked
// at, and a text generation, which the index's triggers advance on every
// edit of a ticket's text and every removal, tells when a set is stale.

// rareMatches is how many matches are sorted directly rather than found by
// walking the listing in order.
const rareMatches = 2000

// keywordCacheSize bounds the keywords whose matches are kept.
const keywordCacheSize = 32

// ridSet is a set of listing row ids (ticketd_listing.rid), a bit each.
type ridSet []uint64

func (s ridSet) has(rid int64) bool {
	i := rid >> 6
	return rid >= 0 && i < int64(len(s)) && s[i]&(1<<(rid&63)) != 0
}

func (s *ridSet) add(rid int64) {
	i := int(rid >> 6)
	if i >= len(*s) {
		*s = append(*s, make([]uint64, i+1-len(*s))...)
	}
	(*s)[i] |= 1 << (rid & 63)
}

func (s ridSet) count() int {
	n := 0
	for _, w := range s {
		n += bits.OnesCount64(w)
	}
	return n
}

// keywordMatches is the set of rows whose text holds a keyword, as of a
// text generation, complete up to row id upTo. It is not changed once
// cached: bringing it up to date makes a new one.
type keywordMatches struct {
	gen  int64
	upTo int64
	rows ridSet
	n    int
}

// keywordCache keeps the matches of the most recently searched keywords.
type keywordCache struct {
	mu      sync.Mutex
	entries map[string]*keywordMatches
	order   []string // least recently used first
}

func (c *keywordCache) get(keyword string) *keywordMatches {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.entries[keyword]
	if m != nil {
		c.touch(keyword)
	}
	return m
}

func (c *keywordCache) put(keyword string, m *keywordMatches) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = make(map[string]*keywordMatches)
	}
	if old := c.entries[keyword]; old != nil && (old.gen > m.gen || old.gen == m.gen && old.upTo > m.upTo) {
		return // a concurrent search cached a newer one
	}
	if _, ok := c.entries[keyword]; !ok && len(c.entries) >= keywordCacheSize {
		delete(c.entries, c.order[0])
		c.order = c.order[1:]
	}
	c.entries[keyword] = m
	c.touch(keyword)
}

func (c *keywordCache) touch(keyword string) {
	for i, k := range c.order {
		if k == keyword {
			c.order = append(c.order[:i], c.order[i+1:]...)
			break
		}
	}
	c.order = append(c.order, keyword)
}

// matches returns the rows whose text holds keyword, read in tx.
func (ix *listIndex) matches(ctx context.Context, tx *sql.Tx, keyword string) (*keywordMatches, error) {
	var gen, top int64
	err := tx.QueryRowContext(ctx, `SELECT coalesce((SELECT CAST(value AS INTEGER) FROM ticketd_meta WHERE key = 'textGen'), 0),
		coalesce((SELECT max(rid) FROM ticketd_listing), 0)`).Scan(&gen, &top)
	if err != nil {
		return nil, unreadable(err)
	}
	m := ix.keywords.get(keyword)
	switch {
	case m != nil && m.gen == gen && m.upTo == top:
		return m, nil
	case m != nil && m.gen == gen && m.upTo < top:
		// Only new tickets since: add their matches to a copy.
		m = &keywordMatches{gen: gen, upTo: m.upTo, rows: append(ridSet(nil), m.rows...), n: m.n}
	default:
		m = &keywordMatches{gen: gen}
	}
	if len(m.rows) <= int(top>>6) {
		m.rows = append(m.rows, make(ridSet, int(top>>6)+1-len(m.rows))...)
	}
	if err := ix.addMatches(ctx, tx, keyword, m, top); err != nil {
		return nil, err
	}
	m.upTo = top
	ix.keywords.put(keyword, m)
	return m, nil
}

// addMatches adds to m the rows after m.upTo up to top whose text holds
// keyword: from a full-text index, or by reading the texts when no index
// can be trusted with the keyword.
func (ix *listIndex) addMatches(ctx context.Context, tx *sql.Tx, keyword string, m *keywordMatches, top int64) error {
	table, cond, args, indexed := keywordCondition(keyword)
	if indexed {
		var err error
		if indexed, err = ix.folds.agrees(ctx, keyword); err != nil {
			return err
		}
	}
	if !indexed {
		rids, err := scanMatches(ctx, tx, keyword, m.upTo, top)
		for _, rid := range rids {
			m.rows.add(rid)
		}
		m.n += len(rids)
		return err
	}
	var list string
	err := tx.QueryRowContext(ctx, `SELECT coalesce(group_concat(rowid), '') FROM `+table+` WHERE rowid > ? AND rowid <= ? AND `+cond,
		append([]any{m.upTo, top}, args...)...).Scan(&list)
	if err != nil {
		return unreadable(err)
	}
	// A common keyword's list is 100,000 numbers: read without a string
	// or a call for each.
	var rid int64
	for i := 0; i < len(list); i++ {
		switch c := list[i]; {
		case c >= '0' && c <= '9':
			rid = rid*10 + int64(c-'0')
		case c == ',':
			m.rows.add(rid)
			m.n, rid = m.n+1, 0
		default:
			return fmt.Errorf("search index row ids: %q at %d", c, i)
		}
	}
	if list != "" {
		m.rows.add(rid)
		m.n++
	}
	return nil
}

// keywordCondition is the full-text table (its rowids are listing rows)
// and the SQL condition on it for text holding keyword, case-insensitively,
// as a literal; false for a keyword no index can find (one or two
// characters holding ticketd_short's pad), which is found by a scan.
func keywordCondition(keyword string) (table, cond string, args []any, indexed bool) {
	if utf8.RuneCountInString(keyword) >= 3 {
		// A trigram phrase: exactly the keyword as a substring, folded for case.
		return "ticketd_search", "ticketd_search MATCH ?", []any{`"` + strings.ReplaceAll(keyword, `"`, `""`) + `"`}, true
	}
	if phrase, ok := shortGramPhrase(keyword); ok {
		return "ticketd_short", "ticketd_short MATCH ?", []any{phrase}, true
	}
	return "", "", nil, false
}

// search returns the ids of one page of the tickets matching q (a keyword
// search), in listing order, and how many match.
func (ix *listIndex) search(ctx context.Context, tx *sql.Tx, q ListQuery) ([]string, int64, error) {
	m, err := ix.matches(ctx, tx, q.Keyword)
	if err != nil {
		return nil, 0, err
	}
	where, args := q.where()
	unfiltered := where == "l.deleted = 0"
	walk := m.n > ix.rareMatches
	if !unfiltered && q.CreatorID.IsZero() {
		// A filtered walk reads every row the filters pass, to count them;
		// sorting reads every match. Read the fewer (a row walked costs
		// about a quarter of a match sorted).
		passed, err := countListed(ctx, tx, where, args)
		if err != nil {
			return nil, 0, err
		}
		walk = passed <= 4*int64(m.n)
	}
	if !walk {
		// Few: look them up and sort them.
		rids := make([]string, 0, m.n)
		for i, w := range m.rows {
			for ; w != 0; w &= w - 1 {
				rids = append(rids, strconv.Itoa(i<<6|bits.TrailingZeros64(w)))
			}
		}
		where += " AND l.rid IN (SELECT value FROM json_each(?))"
		args = append(args, "["+strings.Join(rids, ",")+"]")
		ids, err := queryStrings(ctx, tx, `SELECT l.id FROM ticketd_listing l WHERE `+where+
			` ORDER BY l.updated DESC, l.id DESC LIMIT ? OFFSET ?`, append(args, q.Limit, q.Offset)...)
		if err != nil {
			return nil, 0, unreadable(err)
		}
		var total int64
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM ticketd_listing l WHERE `+where, args...).Scan(&total); err != nil {
			return nil, 0, unreadable(err)
		}
		return ids, total, nil
	}
	// Many: walk the listing in order, keeping the matches. With no filter
	// but the keyword, the walk stops at the page; the count is the set's,
	// less the deleted tickets in it.
	rows, err := tx.QueryContext(ctx, `SELECT l.rid, l.id FROM ticketd_listing l WHERE `+where+
		` ORDER BY l.updated DESC, l.id DESC`, args...)
	if err != nil {
		return nil, 0, unreadable(err)
	}
	defer rows.Close()
	var ids []string
	var seen int64
	for rows.Next() {
		var rid int64
		var id string
		if err := rows.Scan(&rid, &id); err != nil {
			return nil, 0, unreadable(err)
		}
		if !m.rows.has(rid) {
			continue
		}
		if seen++; seen > int64(q.Offset) && len(ids) < q.Limit {
			ids = append(ids, id)
		}
		if unfiltered && len(ids) == q.Limit {
			break
		}
	}
	if err := rows.Err(); err != nil {
		return nil, 0, unreadable(err)
	}
	rows.Close()
	if !unfiltered {
		return ids, seen, nil
	}
	deleted, err := tx.QueryContext(ctx, `SELECT rid FROM ticketd_listing WHERE deleted = 1`)
	if err != nil {
		return nil, 0, unreadable(err)
	}
	defer deleted.Close()
	total := int64(m.n)
	for deleted.Next() {
		var rid int64
		if err := deleted.Scan(&rid); err != nil {
			return nil, 0, unreadable(err)
		}
		if m.rows.has(rid) {
			total--
		}
	}
	if err := deleted.Err(); err != nil {
		return nil, 0, unreadable(err)
	}
	return ids, total, nil
}
