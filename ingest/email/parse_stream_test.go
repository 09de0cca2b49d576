package email

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// With DataLater, EachAttachment streams exactly the bytes Parse would have
// kept, under the same indexes and sizes, also for broken MIME, and leaves
// out the parts over the limit.
func TestEachAttachmentMatchesParse(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.eml"))
	if err != nil {
		t.Fatal(err)
	}
	inputs := map[string][]byte{"over the limit": mailWithAttachment(70 << 10)}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inputs[filepath.Base(f)] = raw
	}
	streamed := 0
	for name, raw := range inputs {
		o := ParseOptions{MaxAttachmentBytes: 64 << 10}
		whole, err := Parse(raw, o)
		if err != nil {
			continue // not mail: nothing to stream
		}
		o.DataLater = true
		later, err := Parse(raw, o)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(later.Attachments) != len(whole.Attachments) {
			t.Fatalf("%s: %d attachments, %d without DataLater", name, len(later.Attachments), len(whole.Attachments))
		}
		got := map[int][]byte{}
		err = later.EachAttachment(func(i int, r io.Reader) error {
			b, err := io.ReadAll(r)
			got[i] = b
			return err
		})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for i, p := range whole.Attachments {
			l := later.Attachments[i]
			if l.Data != nil || l.Size != p.Size || l.TooLarge != p.TooLarge || l.Filename != p.Filename {
				t.Errorf("%s #%d: DataLater part %+v, whole part size %d too large %v", name, i, l, p.Size, p.TooLarge)
			}
			b, ok := got[i]
			if ok == p.TooLarge || !bytes.Equal(b, p.Data) {
				t.Errorf("%s #%d: streamed %v (%d bytes), Parse kept %d bytes (too large %v)", name, i, ok, len(b), len(p.Data), p.TooLarge)
			}
			if ok {
				streamed++
			}
		}
	}
	if streamed < 5 {
		t.Errorf("only %d attachments streamed: the corpus lost its attachments?", streamed)
	}
}
