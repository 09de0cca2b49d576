package email

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParse checks that Parse survives arbitrary input and keeps its
// promises: errors only as ErrNotMail, valid UTF-8 text, Size == len(raw),
// attachments within the limit, Text empty only when FullText is.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.eml")
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	const limit = 1024
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := Parse(raw, ParseOptions{MaxAttachmentBytes: limit})
		if err != nil {
			if !errors.Is(err, ErrNotMail) {
				t.Fatalf("error does not wrap ErrNotMail: %v", err)
			}
			return
		}
		checkFuzzInvariants(t, m, len(raw), limit)
	})
}

func checkFuzzInvariants(t *testing.T, m *Message, size int, limit int64) {
	if m.Size != size {
		t.Errorf("Size = %d, want %d", m.Size, size)
	}
	for what, s := range map[string]string{"Text": m.Text, "FullText": m.FullText, "Subject": m.Subject, "From.Name": m.From.Name} {
		if !utf8.ValidString(s) {
			t.Errorf("%s is not valid UTF-8: %q", what, s)
		}
	}
	if m.From.Address == "" {
		t.Error("no error but empty From address")
	}
	if strings.TrimSpace(m.FullText) != "" && strings.TrimSpace(m.Text) == "" {
		t.Errorf("Text empty while FullText is %q", m.FullText)
	}
	for _, a := range m.Attachments {
		if int64(len(a.Data)) > limit || a.Size < int64(len(a.Data)) || (a.Data == nil && a.Size <= limit && a.Size > 0) {
			t.Errorf("attachment %q: Size %d, %d bytes of Data, limit %d", a.Filename, a.Size, len(a.Data), limit)
		}
	}
	for _, id := range append(append([]string{}, m.InReplyTo...), m.References...) {
		if !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, ">") {
			t.Errorf("message id %q not in <> form", id)
		}
	}
}
