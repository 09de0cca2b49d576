package email

import (
	"strings"

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
	r := htmlRenderer{dropQuotes: dropQuotes}
	z := html.NewTokenizer(strings.NewReader(src))
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			break
		}
		r.token(tt, z.Token())
	}
	return r.b.String()
}

// htmlRenderer is the state of one htmlToText call.
type htmlRenderer struct {
	b          strings.Builder
	dropQuotes bool
	skipTag    atom.Atom // element being skipped (script, style, quote)
	skipName   string    // its name when not a known atom
	skipDepth  int       // nesting of skipTag inside itself
	pre        int       // inside <pre>: keep whitespace
	links      []string  // hrefs of open <a> elements, "" when not shown
	linkStart  []int     // output length when each <a> opened
	pendingNL  int       // newlines owed before the next text
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
		r.b.WriteString("- ")
	case atom.Pre:
		r.newline(2)
		r.pre++
	case atom.Hr:
		r.newline(1)
		r.flush()
		r.b.WriteString("---")
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
	r.linkStart = append(r.linkStart, r.b.Len())
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
	// Only a short link text can equal its url; looking at long ones would
	// make nested or unclosed links quadratic.
	if r.b.Len()-start <= 2*len(href)+16 {
		text := strings.TrimSpace(r.b.String()[min(start, r.b.Len()):])
		if text == "" {
			r.text(shown)
			return
		}
		if text == href || text == shown || strings.TrimSuffix(text, "/") == strings.TrimSuffix(shown, "/") {
			return
		}
	}
	r.b.WriteString(" (" + shown + ")")
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
	if r.b.Len() == 0 {
		return
	}
	r.pendingNL = max(r.pendingNL, n)
}

func (r *htmlRenderer) flush() {
	if r.pendingNL == 0 {
		return
	}
	s := r.b.String()
	have := 0 // trailing newlines already written, counted up to 2
	for have < 2 && have < len(s) && s[len(s)-1-have] == '\n' {
		have++
	}
	for i := have; i < r.pendingNL; i++ {
		r.b.WriteByte('\n')
	}
	r.pendingNL = 0
}

// space separates table cells.
func (r *htmlRenderer) space() {
	s := r.b.String()
	if s != "" && !strings.HasSuffix(s, " ") && !strings.HasSuffix(s, "\n") && r.pendingNL == 0 {
		r.b.WriteByte(' ')
	}
}

// text writes character data; outside <pre> runs of whitespace collapse to
// one space as a browser would show them.
func (r *htmlRenderer) text(s string) {
	s = strings.ReplaceAll(s, "\u00a0", " ")
	if r.pre > 0 {
		r.flush()
		r.b.WriteString(s)
		return
	}
	collapsed := strings.Join(strings.Fields(s), " ")
	if collapsed == "" {
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
	r.b.WriteString(collapsed)
	last := s[len(s)-1]
	if last == ' ' || last == '\n' || last == '\t' || last == '\r' {
		r.b.WriteByte(' ')
	}
}
