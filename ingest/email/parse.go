package email

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"
	"unicode/utf8"

	message "github.com/emersion/go-message"
	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/textproto"
	htmlcharset "golang.org/x/net/html/charset"
	"golang.org/x/text/encoding/charmap"

	"github.com/ticketd/ticketd/store"
)

// ParseOptions limits what Parse keeps. The zero value means defaults.
type ParseOptions struct {
	MaxAttachmentBytes int64 // per part; 0 means 10 MiB. Larger parts are listed with Size and TooLarge but Data nil, plus a Warning.
	// DataLater measures attachments instead of keeping them (Data nil):
	// Message.EachAttachment decodes them again, as streams, when they are
	// stored, so no decoded attachment is ever held whole in memory.
	DataLater bool
	// MaxTextBytes is how much of the body's text is kept in memory
	// (Message.Text, Message.FullText); 0 means DefaultMaxTextBytes. A
	// description never holds more than a few times its character limit
	// in bytes, and a longer text is written whole by
	// Message.WriteFullText, decoded again from the raw message.
	MaxTextBytes int
}

// DefaultMaxTextBytes is the text kept when ParseOptions.MaxTextBytes is
// zero: the bytes of the longest description of the default limit (20,000
// characters of up to four bytes), four times the bytes of one in ASCII.
const DefaultMaxTextBytes = 4 * store.DefaultMaxDescription

// DefaultMaxAttachmentBytes is the per-part limit when
// ParseOptions.MaxAttachmentBytes is zero.
const DefaultMaxAttachmentBytes = 10 << 20

// ErrNotMail is wrapped by every error Parse returns: the input has no
// usable header or no sender, so nothing sensible can be made of it. The
// caller should quarantine such input rather than retry it.
var ErrNotMail = errors.New("not a mail")

// Limits on the MIME tree: deeper or wider input is hostile or broken, and
// stopping early keeps Parse bounded in time and memory.
const (
	maxMIMEDepth = 16
	maxMIMEParts = 500
)

func (o ParseOptions) maxAttachment() int64 {
	if o.MaxAttachmentBytes <= 0 {
		return DefaultMaxAttachmentBytes
	}
	return o.MaxAttachmentBytes
}

func (o ParseOptions) maxText() int {
	if o.MaxTextBytes <= 0 {
		return DefaultMaxTextBytes
	}
	return o.MaxTextBytes
}

// Parse decodes a raw RFC 5322 message. It recovers from broken MIME,
// unknown charsets and oversized parts with Warnings, and returns an error
// (wrapping ErrNotMail) only when there is no header or no usable From.
// Parse never panics and its running time is linear in len(raw).
func Parse(raw []byte, o ParseOptions) (*Message, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, fmt.Errorf("parse mail: empty input: %w", ErrNotMail)
	}
	p := &mimeParser{opts: o, textLeft: o.maxText()}
	hdr, body := p.splitHeader(raw)
	if hdr.Len() == 0 {
		return nil, fmt.Errorf("parse mail: no header fields: %w", ErrNotMail)
	}
	msg := &Message{Size: len(raw), raw: raw, opts: o}
	p.charsetHint = topCharset(hdr)
	if err := p.readHeaders(hdr, msg); err != nil {
		return nil, err
	}
	root := p.readEntity(hdr, bytes.NewReader(body), 0)
	p.renderCut(root, raw)
	p.fillBody(msg, root, body)
	msg.Attachments = collectParts(root, nil)
	msg.Auto = autoReason(hdr, msg)
	msg.Warnings = p.warnings
	return msg, nil
}

// mimeParser carries the state of one Parse call: options and the
// warnings collected on the way.
type mimeParser struct {
	opts        ParseOptions
	warnings    []string
	parts       int
	charsetHint string // top-level charset, a guess for raw 8-bit headers

	// attachments counts the parts read that Message.Attachments lists,
	// so that a second pass numbers them the same way.
	attachments int
	// emit, when set, makes this the second pass of EachAttachment: each
	// listed part is handed to it as a stream, bodies are skipped.
	emit func(i int, r io.Reader) error
	// bodies counts the body parts read, so that a second pass numbers
	// them the same way; emitBody, when set, makes this the second pass of
	// WriteFullText: each body is handed to it as a stream, parts are
	// skipped.
	bodies   int
	emitBody func(i int, r io.Reader) error
	emitErr  error
	// textLeft is how many more bytes of body text are kept in memory.
	textLeft int
}

// secondPass reports a pass of EachAttachment or WriteFullText, which
// hands parts on as streams and keeps nothing.
func (p *mimeParser) secondPass() bool { return p.emit != nil || p.emitBody != nil }

// EachAttachment hands fn every attachment of m as a stream of its decoded
// bytes, with its index in m.Attachments, in that order, skipping those
// over the size limit. For a message parsed with DataLater the raw message
// is decoded again, part by part; otherwise Data is read. It stops at fn's
// first error and returns it.
func (m *Message) EachAttachment(fn func(i int, r io.Reader) error) error {
	if !m.opts.DataLater {
		for i, a := range m.Attachments {
			if a.Data == nil {
				continue
			}
			if err := fn(i, bytes.NewReader(a.Data)); err != nil {
				return err
			}
		}
		return nil
	}
	p := &mimeParser{opts: m.opts}
	p.emit = func(i int, r io.Reader) error {
		if i >= len(m.Attachments) || m.Attachments[i].TooLarge {
			return nil
		}
		return fn(i, r)
	}
	hdr, body := p.splitHeader(m.raw)
	p.charsetHint = topCharset(hdr)
	p.readEntity(hdr, bytes.NewReader(body), 0)
	return p.emitErr
}

// warnf records a recovered problem once.
func (p *mimeParser) warnf(format string, args ...any) {
	w := strings.ToValidUTF8(fmt.Sprintf(format, args...), "\uFFFD")
	for _, old := range p.warnings {
		if old == w {
			return
		}
	}
	p.warnings = append(p.warnings, w)
}

// node is one MIME entity after reading: either a multipart with children
// or a leaf that is a body candidate (text) or an attachment (part).
type node struct {
	mediaType string
	children  []*node
	isBody    bool
	isHTML    bool
	text      string // of a body: decoded; of a cut one, the start of its text (renderCut)
	// cut says the body was longer than the text kept. Its text is then
	// rendered as a stream (renderCut): text (and fresh, for HTML) hold
	// the start of it, blank says whether all of it is white space.
	cut   bool
	fresh string
	blank bool
	leaf  bodyLeaf
	part  *Part
}

// bodyLeaf is what WriteFullText needs to decode a body again: its index
// among the message's bodies (-1: the raw body of a broken multipart), how
// it is decoded, and whether it is HTML.
type bodyLeaf struct {
	index  int
	dec    textDecoding
	isHTML bool
}

// splitHeader separates the header block from the body. It is more
// tolerant than textproto.ReadHeader: lines that are not "Key: value" are
// dropped (a leading mbox "From " line, 8-bit junk) and a header that is
// not ended by an empty line ends at the first line that is not a field.
// It keeps at most maxFieldBytes of a field and maxHeaderBytes in all (see
// fieldKeeper), so the header costs a constant however long it is.
func (p *mimeParser) splitHeader(raw []byte) (textproto.Header, []byte) {
	var k fieldKeeper
	rest := raw
	fields, lastKept := 0, false
	for len(rest) > 0 {
		line, next := cutLine(rest)
		trimmed := bytes.TrimRight(line, "\r\n")
		switch {
		case len(bytes.TrimSpace(trimmed)) == 0 && len(trimmed) == 0:
			return p.readHeaderBlock(k.block(p)), next
		case trimmed[0] == ' ' || trimmed[0] == '\t':
			if lastKept {
				k.continued(trimmed)
			}
		case isHeaderField(trimmed):
			k.field(trimmed)
			fields++
			lastKept = true
		case fields == 0:
			lastKept = false // junk before the first field, e.g. mbox "From "
		default:
			p.warnf("header not ended by an empty line")
			return p.readHeaderBlock(k.block(p)), rest
		}
		rest = next
	}
	return p.readHeaderBlock(k.block(p)), nil
}

// maxHeaderBytes is how much of a header block is kept, like Postfix's
// header_size_limit (100 KiB by default): fields past it are dropped.
const maxHeaderBytes = 1 << 20

// fieldKeeper collects header lines, each field cut to maxFieldBytes: the
// head of most fields, the tail of In-Reply-To and References, whose newest
// ids come last.
type fieldKeeper struct {
	kept       bytes.Buffer
	start      int  // where the current field begins in kept
	tail       bool // the current field keeps its tail
	full, over bool // the block is full; a field or the block was cut
}

func (k *fieldKeeper) field(line []byte) {
	k.start = k.kept.Len()
	name, _, _ := bytes.Cut(line, []byte(":"))
	name = bytes.TrimSpace(name)
	k.tail = bytes.EqualFold(name, []byte("References")) || bytes.EqualFold(name, []byte("In-Reply-To"))
	if k.kept.Len()+len(name)+2 > maxHeaderBytes {
		k.full, k.over = true, true
	}
	if k.full {
		return
	}
	if len(line) > maxFieldBytes {
		k.over = true
		if k.tail { // "Name:" and the line's tail, from a space on
			t := line[len(line)-maxFieldBytes/2:]
			if i := bytes.IndexAny(t, " \t"); i >= 0 {
				t = t[i:]
			}
			line = append(append(append([]byte(nil), name...), ':'), t...)
		} else {
			line = line[:maxFieldBytes]
		}
	}
	k.write(line)
}

func (k *fieldKeeper) continued(line []byte) {
	if k.full {
		return
	}
	if n := k.kept.Len() - k.start + len(line); n > maxFieldBytes || k.kept.Len()+len(line) > maxHeaderBytes {
		k.over = true
		if !k.tail || len(line) > maxFieldBytes/2 {
			return // the head is kept; a tail line this long is junk
		}
		// Drop the field's older lines, keeping its first: the newest ids
		// are last.
		first, _, _ := bytes.Cut(k.kept.Bytes()[k.start:], []byte("\r\n"))
		if len(first) > maxFieldBytes/2 {
			first = first[:bytes.IndexByte(first, ':')+1]
		}
		first = append([]byte(nil), first...)
		k.kept.Truncate(k.start)
		k.write(first)
	}
	k.write(line)
}

func (k *fieldKeeper) write(line []byte) {
	k.kept.Write(line)
	k.kept.WriteString("\r\n")
}

func (k *fieldKeeper) block(p *mimeParser) []byte {
	if k.over {
		p.warnf("header fields over %d bytes, or a header over %d bytes, were cut", maxFieldBytes, maxHeaderBytes)
	}
	return k.kept.Bytes()
}

// cutLine returns the first line of b including its newline, and the rest.
func cutLine(b []byte) (line, rest []byte) {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[:i+1], b[i+1:]
	}
	return b, nil
}

// isHeaderField reports whether line looks like "Key: value" with a
// printable ASCII key (spaces before the colon are tolerated).
func isHeaderField(line []byte) bool {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return false
	}
	key := bytes.TrimRight(line[:i], " \t")
	if len(key) == 0 {
		return false
	}
	for _, c := range key {
		if c < 33 || c > 126 {
			return false
		}
	}
	return true
}

// readHeaderBlock hands the cleaned header lines to go-message.
func (p *mimeParser) readHeaderBlock(block []byte) textproto.Header {
	if len(block) == 0 {
		return textproto.Header{}
	}
	buf := make([]byte, 0, len(block)+2)
	buf = append(append(buf, block...), '\r', '\n')
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(buf)))
	if err != nil {
		p.warnf("reading header: %v", err)
	}
	return h
}

// topCharset is the charset of a single-part message, used to guess the
// encoding of raw 8-bit header values.
func topCharset(h textproto.Header) string {
	_, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		return ""
	}
	return params["charset"]
}

// readEntity reads one MIME entity (header already parsed) from body.
func (p *mimeParser) readEntity(h textproto.Header, body io.Reader, depth int) *node {
	mediaType, params := p.contentType(h)
	if strings.HasPrefix(mediaType, "multipart/") {
		if depth >= maxMIMEDepth {
			p.warnf("MIME nesting deeper than %d ignored", maxMIMEDepth)
			return &node{mediaType: mediaType}
		}
		boundary := params["boundary"]
		if boundary == "" {
			var guessed io.Reader
			boundary, guessed = guessBoundary(body)
			body = guessed
			p.warnf("multipart without boundary parameter")
		}
		if boundary != "" {
			return p.readMultipart(mediaType, boundary, body, depth)
		}
		mediaType, params = "text/plain", map[string]string{}
	}
	return p.readLeaf(h, mediaType, params, body)
}

// guessBoundary finds the boundary of a multipart whose Content-Type lost
// its boundary parameter: the first line that starts with "--".
func guessBoundary(body io.Reader) (string, io.Reader) {
	data, _ := io.ReadAll(body)
	rest := data
	for len(rest) > 0 {
		line, next := cutLine(rest)
		line = bytes.TrimRight(line, " \t\r\n")
		if len(line) > 2 && len(line) <= 72 && bytes.HasPrefix(line, []byte("--")) {
			return string(line[2:]), bytes.NewReader(data)
		}
		rest = next
	}
	return "", bytes.NewReader(data)
}

// readMultipart reads the children of a multipart entity. A broken or
// truncated multipart keeps the parts read so far.
func (p *mimeParser) readMultipart(mediaType, boundary string, body io.Reader, depth int) *node {
	n := &node{mediaType: mediaType}
	mr := textproto.NewMultipartReader(body, boundary)
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			p.warnf("broken %s: %v", mediaType, err)
			return n
		}
		p.parts++
		if p.parts > maxMIMEParts {
			p.warnf("more than %d MIME parts; the rest ignored", maxMIMEParts)
			return n
		}
		n.children = append(n.children, p.readEntity(part.Header, part, depth+1))
	}
}

// contentType parses Content-Type leniently; a missing or unparsable one
// means text/plain as RFC 2045 says.
func (p *mimeParser) contentType(h textproto.Header) (string, map[string]string) {
	v := h.Get("Content-Type")
	if strings.TrimSpace(v) == "" {
		return "text/plain", map[string]string{}
	}
	mt, params, err := mime.ParseMediaType(v)
	if err != nil {
		mt, params = lenientMediaType(v)
		if mt == "" || !strings.Contains(mt, "/") {
			p.warnf("unparsable Content-Type %q", v)
			return "text/plain", params
		}
	}
	return strings.ToLower(mt), params
}

// lenientMediaType splits "type/sub; a=b; c="d"" by hand for values that
// mime.ParseMediaType rejects (duplicate or unquoted parameters).
func lenientMediaType(v string) (string, map[string]string) {
	params := map[string]string{}
	fields := strings.Split(v, ";")
	mt := strings.ToLower(strings.TrimSpace(fields[0]))
	for _, f := range fields[1:] {
		k, val, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		k = strings.TrimSuffix(k, "*")
		val = strings.Trim(strings.TrimSpace(val), `"`)
		if _, dup := params[k]; !dup && k != "" {
			params[k] = val
		}
	}
	return mt, params
}

// readLeaf reads a non-multipart entity as body text or as an attachment.
func (p *mimeParser) readLeaf(h textproto.Header, mediaType string, params map[string]string, body io.Reader) *node {
	disp, dparams := p.disposition(h)
	filename := p.filename(params, dparams)
	decoded := p.transferDecode(h.Get("Content-Transfer-Encoding"), body)
	if isBodyType(mediaType) && disp != "attachment" && filename == "" {
		index := p.bodies
		p.bodies++
		if p.secondPass() {
			if p.emitBody != nil && p.emitErr == nil {
				p.emitErr = p.emitBody(index, decoded)
			}
			return &node{mediaType: mediaType}
		}
		// A long body is read here only to decide its decoding: its
		// text is rendered as a stream, keeping the start (renderCut).
		data, valid, cut, err := readText(decoded, max(p.textLeft, sniffBytes))
		if err != nil {
			p.warnf("decoding %s body: %v", mediaType, err)
		}
		isHTML := mediaType == "text/html"
		n := &node{mediaType: mediaType, isBody: true, isHTML: isHTML, cut: cut}
		n.leaf = bodyLeaf{index: index, dec: p.textDecodingFor(data, params["charset"], isHTML, valid), isHTML: isHTML}
		if !cut {
			p.textLeft -= len(data)
			n.text = p.decodeText(data, n.leaf.dec)
		}
		return n
	}
	part := &Part{
		Filename:    filename,
		ContentType: mediaType,
		ContentID:   strings.Trim(strings.TrimSpace(h.Get("Content-Id")), "<>"),
	}
	part.Inline = disp == "inline" || (disp == "" && part.ContentID != "")
	if isSignaturePart(mediaType) {
		p.readPartData(part, decoded, -1)
	} else {
		p.readPartData(part, decoded, p.attachments)
		p.attachments++
	}
	return &node{mediaType: mediaType, part: part}
}

func isBodyType(mediaType string) bool {
	return mediaType == "text/plain" || mediaType == "text/html"
}

// disposition parses Content-Disposition leniently.
func (p *mimeParser) disposition(h textproto.Header) (string, map[string]string) {
	v := h.Get("Content-Disposition")
	if strings.TrimSpace(v) == "" {
		return "", map[string]string{}
	}
	d, params, err := mime.ParseMediaType(v)
	if err != nil {
		d, params = lenientMediaType(v)
	}
	return strings.ToLower(d), params
}

// filename takes the Content-Disposition filename (RFC 2231 already decoded
// by mime.ParseMediaType), else the Content-Type name, decodes RFC 2047 and
// makes it safe to show and to write (store.SafeFilename): the last path
// element only, so nobody writes "../../x" to disk, without control
// characters, NUL or terminal escapes.
func (p *mimeParser) filename(ctParams, dParams map[string]string) string {
	name := dParams["filename"]
	if name == "" {
		name = ctParams["name"]
	}
	return store.SafeFilename(p.decodeWords(name))
}

// transferDecode undoes Content-Transfer-Encoding through go-message. Only
// the encoding header is passed, so go-message applies no charset: bodies
// are decoded by decodeText and attachments keep their bytes.
func (p *mimeParser) transferDecode(cte string, body io.Reader) io.Reader {
	cte = strings.ToLower(strings.TrimSpace(cte))
	if cte == "base64" {
		body = &base64Filter{r: body}
	}
	var h textproto.Header
	if cte != "" {
		h.Set("Content-Transfer-Encoding", cte)
	}
	e, err := message.New(message.Header{Header: h}, body)
	if err != nil {
		p.warnf("unknown Content-Transfer-Encoding %q, read as is", cte)
	}
	return e.Body
}

// readPartData reads an attachment, keeping at most the configured limit
// in memory and counting the rest; with DataLater it only counts, and in
// EachAttachment's pass it hands listed parts (index >= 0) to emit.
func (p *mimeParser) readPartData(part *Part, r io.Reader, index int) {
	limit := p.opts.maxAttachment()
	switch {
	case p.emitBody != nil:
		return // the text pass skips attachments
	case p.emit != nil:
		if index >= 0 && p.emitErr == nil {
			// A decoding error ends the part where the first pass ended
			// it (with a Warning), so the bytes match the measured Size.
			p.emitErr = p.emit(index, endAtError{r})
		}
		return
	case p.opts.DataLater:
		n, err := io.Copy(io.Discard, r)
		part.Size = n
		if err != nil {
			p.warnf("decoding attachment %q: %v", part.Filename, err)
		}
		if n > limit {
			part.TooLarge = true
			p.warnf("attachment %q (%d bytes) over the %d byte limit, left out", part.Filename, part.Size, limit)
		}
		return
	}
	data, err := readAtMost(r, limit)
	part.Size = int64(len(data))
	if err != nil {
		p.warnf("decoding attachment %q: %v", part.Filename, err)
	}
	if part.Size <= limit {
		part.Data = data
		return
	}
	rest, err := io.Copy(io.Discard, r)
	if err != nil {
		p.warnf("decoding attachment %q: %v", part.Filename, err)
	}
	part.Size += rest
	part.TooLarge = true
	p.warnf("attachment %q (%d bytes) over the %d byte limit, left out", part.Filename, part.Size, limit)
}

// endAtError reads r, turning its first error into the end of input.
type endAtError struct{ r io.Reader }

func (e endAtError) Read(b []byte) (int, error) {
	n, err := e.r.Read(b)
	if err != nil {
		err = io.EOF
	}
	return n, err
}

// readAtMost reads up to limit+1 bytes (the extra byte tells "over the
// limit"), growing its buffer by doubling but never past limit+1, so a huge
// part costs at most limit+1 bytes of final buffer.
func readAtMost(r io.Reader, limit int64) ([]byte, error) {
	max := limit + 1
	buf := make([]byte, 0, min(max, 32<<10))
	for int64(len(buf)) < max {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(max, int64(2*cap(buf))))
			copy(grown, buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// textDecodingFor decides how a body becomes valid UTF-8. A declared
// charset is used when known; an unknown one, or none with invalid UTF-8,
// falls back to windows-1252 for undeclared text (the usual culprit), or
// UTF-8 with replacement characters for an unknown label, with a Warning.
// head is the start of the body (HTML is sniffed from its first 1024
// bytes) and valid says whether the whole body is valid UTF-8.
func (p *mimeParser) textDecodingFor(head []byte, label string, isHTML, valid bool) textDecoding {
	label = normalizeCharset(label)
	if label == "" && isHTML && !valid {
		_, name, _ := htmlcharset.DetermineEncoding(head, "text/html")
		label = name
	}
	if label == "" || label == "utf-8" || label == "us-ascii" {
		if valid {
			return textDecoding{how: decodeAsIs}
		}
		if label == "" {
			p.warnf("undeclared 8-bit text decoded as windows-1252")
			return textDecoding{how: decodeWindows1252}
		}
		p.warnf("invalid %s text, bad bytes replaced", label)
		return textDecoding{how: decodeReplace}
	}
	if _, err := charset.Reader(label, bytes.NewReader(nil)); err != nil {
		p.warnf("unknown charset %q decoded as UTF-8 with replacement", label)
		return textDecoding{how: decodeReplace}
	}
	return textDecoding{how: decodeCharset, label: label}
}

// decodeText turns (the start of) a body's bytes into valid UTF-8 as d
// says; textDecoding.reader does the same to a stream.
func (p *mimeParser) decodeText(data []byte, d textDecoding) string {
	switch d.how {
	case decodeAsIs:
		return string(data)
	case decodeWindows1252:
		out, _ := charmap.Windows1252.NewDecoder().Bytes(data)
		return string(out)
	case decodeReplace:
		return strings.ToValidUTF8(string(data), replacementChar)
	}
	r, err := charset.Reader(d.label, bytes.NewReader(data))
	if err != nil { // decided with a known label: not reached
		return strings.ToValidUTF8(string(data), replacementChar)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		p.warnf("decoding %s text: %v", d.label, err)
	}
	return strings.ToValidUTF8(string(out), replacementChar)
}

// WriteFullText writes FullText to w, all of it: when Parse kept only its
// start (FullTextSize is larger), the bodies are decoded again from the
// raw message, one by one, as streams, so the whole text is never held in
// memory. It returns w's first error.
func (m *Message) WriteFullText(w io.Writer) error {
	if m.cutText == nil {
		_, err := io.WriteString(w, m.FullText)
		return err
	}
	t := newTidier(w)
	chosen := map[int]bodyLeaf{}
	for _, l := range m.cutText {
		chosen[l.index] = l
	}
	written := 0
	err := eachBody(m.raw, m.opts, func(i int, r io.Reader) error {
		l, ok := chosen[i]
		if !ok {
			return nil
		}
		if written > 0 {
			_, _ = t.WriteString("\n\n") // an error is returned by the next write
		}
		written++
		return l.render(r, t)
	})
	if err != nil {
		return err
	}
	return t.Close()
}

// render writes the text of the body read from r to w: decoded, and
// turned into text when it is HTML.
func (l bodyLeaf) render(r io.Reader, w io.Writer) error {
	text := l.dec.reader(r)
	if l.isHTML {
		return renderHTML(text, htmlOut{w: w})
	}
	_, err := io.Copy(w, text)
	return err
}

// eachBody decodes raw again, as Parse did with o, and hands fn each
// body as a stream with its index, skipping attachments; index -1 is the
// raw body of a multipart, for a broken one whose text it is. It stops at
// fn's first error and returns it.
func eachBody(raw []byte, o ParseOptions, fn func(i int, r io.Reader) error) error {
	p := &mimeParser{opts: o, emitBody: fn}
	hdr, body := p.splitHeader(raw)
	if err := fn(-1, bytes.NewReader(body)); err != nil {
		return err
	}
	p.charsetHint = topCharset(hdr)
	p.readEntity(hdr, bytes.NewReader(body), 0)
	return p.emitErr
}

// renderCut renders the text of each body too long to keep, as a stream
// decoded again from raw, keeping its start: as much as the text kept
// leaves room for, at least sniffBytes. It also finds out whether all of
// it is blank: multipart/alternative picks its version by that, and must
// pick the one it would pick with the whole text.
func (p *mimeParser) renderCut(root *node, raw []byte) {
	cut := map[int]*node{}
	var walk func(n *node)
	walk = func(n *node) {
		if n.isBody && n.cut {
			cut[n.leaf.index] = n
		}
		for _, c := range n.children {
			walk(c)
		}
	}
	walk(root)
	if len(cut) == 0 {
		return
	}
	_ = eachBody(raw, p.opts, func(i int, r io.Reader) error {
		n, ok := cut[i]
		if !ok {
			return nil
		}
		full := &keepStart{max: max(p.textLeft, sniffBytes), blankToo: true}
		text := n.leaf.dec.reader(r)
		if n.isHTML {
			fresh := &keepStart{max: full.max}
			_ = renderHTML(text, htmlOut{w: full}, htmlOut{w: fresh, dropQuotes: true}) // errEnough ends it
			n.fresh = string(runeBoundary(fresh.b))
		} else {
			_, _ = io.Copy(full, text) // errEnough ends it
		}
		n.text = string(runeBoundary(full.b))
		n.blank = !full.blank.notBlank
		p.textLeft -= len(full.b)
		return nil
	})
}

// normalizeCharset maps labels seen in the wild that the IANA and WHATWG
// tables miss onto names they know.
func normalizeCharset(label string) string {
	l := strings.ToLower(strings.Trim(strings.TrimSpace(label), `"'`))
	switch {
	case l == "utf8" || l == "utf-8-sig" || l == "x-utf8":
		return "utf-8"
	case l == "ascii" || l == "us_ascii" || l == "ansi_x3.4-1968":
		return "us-ascii"
	case strings.HasPrefix(l, "cp") && len(l) == 6 && strings.HasPrefix(l[2:], "12"):
		return "windows-" + l[2:] // cp1252 -> windows-1252
	case l == "latin1" || l == "latin-1":
		return "iso-8859-1"
	}
	return l
}

// charsetReader is the mime.WordDecoder hook: known charsets are decoded,
// an unknown one passes the bytes through (made valid UTF-8 later) with a
// Warning instead of failing the whole header.
func (p *mimeParser) charsetReader(label string, r io.Reader) (io.Reader, error) {
	label = normalizeCharset(label)
	if label == "utf-8" || label == "us-ascii" {
		return r, nil
	}
	cr, err := charset.Reader(label, r)
	if err != nil {
		p.warnf("unknown charset %q in header decoded as UTF-8 with replacement", label)
		return r, nil
	}
	return cr, nil
}

// decodeWords decodes RFC 2047 encoded-words and raw 8-bit bytes into
// valid UTF-8.
func (p *mimeParser) decodeWords(s string) string {
	s = p.rawHeaderToUTF8(s)
	wd := mime.WordDecoder{CharsetReader: p.charsetReader}
	dec, err := wd.DecodeHeader(s)
	if err != nil {
		return strings.ToValidUTF8(s, "\uFFFD")
	}
	return strings.ToValidUTF8(dec, "\uFFFD")
}

// rawHeaderToUTF8 handles 8-bit header bytes that are not UTF-8: they are
// decoded with the message's charset when it has one, else windows-1252.
func (p *mimeParser) rawHeaderToUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	label := normalizeCharset(p.charsetHint)
	if label != "" && label != "utf-8" && label != "us-ascii" {
		if r, err := charset.Reader(label, strings.NewReader(s)); err == nil {
			if out, err := io.ReadAll(r); err == nil {
				return string(out)
			}
		}
	}
	p.warnf("8-bit header decoded as windows-1252")
	out, _ := charmap.Windows1252.NewDecoder().String(s)
	return out
}

// base64Filter drops bytes that cannot be part of base64 (junk, stray
// punctuation) so one bad byte does not lose the rest of a body.
type base64Filter struct{ r io.Reader }

func (f *base64Filter) Read(b []byte) (int, error) {
	for {
		n, err := f.r.Read(b)
		j := 0
		for _, c := range b[:n] {
			if isBase64Byte(c) {
				b[j] = c
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}

func isBase64Byte(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
		c == '+' || c == '/' || c == '=' || c == '\r' || c == '\n'
}
