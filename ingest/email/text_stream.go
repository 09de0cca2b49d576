package email

import (
	"errors"
	"io"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/transform"
)

// A body's text is kept in memory only as far as a description can use
// it (ParseOptions.MaxTextBytes); the whole text, for original-message.txt,
// is decoded again from the raw message as a stream when it is stored
// (Message.WriteFullText). The pieces here are the streaming forms of what
// Parse does to a body in memory: decodeText's charset handling
// (textDecoding), tidyText (tidier), and the check for valid UTF-8 that
// picks the decoding (utf8Check).

// decodeHow is how a body's bytes become UTF-8.
type decodeHow int

const (
	decodeAsIs        decodeHow = iota // valid UTF-8 already
	decodeWindows1252                  // undeclared 8-bit text
	decodeReplace                      // bad bytes replaced by U+FFFD
	decodeCharset                      // a known charset, then bad bytes replaced
)

// textDecoding is decodeText's decision for one body, made once from the
// whole body (is it valid UTF-8?) and its declared or sniffed charset.
type textDecoding struct {
	how   decodeHow
	label string // for decodeCharset
}

// reader decodes r as the decision says, stopping at r's first error
// where the in-memory decoding stopped reading.
func (d textDecoding) reader(r io.Reader) io.Reader {
	r = endAtError{r}
	switch d.how {
	case decodeWindows1252:
		return charmap.Windows1252.NewDecoder().Reader(r)
	case decodeReplace:
		return transform.NewReader(r, &validUTF8{})
	case decodeCharset:
		cr, err := charset.Reader(d.label, r)
		if err != nil { // decided with a known label: not reached
			return transform.NewReader(r, &validUTF8{})
		}
		return transform.NewReader(endAtError{cr}, &validUTF8{})
	}
	return r
}

// validUTF8 is strings.ToValidUTF8(s, "\uFFFD") as a transform: each run
// of bytes that are not UTF-8 becomes one U+FFFD, also across reads.
type validUTF8 struct{ invalid bool }

func (v *validUTF8) Reset() { v.invalid = false }

func (v *validUTF8) Transform(dst, src []byte, atEOF bool) (nDst, nSrc int, err error) {
	for nSrc < len(src) {
		c := src[nSrc]
		if c < utf8.RuneSelf {
			if nDst >= len(dst) {
				return nDst, nSrc, transform.ErrShortDst
			}
			dst[nDst] = c
			nDst++
			nSrc++
			v.invalid = false
			continue
		}
		if !atEOF && !utf8.FullRune(src[nSrc:]) {
			return nDst, nSrc, transform.ErrShortSrc
		}
		_, wid := utf8.DecodeRune(src[nSrc:])
		if wid == 1 {
			if !v.invalid {
				if nDst+len(replacementChar) > len(dst) {
					return nDst, nSrc, transform.ErrShortDst
				}
				nDst += copy(dst[nDst:], replacementChar)
				v.invalid = true
			}
			nSrc++
			continue
		}
		if nDst+wid > len(dst) {
			return nDst, nSrc, transform.ErrShortDst
		}
		nDst += copy(dst[nDst:], src[nSrc:nSrc+wid])
		nSrc += wid
		v.invalid = false
	}
	return nDst, nSrc, nil
}

const replacementChar = "\uFFFD"

// utf8Check tells whether bytes written in pieces are valid UTF-8 as a
// whole, holding at most one split character.
type utf8Check struct {
	bad   bool
	carry [utf8.UTFMax]byte
	n     int // bytes in carry
}

func (c *utf8Check) write(b []byte) {
	for c.n > 0 && len(b) > 0 && !c.bad {
		c.carry[c.n] = b[0]
		c.n++
		b = b[1:]
		if utf8.FullRune(c.carry[:c.n]) {
			if r, size := utf8.DecodeRune(c.carry[:c.n]); r == utf8.RuneError && size <= 1 {
				c.bad = true
			}
			c.n = 0
		}
	}
	if c.bad || len(b) == 0 {
		return
	}
	tail := 0 // bytes of a character split at the end of b
	for i := len(b) - 1; i >= 0 && i >= len(b)-(utf8.UTFMax-1); i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				tail = len(b) - i
			}
			break
		}
	}
	if !utf8.Valid(b[:len(b)-tail]) {
		c.bad = true
		return
	}
	c.n = copy(c.carry[:], b[len(b)-tail:])
}

// valid reports whether everything written was valid UTF-8.
func (c *utf8Check) valid() bool { return !c.bad && c.n == 0 }

// runeBoundary shortens b, valid UTF-8 cut anywhere, to whole characters.
func runeBoundary(b []byte) []byte {
	for i := len(b) - 1; i >= 0 && i >= len(b)-(utf8.UTFMax-1); i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return b[:i]
			}
			break
		}
	}
	return b
}

// tidier is tidyText as a stream: it normalises newlines, drops trailing
// spaces, collapses runs of blank lines and trims newlines at both ends of
// the text written to it, holding back only what it cannot decide yet (the
// spaces at the end of the current line, newlines owed, the first byte of a
// split no-break space). Its input is valid UTF-8. Close ends the text.
type tidier struct {
	w       io.Writer
	err     error
	out     []byte // output not yet written to w
	started bool   // some text written: newlines owed are no longer leading
	owed    int    // newlines due before the next text
	blank   int    // empty lines in a row
	lineLen int    // bytes of the current line given out
	head    [2]byte
	spaces  []byte // spaces at the end of the current line, held
	cr      bool   // the last byte was '\r': a '\n' after it ends no line
	half    bool   // the last byte was 0xC2, maybe half of U+00A0
}

func newTidier(w io.Writer) *tidier { return &tidier{w: w} }

func (t *tidier) WriteString(s string) (int, error) {
	return t.Write([]byte(s))
}

func (t *tidier) Write(b []byte) (int, error) {
	if t.err != nil {
		return 0, t.err
	}
	i := 0
	if t.half {
		t.half = false
		if len(b) > 0 && b[0] == 0xA0 {
			t.spaces = append(t.spaces, 0xC2, 0xA0)
			i = 1
		} else {
			t.text(0xC2)
		}
	}
	for ; i < len(b); i++ {
		c := b[i]
		if t.cr {
			t.cr = false
			if c == '\n' {
				continue
			}
		}
		switch {
		case c == '\r':
			t.endLine()
			t.cr = true
		case c == '\n':
			t.endLine()
		case c == ' ' || c == '\t':
			t.spaces = append(t.spaces, c)
		case c == 0xC2 && i+1 == len(b):
			t.half = true
		case c == 0xC2 && b[i+1] == 0xA0:
			t.spaces = append(t.spaces, c, 0xA0)
			i++
		default:
			t.text(c)
		}
		if len(t.out) >= 32<<10 {
			t.flush()
		}
	}
	return len(b), t.err
}

// text gives out one byte of a line, with the newlines owed before the
// line's first byte and the spaces held before this one.
func (t *tidier) text(c byte) {
	if t.lineLen == 0 {
		for ; t.started && t.owed > 0; t.owed-- {
			t.out = append(t.out, '\n')
		}
		t.owed, t.started = 0, true
	}
	for _, s := range t.spaces {
		t.give(s)
	}
	t.spaces = t.spaces[:0]
	t.give(c)
}

func (t *tidier) give(c byte) {
	if t.lineLen < len(t.head) {
		t.head[t.lineLen] = c
	}
	t.lineLen++
	t.out = append(t.out, c)
}

// endLine drops the line's trailing spaces, except in the signature
// delimiter "-- ", and counts the line: an empty one owes one newline
// unless it follows another.
func (t *tidier) endLine() {
	t.keepDelimiter()
	t.spaces = t.spaces[:0]
	if t.lineLen > 0 {
		t.blank, t.owed = 0, 1
	} else if t.blank++; t.blank == 1 {
		t.owed++
	}
	t.lineLen = 0
}

func (t *tidier) keepDelimiter() {
	if t.lineLen == 2 && t.head == [2]byte{'-', '-'} && string(t.spaces) == " " {
		t.out = append(t.out, ' ')
	}
}

func (t *tidier) flush() {
	if t.err == nil && len(t.out) > 0 {
		_, t.err = t.w.Write(t.out)
	}
	t.out = t.out[:0]
}

// Close ends the text: the last line's spaces and the newlines owed are
// trailing, so dropped.
func (t *tidier) Close() error {
	if t.half {
		t.half = false
		t.text(0xC2)
	}
	t.keepDelimiter()
	t.spaces = t.spaces[:0]
	t.flush()
	return t.err
}

// sniffBytes is how much of an HTML body its charset is sniffed from
// (htmlcharset.DetermineEncoding): kept of every body, even when the text
// kept is used up, so that its decoding is decided as from the whole.
const sniffBytes = 1024

// blankCheck records whether anything but white space (unicode.IsSpace)
// is written to it, and stops the writer with errNotBlank once it is.
type blankCheck struct {
	notBlank bool
	carry    []byte // a split character
}

var errNotBlank = errors.New("not blank")

func (c *blankCheck) Write(b []byte) (int, error) {
	n := len(b)
	if len(c.carry) > 0 {
		b = append(c.carry, b...)
		c.carry = nil
	}
	for len(b) > 0 && !c.notBlank {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && !utf8.FullRune(b) {
			c.carry = append([]byte(nil), b...)
			break
		}
		c.notBlank = !unicode.IsSpace(r)
		b = b[size:]
	}
	if c.notBlank {
		return n, errNotBlank
	}
	return n, nil
}

// keepStart keeps the first max bytes written to it and, with blankToo,
// records whether anything written is not white space. It stops the
// writer with errEnough once it has what it needs.
type keepStart struct {
	max      int
	b        []byte
	blankToo bool
	blank    blankCheck
}

var errEnough = errors.New("enough text kept")

func (k *keepStart) Write(p []byte) (int, error) {
	if room := k.max - len(k.b); room > 0 {
		k.b = append(k.b, p[:min(room, len(p))]...)
	}
	if k.blankToo && !k.blank.notBlank {
		_, _ = k.blank.Write(p) // errNotBlank is recorded
	}
	if len(k.b) >= k.max && (!k.blankToo || k.blank.notBlank) {
		return len(p), errEnough
	}
	return len(p), nil
}

// countWriter counts what is written to it.
type countWriter struct{ n int64 }

func (c *countWriter) Write(b []byte) (int, error) {
	c.n += int64(len(b))
	return len(b), nil
}

// readText reads a body: its first max bytes, whether all of it is valid
// UTF-8, and whether there was more than max. It stops at the first error,
// as io.ReadAll does, and returns it.
func readText(r io.Reader, max int) (head []byte, valid, more bool, err error) {
	head, err = readAtMost(r, int64(max))
	var chk utf8Check
	chk.write(head)
	if len(head) > max {
		more = true
		buf := make([]byte, 32<<10)
		for err == nil {
			var n int
			n, err = r.Read(buf)
			chk.write(buf[:n])
		}
		if err == io.EOF {
			err = nil
		}
		head = head[:max]
	}
	return head, chk.valid(), more, err
}
