package slackin

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ticketd/ticketd/store"
)

func TestWithNotesStaysWithinTheLimit(t *testing.T) {
	note := `[attachment "a.bin" not stored: over the 10-byte limit]`
	for _, c := range []struct {
		name      string
		text      string
		notes     []string
		max       int
		want      string
		wantWhole bool
	}{
		{"fits", "hello", nil, 10, "hello", false},
		{"fits with note", "hi", []string{note}, 100, "hi\n\n" + note, false},
		{"exactly", "12345", nil, 5, "12345", false},
		{"cut", strings.Repeat("1234567890", 20), nil, 100, "", true},
		{"notes take the room", "some text", []string{note}, 20, "", true},
	} {
		out, whole := withNotes(c.text, c.notes, store.Limits{MaxDescription: c.max})
		if c.want != "" && out != c.want {
			t.Errorf("%s: %q, want %q", c.name, out, c.want)
		}
		if (whole != "") != c.wantWhole || (c.wantWhole && whole != c.text) {
			t.Errorf("%s: whole %q", c.name, whole)
		}
		if c.wantWhole && utf8.RuneCountInString(out) > c.max {
			t.Errorf("%s: %d characters, over %d: %q", c.name, utf8.RuneCountInString(out), c.max, out)
		}
	}
}

func TestWithNotesCutsAtRuneBoundary(t *testing.T) {
	out, whole := withNotes(strings.Repeat("é", 50)+strings.Repeat("😀", 20), nil, store.Limits{MaxDescription: 60})
	if !utf8.ValidString(out) || utf8.RuneCountInString(out) > 60 || !strings.HasPrefix(out, "éé") || whole == "" {
		t.Errorf("cut: %q (%d characters), whole %q", out, utf8.RuneCountInString(out), whole)
	}
}
