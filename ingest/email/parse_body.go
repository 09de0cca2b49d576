package email

import (
	"bytes"
	"strings"
	"unicode/utf8"
)

// body is the text of an entity twice: full keeps everything; fresh has
// HTML quote containers (Gmail, Apple Mail, Thunderbird) already dropped and
// is what quote stripping starts from. leaves are the bodies it was made
// of, in order; cut says some held only their start.
type body struct {
	full, fresh string
	isHTML      bool
	ok          bool
	blank       bool // full is white space, and so is the text not kept
	cut         bool
	leaves      []bodyLeaf
}

// fillBody sets FullText and Text from the MIME tree. When the tree yields
// no text and no attachments (a broken multipart), the raw body is shown
// rather than nothing. When a body was longer than the text kept, the
// size of the whole text is measured by writing it, as a stream, nowhere.
func (p *mimeParser) fillBody(msg *Message, root *node, raw []byte) {
	b := bodyOf(root)
	if !b.ok && !hasParts(root) && len(bytes.TrimSpace(raw)) > 0 && strings.HasPrefix(root.mediaType, "multipart/") {
		p.warnf("no readable MIME part; raw body used as text")
		head := raw[:min(len(raw), p.opts.maxText())]
		dec := p.textDecodingFor(head, "", false, utf8.Valid(raw))
		cut := len(head) < len(raw)
		if cut && dec.how == decodeAsIs {
			head = runeBoundary(head)
		}
		text := p.decodeText(head, dec)
		b = body{full: text, fresh: text, ok: true, cut: cut, leaves: []bodyLeaf{{index: -1, dec: dec}}}
	}
	msg.FullText = tidyText(b.full)
	msg.Text = tidyText(stripQuoted(b.fresh))
	if strings.TrimSpace(msg.Text) == "" {
		msg.Text = msg.FullText
	}
	msg.FullTextSize = int64(len(msg.FullText))
	if b.cut {
		msg.cutText = b.leaves
		var n countWriter
		_ = msg.WriteFullText(&n) // counting never fails
		msg.FullTextSize = n.n
	}
}

// bodyOf picks the body text of an entity: in multipart/alternative the
// text/plain version (the sender's own plain rendering, with ">" quotes we
// know how to strip), else the HTML one; in every other multipart the
// bodies of all children in order (Apple Mail splits text around inline
// images).
func bodyOf(n *node) body {
	switch {
	case n.isBody && n.isHTML && n.cut: // rendered by renderCut
		return body{full: n.text, fresh: n.fresh, isHTML: true, ok: true, blank: n.blank, cut: true, leaves: []bodyLeaf{n.leaf}}
	case n.isBody && n.isHTML:
		full := htmlToText(n.text, false)
		return body{full: full, fresh: htmlToText(n.text, true), isHTML: true, ok: true,
			blank: strings.TrimSpace(full) == "", leaves: []bodyLeaf{n.leaf}}
	case n.isBody:
		blank := strings.TrimSpace(n.text) == ""
		if n.cut {
			blank = n.blank
		}
		return body{full: n.text, fresh: n.text, ok: true, blank: blank, cut: n.cut, leaves: []bodyLeaf{n.leaf}}
	case n.mediaType == "multipart/alternative":
		return alternativeBody(n.children)
	}
	out := body{blank: true}
	for _, c := range n.children {
		b := bodyOf(c)
		if !b.ok {
			continue
		}
		if out.ok {
			out.full += "\n\n"
			out.fresh += "\n\n"
		}
		out.full += b.full
		out.fresh += b.fresh
		out.ok = true
		out.blank = out.blank && b.blank
		out.cut = out.cut || b.cut
		out.leaves = append(out.leaves, b.leaves...)
	}
	return out
}

// alternativeBody prefers the first non-empty plain version, then the
// first non-empty HTML one, then whatever exists.
func alternativeBody(children []*node) body {
	var html, any body
	for _, c := range children {
		b := bodyOf(c)
		if !b.ok {
			continue
		}
		empty := b.blank
		switch {
		case !b.isHTML && !empty:
			return b
		case b.isHTML && !empty && !html.ok:
			html = b
		case !any.ok:
			any = b
		}
	}
	if html.ok {
		return html
	}
	return any
}

// hasParts reports whether the tree holds any attachment.
func hasParts(n *node) bool {
	return len(collectParts(n, nil)) > 0
}

// collectParts lists attachments and inline images in document order.
// Detached signatures of multipart/signed are not attachments a person
// sent, so they are left out.
func collectParts(n *node, out []Part) []Part {
	if n.part != nil && !isSignaturePart(n.part.ContentType) {
		out = append(out, *n.part)
	}
	for _, c := range n.children {
		out = collectParts(c, out)
	}
	return out
}

func isSignaturePart(mediaType string) bool {
	switch mediaType {
	case "application/pgp-signature", "application/pkcs7-signature", "application/x-pkcs7-signature":
		return true
	}
	return false
}

// tidyText normalises newlines, drops trailing spaces, collapses runs of
// blank lines and guarantees valid UTF-8 (a tidier over the whole text).
func tidyText(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, replacementChar)
	}
	var b strings.Builder
	t := newTidier(&b)
	_, _ = t.WriteString(s)
	_ = t.Close() // a Builder never fails
	return b.String()
}
