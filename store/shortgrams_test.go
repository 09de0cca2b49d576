package store

import (
	"database/sql"
	"fmt"
	"slices"
	"testing"
)

// The gram text SQLite builds holds exactly the grams of the text, for texts
// that end on, before and after every chunk boundary, in one and two bytes
// a character.
func TestShortGramsAreEveryTwoAdjacentCharacters(t *testing.T) {
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, q := range shortGramSchema[1:] {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	lengths := []int{0, 1, 2, 3}
	for _, size := range shortGramChunks {
		lengths = append(lengths, size-1, size, size+1, size+2, 2*size+1)
	}
	for _, n := range lengths {
		for _, alphabet := range []string{"abcdefghij", "ÀÉÎØÜàéîøü"} {
			runes := []rune(alphabet)
			text := make([]rune, n)
			for i := range text {
				// Not periodic within a chunk: a lost or repeated chunk shows.
				text[i] = runes[(i*i+i/7)%len(runes)]
			}
			var got string
			if err := db.QueryRow(`SELECT `+shortGrams("t")+` FROM (SELECT ? AS t)`, string(text)).Scan(&got); err != nil {
				t.Fatal(err)
			}
			want := referenceShortGrams(text)
			if g := splitGrams(got); !slices.Equal(g, want) {
				t.Errorf("%d characters of %q: %d grams, want %d (first difference %s)", n, alphabet, len(g), len(want), firstDifference(g, want))
			}
		}
	}
}

// referenceShortGrams are the grams of text, sorted: each two adjacent
// characters and a pad with the first, each with two pads after.
func referenceShortGrams(text []rune) []string {
	var out []string
	if len(text) > 0 {
		out = append(out, shortGramPad+string(text[0])+shortGramPad+shortGramPad)
	}
	for i := 0; i+1 < len(text); i++ {
		out = append(out, string(text[i:i+2])+shortGramPad+shortGramPad)
	}
	slices.Sort(out)
	return out
}

// splitGrams cuts a gram text into its grams, of four characters, sorted.
func splitGrams(s string) []string {
	runes := []rune(s)
	var out []string
	for i := 0; i < len(runes); i += 4 {
		out = append(out, string(runes[i:min(i+4, len(runes))]))
	}
	slices.Sort(out)
	return out
}

func firstDifference(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("%q vs %q", a[i], b[i])
		}
	}
	return "at the end of the shorter"
}
