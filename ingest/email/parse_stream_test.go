package email

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// With DataLater, EachAttachment streams exactly the bytes Parse would have
// kept, under the same indexes and sizes, also for broken MIME, and leaves
// out the parts over the limit.
func TestEachAttachmentMatchesParse(t *testing.T) {
	inputs := withCorpus(t, map[string][]byte{"over the limit": mailWithAttachment(70 << 10)})
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

// generatedTexts are bodies that go through every decoding and rendering
// path: CRLF and lone CR, trailing spaces and no-break spaces, the
// signature delimiter, blank runs, undeclared 8-bit, a declared charset,
// invalid UTF-8 declared as UTF-8, base64, HTML with links, several text
// parts, and a broken multipart shown raw.
func generatedTexts() map[string][]byte {
	head := "From: a@customer.test\r\nTo: " + testBase + "\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
	plain := "\r\n\r\nFirst line  \r\n\u00a0\r\n\r\n\r\n-- \r\nBob\t\r\nlone\rcr\n\n  indented é ü 漢字 😀\u00a0 \r\n\r\n"
	return map[string][]byte{
		"plain":            []byte(head + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + strings.Repeat(plain, 50)),
		"undeclared 8-bit": []byte(head + "\r\n" + strings.Repeat("caf\xe9 cr\xe8me \xa0 \r\n", 200)),
		"latin-1":          []byte(head + "Content-Type: text/plain; charset=iso-8859-1\r\n\r\n" + strings.Repeat("Gr\xfc\xdfe \xa0\r\n", 200)),
		"invalid utf-8":    []byte(head + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + strings.Repeat("ok \xff\xfe bad é \xc3\r\n", 200)),
		"base64": []byte(head + "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
			base64.StdEncoding.EncodeToString([]byte(strings.Repeat(plain, 30))) + "\r\n"),
		"html": []byte(head + "Content-Type: text/html; charset=utf-8\r\n\r\n" + strings.Repeat(
			`<p>Hello <b>there</b>&nbsp;</p><a href="https://x.test/">https://x.test/</a> <a href="https://y.test/a">a link</a><ul><li>one<li>two</ul><pre>  kept  </pre><table><tr><td>a<td>b</table><br><br><br>`, 100)),
		"several parts": []byte(head + "Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\n" +
			strings.Repeat("part one  \r\n", 100) + "\r\n--B\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n\r\n%PDF\r\n" +
			"--B\r\nContent-Type: multipart/alternative; boundary=C\r\n\r\n--C\r\nContent-Type: text/plain\r\n\r\n\r\n--C\r\nContent-Type: text/html\r\n\r\n" +
			strings.Repeat("<p>part two</p>", 100) + "\r\n--C--\r\n--B\r\nContent-Type: text/html\r\n\r\n" + strings.Repeat("<div>part three</div>", 100) + "\r\n--B--\r\n"),
		"broken multipart": []byte(head + "Content-Type: multipart/mixed; boundary=NEVER\r\n\r\n" + strings.Repeat("no part at all \xe9\r\n", 200)),
	}
}

// A text longer than Parse keeps is written whole by WriteFullText,
// decoded again as a stream, byte for byte the FullText an unbounded Parse
// holds, and FullTextSize says its length; mail under the bound is parsed
// exactly as without one.
func TestWriteFullTextMatchesParse(t *testing.T) {
	inputs := withCorpus(t, generatedTexts())
	cut := 0
	for name, raw := range inputs {
		whole, err := Parse(raw, ParseOptions{MaxTextBytes: 1 << 30})
		if err != nil {
			continue // not mail
		}
		if whole.FullTextSize != int64(len(whole.FullText)) {
			t.Errorf("%s: FullTextSize %d, FullText %d bytes", name, whole.FullTextSize, len(whole.FullText))
		}
		def, _ := Parse(raw, ParseOptions{})
		if def.Text != whole.Text || def.FullText != whole.FullText || fmt.Sprint(def.Warnings) != fmt.Sprint(whole.Warnings) {
			t.Errorf("%s: parsed differently with the default text bound", name)
		}
		for _, max := range []int{1, 5, 64, 1000} {
			m, err := Parse(raw, ParseOptions{MaxTextBytes: max, DataLater: true})
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			var b bytes.Buffer
			if err := m.WriteFullText(&b); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if b.String() != whole.FullText || m.FullTextSize != int64(len(whole.FullText)) {
				t.Errorf("%s, %d bytes kept: wrote %d bytes (size %d), want the %d of FullText\ngot  %.300q\nwant %.300q",
					name, max, b.Len(), m.FullTextSize, len(whole.FullText), b.String(), whole.FullText)
			}
			// Of one body, the text kept is the start of all of it.
			if len(m.cutText) == 1 && !strings.HasPrefix(whole.FullText, m.FullText) {
				t.Errorf("%s, %d bytes kept: FullText %.200q is not the start of the whole", name, max, m.FullText)
			}
			if len(m.FullText) < len(whole.FullText) {
				cut++
			}
		}
	}
	if cut < 20 {
		t.Errorf("only %d texts were cut: the bound is not applied?", cut)
	}
}

// withCorpus adds the mails of testdata to inputs, by file name.
func withCorpus(t *testing.T, inputs map[string][]byte) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*.eml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inputs[filepath.Base(f)] = raw
	}
	return inputs
}
