package store

import (
	"context"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// foldKey relates two characters exactly when the database's
// case-insensitive match does (Go's simple folding, as strings.EqualFold).
func TestFoldKeyIsTheDatabasesCaseFolding(t *testing.T) {
	wrong := 0
	for r := rune(0); r <= 0x1ffff; r++ {
		if !utf8.ValidRune(r) {
			continue
		}
		key := foldKey(string(r))
		for _, o := range []rune{unicode.SimpleFold(r), unicode.ToLower(r), unicode.ToUpper(r), unicode.ToTitle(r), r + 1, r ^ 0x20} {
			if !utf8.ValidRune(o) {
				continue
			}
			if (foldKey(string(o)) == key) != strings.EqualFold(string(r), string(o)) {
				if wrong++; wrong <= 10 {
					t.Errorf("%U and %U: foldKey says %v, EqualFold %v", r, o, foldKey(string(o)) == key, strings.EqualFold(string(r), string(o)))
				}
			}
		}
	}
}

// The check sends to a scan exactly the keywords whose characters SQLite
// folds otherwise than the database.
func TestFoldCheckFindsWhatTheIndexFoldsOtherwise(t *testing.T) {
	ctx := context.Background()
	f, err := newFoldCheck(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	for keyword, want := range map[string]bool{
		"printer": true, "ÉCOLE": true, "σίσυφος": true, "k": true, "s": true, "İstanbul": true, "123 !": true, "日本": true,
		"ა": false, "Ꭰ": false, "\U000104d8": false, "printer ა": false,
	} {
		for range 2 { // the second answer from what was kept
			if got, err := f.agrees(ctx, keyword); err != nil || got != want {
				t.Errorf("agrees(%q) = %v, %v; want %v", keyword, got, err, want)
			}
		}
	}
}
