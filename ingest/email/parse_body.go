package email

import (
	"strings"
	"unicode/utf8"
)

// body is the text of an entity twice: full keeps everything; fresh has
// HTML quote containers (Gmail, Apple Mail, Thunderbird) already dropped and
// is what quote stripping starts from.
type body struct {
	full, fresh string
	isHTML      bool
	ok          bool
}

// fillBody sets FullText and Text from the MIME tree. When the tree yields
// no text and no attachments (a broken multipart), the raw body is shown
// rather than nothing.
func (p *mimeParser) fillBody(msg *Message, root *node, raw []byte) {
	b := bodyOf(root)
	if !b.ok && !hasParts(root) && len(strings.TrimSpace(string(raw))) > 0 && strings.HasPrefix(root.mediaType, "multipart/") {
		p.warnf("no readable MIME part; raw body used as text")
		text := p.decodeText(raw, "", false)
		b = body{full: text, fresh: text, ok: true}
	}
	msg.FullText = tidyText(b.full)
	msg.Text = tidyText(stripQuoted(b.fresh))
	if strings.TrimSpace(msg.Text) == "" {
		msg.Text = msg.FullText
	}
}

// bodyOf picks the body text of an entity: in multipart/alternative the
// text/plain version (the sender's own plain rendering, with ">" quotes we
// know how to strip), else the HTML one; in every other multipart the
// bodies of all children in order (Apple Mail splits text around inline
// images).
func bodyOf(n *node) body {
	switch {
	case n.isBody && n.isHTML:
		return body{full: htmlToText(n.text, false), fresh: htmlToText(n.text, true), isHTML: true, ok: true}
	case n.isBody:
		return body{full: n.text, fresh: n.text, ok: true}
	case n.mediaType == "multipart/alternative":
		return alternativeBody(n.children)
	}
	var out body
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
		empty := strings.TrimSpace(b.full) == ""
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
// blank lines and guarantees valid UTF-8.
func tidyText(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	lines := strings.Split(s, "\n")
	out := make([]string, 0, len(lines))
	blank := 0
	for _, l := range lines {
		if l != "-- " { // keep the signature delimiter recognisable
			l = strings.TrimRight(l, " \t\u00a0")
		}
		if l == "" {
			blank++
			if blank > 1 {
				continue
			}
		} else {
			blank = 0
		}
		out = append(out, l)
	}
	return strings.Trim(strings.Join(out, "\n"), "\n")
}
