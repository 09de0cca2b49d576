package email

import (
	"fmt"
	"mime"
	"net/mail"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-message/textproto"
)

// readHeaders fills the header fields of msg. Only a missing or
// unparsable From is an error: without a sender there is nobody to answer.
func (p *mimeParser) readHeaders(h textproto.Header, msg *Message) error {
	from, err := p.fromAddress(headerHead(h.Get("From")))
	if err != nil {
		return err
	}
	msg.From = from
	msg.MessageID = firstMsgID(headerHead(h.Get("Message-Id")))
	msg.InReplyTo = msgIDList(h.Values("In-Reply-To"))
	msg.References = msgIDList(h.Values("References"))
	msg.To = p.addressList(headerHeads(h.Values("To")))
	msg.Cc = p.addressList(headerHeads(h.Values("Cc")))
	msg.ReturnPath, msg.NullReturnPath = returnPath(h.Values("Return-Path"))
	msg.DeliveredTo = p.deliveredTo(h)
	msg.Subject = cleanHeaderText(p.decodeWords(headerHead(h.Get("Subject"))))
	msg.Date = p.parseDate(headerHead(h.Get("Date")))
	return nil
}

// maxFieldBytes is how much of a header field (of all its occurrences, for
// To and Cc) is decoded: far more than any sender, recipient list or subject
// the store keeps, so that decoding, which makes copies (net/mail holds a
// quoted name as runes, four bytes a character), costs a constant, not a
// multiple of a megabyte-long field. In-Reply-To and References are read
// from their tail instead (msgIDList).
const maxFieldBytes = 64 << 10

// headerHead is the first maxFieldBytes of a field's value, cut at a space
// when there is one in its last quarter, so no word is taken in part.
func headerHead(v string) string {
	if len(v) <= maxFieldBytes {
		return v
	}
	v = v[:maxFieldBytes]
	if i := strings.LastIndexAny(v, " \t\r\n,"); i >= maxFieldBytes*3/4 {
		v = v[:i]
	}
	return v
}

// headerHeads keeps the first maxFieldBytes of all values together.
func headerHeads(values []string) []string {
	var out []string
	for size := 0; len(values) > 0 && size < maxFieldBytes; values = values[1:] {
		v := values[0]
		if room := maxFieldBytes - size; len(v) > room {
			v = headerHead(v)[:min(len(v), room)]
		}
		out = append(out, v)
		size += len(v)
	}
	return out
}

// cleanHeaderText turns control characters (left by broken folding or
// decoded words) into spaces and trims.
func cleanHeaderText(s string) string {
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s))
}

func (p *mimeParser) addressParser() *mail.AddressParser {
	return &mail.AddressParser{WordDecoder: &mime.WordDecoder{CharsetReader: p.charsetReader}}
}

// fromAddress parses From strictly first, then leniently: broken display
// names are common, a missing address is not recoverable.
func (p *mimeParser) fromAddress(v string) (mail.Address, error) {
	v = p.rawHeaderToUTF8(v)
	if strings.TrimSpace(v) == "" {
		return mail.Address{}, fmt.Errorf("parse mail: no From header: %w", ErrNotMail)
	}
	if list, err := p.addressParser().ParseList(v); err == nil && len(list) > 0 {
		return cleanAddress(*list[0]), nil
	}
	loc := addrSpec.FindStringIndex(v)
	if loc == nil {
		return mail.Address{}, fmt.Errorf("parse mail: no address in From %.200q: %w", v, ErrNotMail)
	}
	p.warnf("malformed From header parsed leniently")
	// From holds one person: everything before the address is the name,
	// unquoted commas included ("Müller, Hans <hans@example.de>").
	return mail.Address{Name: p.displayName(v[:loc[0]]), Address: v[loc[0]:loc[1]]}, nil
}

// displayName cleans the text before an address: the "<", quotes, and
// encoded-words.
func (p *mimeParser) displayName(s string) string {
	if i := strings.LastIndex(s, "<"); i >= 0 {
		s = s[:i]
	}
	s = strings.Trim(strings.TrimSpace(s), `"' `)
	return cleanHeaderText(p.decodeWords(s))
}

func cleanAddress(a mail.Address) mail.Address {
	return mail.Address{Name: cleanHeaderText(a.Name), Address: strings.TrimSpace(a.Address)}
}

// addrSpec finds something that looks like local@domain in broken headers.
var addrSpec = regexp.MustCompile(`[^\s<>"(),;:\[\]]+@[^\s<>"(),;:\[\]]+`)

// lenientAddresses extracts addresses from a header net/mail rejects: each
// comma-separated element with an "@" becomes an address; the text before
// "<" becomes the display name.
func (p *mimeParser) lenientAddresses(v string) []mail.Address {
	var out []mail.Address
	for _, elem := range splitAddressList(v) {
		loc := addrSpec.FindStringIndex(elem)
		if loc == nil {
			continue
		}
		out = append(out, mail.Address{Name: p.displayName(elem[:loc[0]]), Address: elem[loc[0]:loc[1]]})
	}
	return out
}

// splitAddressList splits on commas outside quotes and angle brackets.
func splitAddressList(v string) []string {
	var out []string
	start, quoted, angle := 0, false, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '"':
			quoted = !quoted
		case c == '<' && !quoted:
			angle++
		case c == '>' && !quoted && angle > 0:
			angle--
		case (c == ',' || c == ';') && !quoted && angle == 0:
			out = append(out, v[start:i])
			start = i + 1
		}
	}
	return append(out, v[start:])
}

// addressList parses To or Cc (all occurrences), leniently if needed.
func (p *mimeParser) addressList(values []string) []mail.Address {
	var out []mail.Address
	for _, v := range values {
		v = p.rawHeaderToUTF8(v)
		if strings.TrimSpace(v) == "" {
			continue
		}
		list, err := p.addressParser().ParseList(v)
		if err != nil {
			p.warnf("malformed address list parsed leniently")
			out = append(out, p.lenientAddresses(v)...)
			continue
		}
		for _, a := range list {
			out = append(out, cleanAddress(*a))
		}
	}
	return out
}

// maxMsgIDs is how many Message-IDs msgIDList keeps of one header: the
// newest. Threading needs the parent, which is last; the rest only costs.
const maxMsgIDs = 20

// msgIDTailBytes is how much of the end of In-Reply-To or References is
// read: room for maxMsgIDs ids of a full 998-byte line each, so a header of
// a megabyte costs no more than a short one.
const msgIDTailBytes = maxMsgIDs * 1000

// msgIDList extracts Message-IDs from In-Reply-To or References (all
// occurrences, in order): every "<...>" and every bare word with an "@"
// (brackets added), skipping comments and other garbage, without
// duplicates, oldest first. Only the last maxMsgIDs are kept, found in the
// last msgIDTailBytes of the header.
func msgIDList(values []string) []string {
	ids := scanMsgIDs(headerTail(values, msgIDTailBytes))
	var out []string
	seen := map[string]bool{}
	for i := len(ids) - 1; i >= 0 && len(out) < maxMsgIDs; i-- {
		if !seen[ids[i]] {
			seen[ids[i]] = true
			out = append(out, ids[i])
		}
	}
	slices.Reverse(out)
	return out
}

// headerTail returns about the last n bytes of values joined by spaces,
// starting at a separator so that no id cut in two is read as a whole one.
// It copies at most n bytes, however long or many the values are.
func headerTail(values []string, n int) string {
	var parts []string
	for i, size := len(values)-1, 0; i >= 0 && size < n; i-- {
		v := values[i]
		if room := n - size; len(v) > room {
			v = v[len(v)-room:]
			if j := strings.IndexAny(v, " \t\r\n,<"); j >= 0 {
				parts = append(parts, v[j:])
			}
			break
		}
		parts = append(parts, v)
		size += len(v) + 1
	}
	slices.Reverse(parts)
	return strings.Join(parts, " ")
}

// maxMsgIDBytes is the longest Message-ID taken (without its brackets):
// one that fits on an In-Reply-To line of at most 998 bytes (RFC 5322).
// Every id a ticket keeps is repeated in the In-Reply-To and References of
// the mail ticketd sends, so a longer one would make that mail carry it (a
// 1 MB Message-ID, reflected to whatever address the sender wrote). A mail
// whose own id is longer is keyed by the hash of its bytes, like one
// without a Message-ID.
const maxMsgIDBytes = 998 - len("In-Reply-To: <>")

func scanMsgIDs(v string) []string {
	var out []string
	for len(v) > 0 {
		v = strings.TrimLeft(v, " \t\r\n,")
		if v == "" {
			break
		}
		if v[0] == '<' {
			end := strings.IndexByte(v, '>')
			if end < 0 {
				end = len(v)
			}
			id := strings.Join(strings.Fields(v[1:end]), "")
			if id != "" && len(id) <= maxMsgIDBytes && !strings.ContainsAny(id, "<") {
				out = append(out, "<"+id+">")
			}
			v = v[min(end+1, len(v)):]
			continue
		}
		word := v
		if i := strings.IndexAny(v, " \t\r\n,<"); i >= 0 {
			word = v[:i]
		}
		if strings.Contains(word, "@") && len(word) <= maxMsgIDBytes && !strings.ContainsAny(word, `()">`) {
			out = append(out, "<"+word+">")
		}
		v = v[len(word):]
	}
	return out
}

// firstMsgID returns the Message-ID in "<...>" form, or "".
func firstMsgID(v string) string {
	if ids := scanMsgIDs(v); len(ids) > 0 {
		return ids[0]
	}
	// Some senders write a bare id without "@"; keep it, bracketed, so
	// threading still works.
	if f := strings.Fields(v); len(f) > 0 && len(f[0]) <= maxMsgIDBytes {
		return "<" + strings.Trim(f[0], "<>") + ">"
	}
	return ""
}

// returnPath reads the first (top-most, added by the final MTA)
// Return-Path. "<>" is the null sender of bounces.
func returnPath(values []string) (string, bool) {
	if len(values) == 0 {
		return "", false
	}
	v := strings.TrimSpace(values[0])
	if !strings.HasPrefix(v, "<") {
		return v, false
	}
	inner := v[1:]
	if i := strings.IndexByte(inner, '>'); i >= 0 {
		inner = inner[:i]
	}
	inner = strings.TrimSpace(inner)
	return inner, inner == ""
}

// deliveredTo collects the delivery addresses, first occurrence wins.
func (p *mimeParser) deliveredTo(h textproto.Header) []string {
	var out []string
	seen := map[string]bool{}
	for _, key := range []string{"Delivered-To", "X-Original-To", "Envelope-To"} {
		for _, v := range h.Values(key) {
			for _, elem := range splitAddressList(p.rawHeaderToUTF8(v)) {
				a := strings.Trim(strings.TrimSpace(elem), "<>")
				if m := addrSpec.FindString(a); m != "" {
					a = m
				}
				if a != "" && !seen[strings.ToLower(a)] {
					seen[strings.ToLower(a)] = true
					out = append(out, a)
				}
			}
		}
	}
	return out
}

// dateLayouts are tried after net/mail.ParseDate for dates seen in the
// wild: missing seconds, missing weekday comma, named zones, ISO 8601.
var dateLayouts = []string{
	"Mon, 2 Jan 2006 15:04 -0700",
	"Mon 2 Jan 2006 15:04:05 -0700",
	"2 Jan 2006 15:04 -0700",
	"Mon, 2 Jan 2006 15:04:05 MST",
	"Mon, 2 Jan 06 15:04:05 -0700",
	"Mon, 2 January 2006 15:04:05 -0700",
	"Mon Jan 2 15:04:05 2006",
	"Mon Jan 2 15:04:05 -0700 2006",
	time.RFC3339,
	"2006-01-02 15:04:05 -0700",
	"2006-01-02 15:04:05",
}

// parseDate is tolerant; an unparsable Date gives the zero time and a
// Warning (the caller then uses the time it received the mail).
func (p *mimeParser) parseDate(v string) time.Time {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}
	}
	if t, err := mail.ParseDate(v); err == nil {
		return t
	}
	clean := strings.Join(strings.Fields(stripComments(v)), " ")
	clean = strings.TrimSuffix(clean, ".")
	for _, layout := range dateLayouts {
		if t, err := time.Parse(layout, clean); err == nil {
			return t
		}
	}
	p.warnf("unparsable Date %q", v)
	return time.Time{}
}

// stripComments removes "(...)" comments, e.g. "(CET)" after a zone.
func stripComments(s string) string {
	var b strings.Builder
	depth := 0
	for _, r := range s {
		switch {
		case r == '(':
			depth++
		case r == ')' && depth > 0:
			depth--
		case depth == 0:
			b.WriteRune(r)
		}
	}
	return b.String()
}
