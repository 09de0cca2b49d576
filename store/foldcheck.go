package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"unicode"
)

// Keyword search must find what the database finds: MongoDB's (and the
// embedded server's) case-insensitive $regex, where two characters match
// when they are in one simple case-folding orbit (Go's unicode.SimpleFold:
// "k", "K" and the Kelvin sign). The full-text indexes fold case by SQLite's
// own tables, which are older than some scripts' case pairs (Georgian
// Mtavruli, Osage, Cherokee lower case): there the index would miss text
// the database finds. So before a keyword goes to an index, each of its
// characters is checked: SQLite is asked, once per character, whether it
// folds the character's whole orbit together and nothing else Go relates
// to it (its upper, lower and title case). A keyword with a character that
// fails is found by reading every text (scanMatches), slowly but exactly.

// foldCheck answers whether the indexes fold a character as the database
// does, from an in-memory FTS5 table with the indexes' tokenizer.
type foldCheck struct {
	mu    sync.Mutex
	db    *sql.DB
	known map[rune]bool // at most every cased character: a bounded cache
}

func newFoldCheck(ctx context.Context) (*foldCheck, error) {
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1) // one in-memory database is one connection's
	if _, err := db.ExecContext(ctx, `CREATE VIRTUAL TABLE probe USING fts5(t, tokenize = 'trigram case_sensitive 0')`); err != nil {
		db.Close()
		return nil, fmt.Errorf("case-folding probe: %w", err)
	}
	return &foldCheck{db: db, known: map[rune]bool{}}, nil
}

func (f *foldCheck) close() error { return f.db.Close() }

// agrees reports whether the indexes fold every character of keyword as
// the database does.
func (f *foldCheck) agrees(ctx context.Context, keyword string) (bool, error) {
	for _, r := range keyword {
		ok, err := f.rune(ctx, r)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

func (f *foldCheck) rune(ctx context.Context, r rune) (bool, error) {
	orbit := []rune{r}
	for o := unicode.SimpleFold(r); o != r; o = unicode.SimpleFold(o) {
		orbit = append(orbit, o)
	}
	var others []rune // what Go relates to r beyond its orbit
	for _, c := range []rune{unicode.ToLower(r), unicode.ToUpper(r), unicode.ToTitle(r)} {
		if !strings.ContainsRune(string(orbit), c) {
			others = append(others, c)
		}
	}
	if len(orbit) == 1 && len(others) == 0 {
		return true, nil // no case at all
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if ok, seen := f.known[r]; seen {
		return ok, nil
	}
	ok, err := f.probe(ctx, r, orbit, others)
	if err != nil {
		return false, err
	}
	f.known[r] = ok
	return ok, nil
}

// probe indexes r three times (one trigram) and searches for each
// character that must match it and each that must not.
func (f *foldCheck) probe(ctx context.Context, r rune, match, noMatch []rune) (bool, error) {
	tri := func(c rune) string { return `"` + strings.ReplaceAll(strings.Repeat(string(c), 3), `"`, `""`) + `"` }
	if _, err := f.db.ExecContext(ctx, `INSERT INTO probe(rowid, t) VALUES (1, ?)`, strings.Repeat(string(r), 3)); err != nil {
		return false, fmt.Errorf("case-folding probe: %w", err)
	}
	defer f.db.ExecContext(context.WithoutCancel(ctx), `DELETE FROM probe`)
	for want, list := range map[bool][]rune{true: match, false: noMatch} {
		for _, c := range list {
			var n int
			if err := f.db.QueryRowContext(ctx, `SELECT count(*) FROM probe WHERE probe MATCH ?`, tri(c)).Scan(&n); err != nil {
				return false, fmt.Errorf("case-folding probe: %w", err)
			}
			if (n == 1) != want {
				return false, nil
			}
		}
	}
	return true, nil
}

// foldKey maps each character of s to one member of its case-folding
// orbit, so that two texts match case-insensitively, as the database
// matches them, exactly where their keys do.
func foldKey(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x80 {
			switch {
			case r|0x20 == 'k' || r|0x20 == 's':
				return r &^ 0x20 // the least of an orbit with the Kelvin or long s sign
			case 'A' <= r && r <= 'Z':
				return r + 'a' - 'A'
			}
			return r
		}
		least := r
		for o := unicode.SimpleFold(r); o != r; o = unicode.SimpleFold(o) {
			least = min(least, o)
		}
		return least
	}, s)
}

// scanMatches reads every text of the rows after from up to to and returns
// the row ids of those holding keyword: the search of a keyword the indexes
// cannot be trusted with.
func scanMatches(ctx context.Context, tx *sql.Tx, keyword string, from, to int64) ([]int64, error) {
	// The index's own table of its texts (FTS5's %_content, columns c0 and
	// c1): a scan of the virtual table looks each row up there again.
	rows, err := tx.QueryContext(ctx, `SELECT id, c0, c1 FROM ticketd_search_content WHERE id > ? AND id <= ?`, from, to)
	if err != nil {
		return nil, unreadable(err)
	}
	defer rows.Close()
	needle := foldKey(keyword)
	var out []int64
	for rows.Next() {
		var rid int64
		var subject, description string
		if err := rows.Scan(&rid, &subject, &description); err != nil {
			return nil, unreadable(err)
		}
		if strings.Contains(foldKey(subject), needle) || strings.Contains(foldKey(description), needle) {
			out = append(out, rid)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, unreadable(err)
	}
	return out, nil
}
