package email

import (
	"io"
	"strings"
	"unicode"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// htmlToText renders HTML mail as readable plain text with the
// golang.org/x/net/html tokenizer: paragraphs and blocks on their own lines,
// <br> as a line break, list items as "- ", links as "text (url)", script,
// style and head dropped, entities decoded. With dropQuotes, the containers
// mail programs put around the quoted earlier message and the signature
// (Gmail's gmail_quote, Apple Mail's and Thunderbird's blockquote
// type=cite, moz-cite-prefix, moz-signature) are left out as well.
func htmlToText(src string, dropQuotes bool) string {
	var b strings.Builder
	_ = renderHTML(strings.NewReader(src), htmlOut{w: &b, dropQuotes: dropQuotes}) // a Builder never fails
	return b.String()
}

// htmlOut is where renderHTML writes one rendering.
type htmlOut struct {
	w          io.Writer
	dropQuotes bool
}

// renderHTML is htmlToText as a stream, from src to each out (one
// tokenizer for all): it holds back only the output it may still look at
// (the last two bytes, the text of a link short enough to be compared with
// its url), so a body of any size is rendered in bounded memory. An out
// whose writer fails gets no more; renderHTML returns the first error once
// all have failed or src has ended.
func renderHTML(src io.Reader, outs ...htmlOut) error {
	rs := make([]*htmlRenderer, len(outs))
	for i, o := range outs {
		rs[i] = &htmlRenderer{w: o.w, dropQuotes: o.dropQuotes, spillAt: minSpill}
	}
	z := html.NewTokenizer(src)
	for live := len(rs); live > 0; {
		tt := z.Next()
		if tt == html.ErrorToken {
			break
		}
		t := z.Token()
		live = 0
		for _, r := range rs {
			if r.err == nil {
				r.token(tt, t)
				live++
			}
		}
	}
	var first error
	for _, r := range rs {
		if r.err == nil && len(r.buf) > 0 {
			_, r.err = r.w.Write(r.buf)
		}
		if first == nil {
			first = r.err
		}
	}
	return first
}

// minSpill is how much output renderHTML collects before writing it.
const minSpill = 32 << 10

// htmlRenderer is the state of one renderHTML call.
type htmlRenderer struct {
	w          io.Writer
	err        error
	buf        []byte // output not yet written to w, ending at offset n
	n          int    // bytes of output so far
	spillAt    int    // len(buf) at which to write out what is no longer needed
	dropQuotes bool
	skipTag    atom.Atom // element being skipped (script, style, quote)
	skipName   string    // its name when not a known atom
	skipDepth  int       // nesting of skipTag inside itself
	pre        int       // inside <pre>: keep whitespace
	links      []string  // hrefs of open <a> elements, "" when not shown
	linkStart  []int     // output offset when each <a> opened
	pendingNL  int       // newlines owed before the next text
}

func (r *htmlRenderer) write(s string) {
	r.buf = append(r.buf, s...)
	r.n += len(s)
	if len(r.buf) >= r.spillAt {
		r.spill()
	}
}

func (r *htmlRenderer) writeByte(c byte) {
	r.buf = append(r.buf, c)
	r.n++
	if len(r.buf) >= r.spillAt {
		r.spill()
	}
}

// spill writes out the output nothing will look at again: all but the
// last two bytes and the text of open links that closeLink may still
// compare with their url. What is held back is bounded by the urls.
func (r *htmlRenderer) spill() {
	keep := r.n - 2
	for i, href := range r.links {
		if href != "" && r.linkWanted(r.linkStart[i], href) {
			keep = min(keep, r.linkStart[i])
		}
	}
	if cut := keep - (r.n - len(r.buf)); cut > 0 && r.err == nil {
		_, r.err = r.w.Write(r.buf[:cut])
		r.buf = r.buf[:copy(r.buf, r.buf[cut:])]
	}
	r.spillAt = max(minSpill, 2*len(r.buf)) // amortised: held text is not copied over and over
}

// linkWanted reports whether the text of a link opened at offset start
// is short enough for closeLink to compare it with its url href. Only a
// short link text can equal its url; looking at long ones would make
// nested or unclosed links quadratic.
func (r *htmlRenderer) linkWanted(start int, href string) bool {
	return r.n-start <= 2*len(href)+16
}

// tail returns the output from offset start, which must be held.
func (r *htmlRenderer) tail(start int) string {
	return string(r.buf[len(r.buf)-(r.n-start):])
}

func (r *htmlRenderer) token(tt html.TokenType, t html.Token) {
	if r.skipDepth > 0 {
		r.skipping(tt, t)
		return
	}
	switch tt {
	case html.TextToken:
		r.text(t.Data)
	case html.StartTagToken:
		r.start(t)
	case html.SelfClosingTagToken:
		r.start(t)
		if !isVoid(t.DataAtom) {
			r.end(t)
		}
	case html.EndTagToken:
		r.end(t)
	}
}

// skipping counts nested elements of the skipped kind so that
// <div class=gmail_quote><div>..</div></div> ends at the right </div>.
func (r *htmlRenderer) skipping(tt html.TokenType, t html.Token) {
	same := t.DataAtom == r.skipTag && (r.skipTag != 0 || t.Data == r.skipName)
	if !same {
		return
	}
	switch tt {
	case html.StartTagToken:
		r.skipDepth++
	case html.EndTagToken:
		r.skipDepth--
	}
}

func (r *htmlRenderer) startSkip(t html.Token) {
	r.skipTag, r.skipName, r.skipDepth = t.DataAtom, t.Data, 1
}

// skippedAlways are elements whose content is never text for a reader.
func skippedAlways(a atom.Atom) bool {
	switch a {
	case atom.Script, atom.Style, atom.Head, atom.Title, atom.Noscript, atom.Template, atom.Svg, atom.Object:
		return true
	}
	return false
}

// isQuoteContainer recognises the wrappers of quoted text and signatures
// used by common mail programs.
func isQuoteContainer(t html.Token) bool {
	for _, a := range t.Attr {
		v := strings.ToLower(a.Val)
		switch strings.ToLower(a.Key) {
		case "class":
			for _, c := range strings.Fields(v) {
				switch c {
				case "gmail_quote", "gmail_quote_container", "gmail_signature", "gmail_extra",
					"moz-cite-prefix", "moz-signature", "yahoo_quoted", "protonmail_quote":
					return true
				}
			}
		case "type":
			if t.DataAtom == atom.Blockquote && v == "cite" {
				return true
			}
		case "id":
			if v == "appendonsend" || v == "divrplyfwdmsg" || v == "mail-editor-reference-message-container" {
				return true
			}
		}
	}
	return false
}

func (r *htmlRenderer) start(t html.Token) {
	if t.DataAtom == atom.Head && t.Type == html.SelfClosingTagToken {
		return
	}
	if skippedAlways(t.DataAtom) && t.Type != html.SelfClosingTagToken {
		r.startSkip(t)
		return
	}
	if r.dropQuotes && isQuoteContainer(t) && !isVoid(t.DataAtom) && t.Type != html.SelfClosingTagToken {
		r.startSkip(t)
		return
	}
	switch t.DataAtom {
	case atom.Br:
		r.newline(1)
	case atom.P, atom.H1, atom.H2, atom.H3, atom.H4, atom.H5, atom.H6, atom.Blockquote, atom.Table, atom.Ul, atom.Ol:
		r.newline(2)
	case atom.Li:
		r.newline(1)
		r.flush()
		r.write("- ")
	case atom.Pre:
		r.newline(2)
		r.pre++
	case atom.Hr:
		r.newline(1)
		r.flush()
		r.write("---")
		r.newline(1)
	case atom.Td, atom.Th:
		r.space()
	case atom.A:
		r.openLink(t)
	case atom.Img:
		r.image(t)
	default:
		if isBlock(t.DataAtom) {
			r.newline(1)
		}
	}
}

func (r *htmlRenderer) end(t html.Token) {
	switch t.DataAtom {
	case atom.P, atom.H1, atom.H2, atom.H3, atom.H4, atom.H5, atom.H6, atom.Blockquote, atom.Table, atom.Ul, atom.Ol:
		r.newline(2)
	case atom.Pre:
		if r.pre > 0 {
			r.pre--
		}
		r.newline(2)
	case atom.A:
		r.closeLink()
	default:
		if isBlock(t.DataAtom) {
			r.newline(1)
		}
	}
}

func isBlock(a atom.Atom) bool {
	switch a {
	case atom.Div, atom.Tr, atom.Li, atom.Section, atom.Article, atom.Header, atom.Footer,
		atom.Address, atom.Center, atom.Dl, atom.Dt, atom.Dd, atom.Form, atom.Figure,
		atom.Main, atom.Nav, atom.Aside, atom.Caption, atom.Tbody, atom.Thead, atom.Tfoot:
		return true
	}
	return false
}

func isVoid(a atom.Atom) bool {
	switch a {
	case atom.Br, atom.Hr, atom.Img, atom.Input, atom.Meta, atom.Link, atom.Area, atom.Base,
		atom.Col, atom.Embed, atom.Source, atom.Track, atom.Wbr, atom.Param:
		return true
	}
	return false
}

// openLink remembers the href of a link worth showing.
func (r *htmlRenderer) openLink(t html.Token) {
	href := ""
	for _, a := range t.Attr {
		if strings.EqualFold(a.Key, "href") {
			href = strings.TrimSpace(a.Val)
		}
	}
	lower := strings.ToLower(href)
	if strings.HasPrefix(lower, "#") || strings.HasPrefix(lower, "javascript:") || strings.HasPrefix(lower, "cid:") {
		href = ""
	}
	r.links = append(r.links, href)
	r.linkStart = append(r.linkStart, r.n)
}

// closeLink writes " (url)" after the link text unless the text already is
// the url (or the address of a mailto: link).
func (r *htmlRenderer) closeLink() {
	if len(r.links) == 0 {
		return
	}
	n := len(r.links) - 1
	href, start := r.links[n], r.linkStart[n]
	r.links, r.linkStart = r.links[:n], r.linkStart[:n]
	if href == "" {
		return
	}
	shown := strings.TrimPrefix(href, "mailto:")
	if r.linkWanted(start, href) {
		text := strings.TrimSpace(r.tail(start))
		if text == "" {
			r.text(shown)
			return
		}
		if text == href || text == shown || strings.TrimSuffix(text, "/") == strings.TrimSuffix(shown, "/") {
			return
		}
	}
	r.write(" (" + shown + ")")
}

// image shows the alt text of images that have one, so "[logo]" hints at
// what was there.
func (r *htmlRenderer) image(t html.Token) {
	for _, a := range t.Attr {
		if strings.EqualFold(a.Key, "alt") && strings.TrimSpace(a.Val) != "" {
			r.text("[" + strings.TrimSpace(a.Val) + "]")
		}
	}
}

// newline asks for at least n line breaks before the next text; none at
// the very start.
func (r *htmlRenderer) newline(n int) {
	if r.n == 0 {
		return
	}
	r.pendingNL = max(r.pendingNL, n)
}

func (r *htmlRenderer) flush() {
	if r.pendingNL == 0 {
		return
	}
	have := 0 // trailing newlines already written, counted up to 2
	for have < 2 && have < len(r.buf) && r.buf[len(r.buf)-1-have] == '\n' {
		have++
	}
	for i := have; i < r.pendingNL; i++ {
		r.writeByte('\n')
	}
	r.pendingNL = 0
}

// space separates table cells.
func (r *htmlRenderer) space() {
	if len(r.buf) > 0 && r.buf[len(r.buf)-1] != ' ' && r.buf[len(r.buf)-1] != '\n' && r.pendingNL == 0 {
		r.writeByte(' ')
	}
}

// text writes character data; outside <pre> runs of whitespace collapse to
// one space as a browser would show them.
func (r *htmlRenderer) text(s string) {
	s = strings.ReplaceAll(s, "\u00a0", " ")
	if r.pre > 0 {
		r.flush()
		r.write(s)
		return
	}
	if nextSpace(s, false) == len(s) { // only white space
		if s != "" {
			r.space()
		}
		return
	}
	lead := s[0] == ' ' || s[0] == '\n' || s[0] == '\t' || s[0] == '\r'
	if lead {
		r.space()
	}
	r.flush()
	// The words of s, one space apart (strings.Fields joined, written
	// without building either: a body is mostly text tokens).
	for rest, sep := s, false; ; sep = true {
		rest = rest[nextSpace(rest, false):]
		if rest == "" {
			break
		}
		end := nextSpace(rest, true)
		if sep {
			r.writeByte(' ')
		}
		r.write(rest[:end])
		rest = rest[end:]
	}
	last := s[len(s)-1]
	if last == ' ' || last == '\n' || last == '\t' || last == '\r' {
		r.writeByte(' ')
	}
}

// nextSpace returns the offset of the first character of s that is white
// space (unicode.IsSpace, as strings.Fields has it) when space is true,
// or that is not when it is false; len(s) when there is none.
func nextSpace(s string, space bool) int {
	for i, c := range s {
		if unicode.IsSpace(c) == space {
			return i
		}
	}
	return len(s)
}
