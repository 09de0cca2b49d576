package store

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Keywords of one or two characters. The trigram index (ticketd_search)
// cannot find them: they hold no trigram, and finding them by reading every
// subject and description took 0.15-0.4 s at 100,000 tickets. So a second
// trigram index, ticketd_short, indexes a text made for them: every two
// adjacent characters of a ticket's subject and description (a gram), and
// a pad character (U+0001) with the first character, each followed by two
// pads. "Café" becomes
//
//	"Ca␁␁" "af␁␁" "fé␁␁" "␁C␁␁"
//
// Its trigrams hold every two characters of the text followed by a pad
// ("Ca␁": the keyword "ca") and every character followed by two pads
// ("a␁␁": the keyword "a"). With two pads after every gram, two characters
// other than pads are side by side only inside a gram, so no trigram of
// either form arises otherwise, whatever the text holds and in whatever
// order the grams come. The index is contentless, with neither positions
// nor columns (detail=none): the list of tickets of the keyword's one
// trigram is all a search reads. It folds case as ticketd_search does.

// shortGramPad is the pad; a keyword holding it is found by a scan.
const shortGramPad = "\x01"

// shortGramChunks are the lengths a text is cut into, longest first, before
// it is cut into grams: SQLite's substr walks a text from its start, so
// taking each position of a long text directly costs its length squared.
// With these, a description of 20,000 characters costs 30 ms, one of
// 1,000,000 (the most tickets.maxDescription allows) 0.9 s, indexing it
// 1.3 s (once per create or edit, inside its write).
var shortGramChunks = []int{32768, 1024, 32}

// shortGramPositions is the number of rows of ticketd_positions (0 to
// shortGramPositions-1): enough chunks of the longest for 33 million
// characters.
const shortGramPositions = 1024

// shortGramSchema creates the index and the table of positions a text is
// cut at (listIndexSchema).
var shortGramSchema = []string{
	`CREATE VIRTUAL TABLE ticketd_short USING fts5(grams, tokenize = 'trigram case_sensitive 0',
		content = '', contentless_delete = 1, detail = none)`,
	`CREATE TABLE ticketd_positions (n INTEGER PRIMARY KEY)`,
	`INSERT INTO ticketd_positions(n) WITH RECURSIVE p(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM p WHERE n < ` +
		strconv.Itoa(shortGramPositions-1) + `) SELECT n FROM p`,
}

// shortGrams is the SQL for the gram text of a text column of the row being
// indexed (a correlated subquery).
func shortGrams(column string) string {
	var ctes []string
	text, from := column, ""
	for i, size := range shortGramChunks {
		count := fmt.Sprintf("(length(%s) + %d) / %d", text, size-1, size)
		if i > 0 {
			count = fmt.Sprintf("min(%d, %s)", shortGramChunks[i-1]/size, count)
		}
		// Each chunk overlaps the next by one character, for the gram that
		// starts at its end.
		name := fmt.Sprintf("c%d", i)
		ctes = append(ctes, fmt.Sprintf(`%s(s) AS MATERIALIZED (SELECT substr(%s, p.n * %d + 1, %d) FROM %sticketd_positions p WHERE p.n < %s)`,
			name, text, size, size+1, from, count))
		text, from = name+".s", name+", "
	}
	last := shortGramChunks[len(shortGramChunks)-1]
	return fmt.Sprintf(`(SELECT coalesce(group_concat(g, ''), '') FROM (WITH %s
		SELECT substr(%s, p.n + 1, 2) || char(1, 1) AS g FROM %sticketd_positions p WHERE p.n < min(%d, length(%s) - 1)
		UNION ALL SELECT char(1) || substr(%s, 1, 1) || char(1, 1) WHERE length(%s) > 0))`,
		strings.Join(ctes, ",\n"), text, from, last, text, column, column)
}

// shortGramPhrase is the FTS5 phrase finding keyword, of one or two
// characters, in ticketd_short, or false for a keyword holding the pad.
func shortGramPhrase(keyword string) (string, bool) {
	if strings.Contains(keyword, shortGramPad) {
		return "", false
	}
	pad := shortGramPad
	if utf8.RuneCountInString(keyword) == 1 {
		pad += shortGramPad
	}
	return `"` + strings.ReplaceAll(keyword+pad, `"`, `""`) + `"`, true
}
