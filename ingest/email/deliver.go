package email

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/store"
)

// TicketWriter is what delivering mail needs from the store. *store.Store
// satisfies it.
type TicketWriter interface {
	// Limits are the store's text limits: mail is cut to them, never
	// refused for its length.
	Limits() store.Limits
	CreateTicket(ctx context.Context, in store.NewTicket) (*store.Ticket, bool, error)
	AddResponse(ctx context.Context, id bson.ObjectID, scope store.Scope, in store.NewResponse) (*store.Ticket, bool, error)
	Ticket(ctx context.Context, id bson.ObjectID, scope store.Scope) (*store.Ticket, error)
	TicketByRef(ctx context.Context, ref int64, scope store.Scope) (*store.Ticket, error)
	TicketIDByMessageID(ctx context.Context, messageID string) (bson.ObjectID, error)
	CustomerByEmail(ctx context.Context, email string) (*store.Customer, error)
	FindOrCreateCustomer(ctx context.Context, email, name, team string) (*store.Customer, bool, error)
	WriteAttachment(ctx context.Context, a store.Attachment, ticket bson.ObjectID, r io.Reader) error
	Quarantine(ctx context.Context, q store.QuarantinedMail) error
	RecordIgnored(ctx context.Context, m store.IgnoredMail) error
	// TakeRateSlot and ReturnRateSlot keep the per-sender limit on new
	// tickets in the store, so that every daemon of a deployment counts
	// against the same budget.
	TakeRateSlot(ctx context.Context, key string, limit int, window time.Duration) (store.RateSlot, bool, error)
	ReturnRateSlot(ctx context.Context, slot store.RateSlot) error
}

// ResultKind says what became of a message.
type ResultKind string

// The results of delivering a message.
const (
	KindTicket      ResultKind = "ticket"      // it opened a ticket
	KindResponse    ResultKind = "response"    // it was added to a ticket
	KindIgnored     ResultKind = "ignored"     // deliberately not stored (RecordIgnored)
	KindQuarantined ResultKind = "quarantined" // could not be stored (Quarantine)
)

// Result is what became of one message.
type Result struct {
	Kind ResultKind
	// Key is the idempotency key: the normalized Message-ID, or
	// "sha256:<hex>" of the raw bytes when there is none.
	Key      string
	TicketID bson.ObjectID // KindTicket and KindResponse
	// Duplicate is true when the message had been stored before (a re-read
	// after a crash or a UIDVALIDITY rescan): nothing new was written.
	Duplicate bool
	// ThreadedBy says how a response found its ticket: "token",
	// "message-id" or "subject-tag".
	ThreadedBy string
	Reason     string // KindIgnored and KindQuarantined
}

// inbound is one raw message and where it was read.
type inbound struct {
	mailbox     string // account/mailbox
	uidValidity uint32
	uid         uint32 // 0 when not read over IMAP
	size        int64  // RFC822.SIZE; 0 means len(raw)
	raw         []byte
	// recipients are the envelope recipients (LMTP's RCPT TO), which
	// carry a reply token as Delivered-To does; at most
	// lmtpMaxRecipients.
	recipients []string
}

// Reasons recorded with ignored mail.
const (
	ReasonOwnAddress    = "own address"
	ReasonRateLimit     = "rate limit"
	ReasonDeniedDomain  = "denied domain"
	ReasonUnknownSender = "unknown sender"
	reasonAutoPrefix    = "automatic mail: "
)

type deliverer struct {
	w   TicketWriter
	o   *Options
	log *slog.Logger
	c   *counters

	own                   map[string]bool
	baseLocal, baseDomain string
}

func newDeliverer(w TicketWriter, o *Options, log *slog.Logger, c *counters) *deliverer {
	d := &deliverer{w: w, o: o, log: log, c: c, own: map[string]bool{}}
	for _, a := range o.OwnAddresses {
		d.own[normAddr(a)] = true
	}
	if o.ReplyBaseAddress != "" {
		d.own[normAddr(o.ReplyBaseAddress)] = true
		d.baseLocal, d.baseDomain, _ = strings.Cut(normAddr(o.ReplyBaseAddress), "@")
	}
	return d
}

func normAddr(a string) string { return strings.ToLower(strings.TrimSpace(a)) }

func domainOf(addr string) string {
	_, d, _ := strings.Cut(addr, "@")
	return d
}

func domainIn(dom string, list []string) bool {
	for _, d := range list {
		d = strings.ToLower(strings.TrimPrefix(strings.TrimSpace(d), "."))
		if dom == d || strings.HasSuffix(dom, "."+d) {
			return true
		}
	}
	return false
}

// isOwn reports whether addr is one of ticketd's addresses, including the
// reply base address with any +tag.
func (d *deliverer) isOwn(addr string) bool {
	if d.own[addr] {
		return true
	}
	if d.baseLocal == "" {
		return false
	}
	local, dom, _ := strings.Cut(addr, "@")
	return dom == d.baseDomain && strings.HasPrefix(local, d.baseLocal+"+")
}

// idempotencyKey is the normalized Message-ID, or a hash of the raw bytes
// for mail without one.
func idempotencyKey(msg *Message, raw []byte) string {
	if id := store.NormalizeMessageID(msg.MessageID); id != "" {
		return id
	}
	sum := sha256.Sum256(raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func sourceKey(key string) string { return string(store.SourceEmail) + ":" + key }

// attachmentID derives a file's id from the message key and the part, so a
// re-read message stores nothing twice.
func attachmentID(key, part string) bson.ObjectID {
	sum := sha256.Sum256([]byte(key + "\x00" + part))
	var id bson.ObjectID
	copy(id[:], sum[:12])
	return id
}

func safeParse(raw []byte, o ParseOptions) (msg *Message, err error) {
	defer func() {
		if r := recover(); r != nil {
			msg, err = nil, fmt.Errorf("parser panic: %v", r)
		}
	}()
	return Parse(raw, o)
}

// maxAddressBytes is the longest mail address there is (RFC 5321 4.5.3.1.3
// less its brackets).
const maxAddressBytes = 254

// deliver turns one message into a ticket or a response, or records why
// not. It returns an error only when the message should be tried again (the
// store failed); anything wrong with the message itself is quarantined.
func (d *deliverer) deliver(ctx context.Context, in inbound) (Result, error) {
	msg, err := d.parse(in)
	return d.deliverParsed(ctx, in, msg, err)
}

// parse reads a message as deliver does, recipients included.
func (d *deliverer) parse(in inbound) (*Message, error) {
	// DataLater: attachments are decoded again, as streams, when stored,
	// as is a text longer than a description can use.
	msg, err := safeParse(in.raw, ParseOptions{MaxAttachmentBytes: d.o.MaxAttachmentBytes, DataLater: true,
		MaxTextBytes: textBytes(d.w.Limits())})
	if err != nil {
		return nil, err
	}
	msg.DeliveredTo = append(msg.DeliveredTo, in.recipients...)
	return msg, nil
}

// deliverParsed is deliver of a message parse returned msg and err for.
func (d *deliverer) deliverParsed(ctx context.Context, in inbound, msg *Message, err error) (Result, error) {
	if err != nil {
		return d.quarantine(ctx, in, "unparsable: "+err.Error(), nil)
	}
	key := idempotencyKey(msg, in.raw)
	from := normAddr(msg.From.Address)
	log := d.log.With("key", key, "from", from)
	// An address is at most 254 bytes (RFC 5321's path limit): a longer
	// one cannot be answered, and would be a customer's key.
	if from == "" || !strings.Contains(from, "@") || len(from) > maxAddressBytes {
		return d.quarantine(ctx, in, "no usable From address", nil)
	}
	res, err := d.route(ctx, in, msg, key, from, log)
	if errors.Is(err, store.ErrInvalid) {
		return d.quarantine(ctx, in, "the store refused it: "+err.Error(), nil)
	}
	return res, err
}

func (d *deliverer) route(ctx context.Context, in inbound, msg *Message, key, from string, log *slog.Logger) (Result, error) {
	dom := domainOf(from)
	switch {
	case d.isOwn(from):
		return d.ignore(ctx, in, msg, key, ReasonOwnAddress, log)
	case msg.Auto != "":
		return d.ignore(ctx, in, msg, key, reasonAutoPrefix+msg.Auto, log)
	case domainIn(dom, d.o.DenyDomains):
		return d.ignore(ctx, in, msg, key, ReasonDeniedDomain, log)
	}

	// Stored before (re-read after a crash, or a rescan)?
	hash := contentHash(from, in.raw)
	res, done, taken, err := d.stored(ctx, msg, key, hash)
	if err != nil || done {
		if done {
			d.c.duplicates.Add(1)
			log.Debug("message already stored", "ticket", res.TicketID.Hex())
		}
		return res, err
	}
	if taken {
		// Taking it for a duplicate would lose it; letting it claim the id
		// would not work either (the first binding wins). It is stored under
		// a key of its own, which a re-read of it finds again.
		log.Warn("the mail's Message-ID names another message (reused by its sender, or one ticketd sent); storing it under its own key", "messageId", msg.MessageID)
		key += "#" + hash[:24]
		log = log.With("key", key)
		msg.MessageID = ""
	}

	known, err := d.w.CustomerByEmail(ctx, from)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return Result{}, fmt.Errorf("look up customer %s: %w", from, err)
	}
	senderTeam := d.o.DomainTeams[dom]
	if known != nil {
		senderTeam = known.TeamID
	}
	ticket, how, err := d.thread(ctx, msg, senderTeam, log)
	if err != nil {
		return Result{}, err
	}
	if !ticket.IsZero() {
		res, err := d.reply(ctx, msg, key, hash, from, known, ticket, how)
		if !errors.Is(err, store.ErrNotFound) {
			return res, err
		}
		log.Info("the matched ticket is gone; opening a new one", "ticket", ticket.Hex())
	}

	if known == nil && d.o.UnknownSenderPolicy == PolicyReject && !domainIn(dom, d.o.AllowDomains) {
		return d.ignore(ctx, in, msg, key, ReasonUnknownSender, log)
	}
	slot, ok, err := d.w.TakeRateSlot(ctx, "mail:"+from, d.o.RateLimitPerHour, time.Hour)
	if err != nil {
		return Result{}, fmt.Errorf("rate limit of %s: %w", from, err)
	}
	if !ok {
		return d.ignore(ctx, in, msg, key, fmt.Sprintf("%s: over %d new tickets per hour from this sender", ReasonRateLimit, d.o.RateLimitPerHour), log)
	}
	res, err = d.open(ctx, msg, key, hash, from, known)
	if err != nil || res.Duplicate {
		// The message opened nothing: its slot goes back. Failing to give
		// it back costs the sender one ticket this hour, not the mail.
		if rerr := d.w.ReturnRateSlot(ctx, slot); rerr != nil {
			log.Warn("giving back a rate-limit slot failed", "err", rerr)
		}
	}
	return res, err
}

// stored reports whether this very message was stored before, using the
// binding of its own Message-ID. taken says the Message-ID names something
// that is not this message: mail of another sender or content stored under
// it (a stranger who reuses a ticket's Message-ID, a client that gives
// every mail the same one), or a message ticketd sent.
func (d *deliverer) stored(ctx context.Context, msg *Message, key, hash string) (res Result, done, taken bool, err error) {
	if msg.MessageID == "" {
		return Result{}, false, false, nil
	}
	id, err := d.w.TicketIDByMessageID(ctx, msg.MessageID)
	if errors.Is(err, store.ErrNotFound) {
		return Result{}, false, false, nil
	}
	if err != nil {
		return Result{}, false, false, fmt.Errorf("look up message id: %w", err)
	}
	t, err := d.w.Ticket(ctx, id, store.AllTickets)
	if errors.Is(err, store.ErrNotFound) {
		return Result{}, false, false, nil
	}
	if err != nil {
		return Result{}, false, false, fmt.Errorf("load ticket %s: %w", id.Hex(), err)
	}
	sk := sourceKey(key)
	// A record made before fingerprints existed counts as this message.
	same := func(stored string) bool { return stored == "" || stored == hash }
	if t.SourceKey == sk {
		if !same(t.SourceHash) {
			return Result{}, false, true, nil
		}
		// open() stores the files after the ticket: if that failed, this
		// re-read is the repair (saving them again is a no-op otherwise).
		_, cut := d.description(msg)
		if err := d.saveFiles(ctx, msg, files(msg, key, cut), t.ID); err != nil {
			return Result{}, false, false, err
		}
		return Result{Kind: KindTicket, Key: key, TicketID: t.ID, Duplicate: true}, true, false, nil
	}
	for _, r := range t.Response {
		if r.SourceKey == sk {
			if !same(r.SourceHash) {
				return Result{}, false, true, nil
			}
			return Result{Kind: KindResponse, Key: key, TicketID: t.ID, Duplicate: true}, true, false, nil
		}
	}
	// The id names a ticket that holds no mail under it: one ticketd sent.
	return Result{}, false, true, nil
}

// contentHash fingerprints what a sender wrote: the From address and the
// body's bytes. The same message read again, or read from a second mailbox
// it was also delivered to, has the same one (servers add header fields,
// not body); another sender's mail under its Message-ID has not.
func contentHash(from string, raw []byte) string {
	start := len(raw) // a mail of headers only has no body
	if i := bytes.Index(raw, []byte("\n\r\n")); i >= 0 {
		start = i + 3
	}
	if i := bytes.Index(raw, []byte("\n\n")); i >= 0 && i+2 < start {
		start = i + 2 // bare LF line ends
	}
	h := sha256.New()
	h.Write([]byte(from + "\x00"))
	h.Write(raw[start:])
	return hex.EncodeToString(h.Sum(nil))
}

var subjectTag = regexp.MustCompile(`\[#(\d{1,18})\]`)

// Bounds on the lookups one message may cause while threading, so the work
// per message is a constant whatever its headers hold (a References header
// of 35,000 ids once stalled the mailbox for 14 s).
const (
	// maxThreadIDs is how many distinct Message-IDs of In-Reply-To and
	// References are looked up: In-Reply-To first, then References, newest
	// first. Real clients put the parent within the last few.
	maxThreadIDs = 20
	// maxReplyTokens is how many verified reply tokens are looked up.
	maxReplyTokens = 4
	// maxSubjectTags is how many [#ref] subject tags are looked up.
	maxSubjectTags = 4
)

// thread finds the ticket a message answers: (a) a verified reply token in
// a recipient address, (b) a Message-ID in In-Reply-To/References, newest
// first, (c) a [#ref] subject tag. A token is proof: only ticketd can sign
// one. Message-IDs and tags are whatever the sender wrote (our own outgoing
// ids are unguessable, but a CC'd outsider sees them), so (b) and (c) only
// find tickets of the sender's team; anything else opens the sender's own.
func (d *deliverer) thread(ctx context.Context, msg *Message, senderTeam string, log *slog.Logger) (bson.ObjectID, string, error) {
	if id, err := d.threadByToken(ctx, msg, log); err != nil || !id.IsZero() {
		return id, "token", err
	}
	if senderTeam == "" {
		if len(msg.InReplyTo)+len(msg.References) > 0 || subjectTag.MatchString(msg.Subject) {
			log.Info("thread headers or subject tag from a sender of no known team; opening a new ticket")
		}
		return bson.NilObjectID, "", nil
	}
	scope := store.TeamScope(senderTeam)

	for _, n := range threadIDs(msg) {
		id, err := d.w.TicketIDByMessageID(ctx, n)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return bson.NilObjectID, "", fmt.Errorf("look up message id %s: %w", n, err)
		}
		_, err = d.w.Ticket(ctx, id, scope)
		if errors.Is(err, store.ErrNotFound) {
			log.Info("a thread header names no ticket of the sender's team (gone, or another team's); not attaching to it", "messageId", n)
			continue
		}
		if err != nil {
			return bson.NilObjectID, "", fmt.Errorf("load ticket %s: %w", id.Hex(), err)
		}
		return id, "message-id", nil
	}

	for _, m := range subjectTag.FindAllStringSubmatch(msg.Subject, maxSubjectTags) {
		ref, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil {
			continue
		}
		t, err := d.w.TicketByRef(ctx, ref, scope)
		if errors.Is(err, store.ErrNotFound) {
			log.Info("subject tag names no ticket of the sender's team; opening a new ticket", "ref", ref)
			continue
		}
		if err != nil {
			return bson.NilObjectID, "", fmt.Errorf("find ticket #%d: %w", ref, err)
		}
		return t.ID, "subject-tag", nil
	}
	return bson.NilObjectID, "", nil
}

// threadByToken returns the ticket named by a verified reply token in a
// recipient address, or the zero id.
func (d *deliverer) threadByToken(ctx context.Context, msg *Message, log *slog.Logger) (bson.ObjectID, error) {
	s := d.o.ReplySigner
	if s == nil {
		return bson.NilObjectID, nil
	}
	addrs := make([]string, 0, len(msg.To)+len(msg.Cc)+len(msg.DeliveredTo))
	for _, a := range msg.To {
		addrs = append(addrs, a.Address)
	}
	for _, a := range msg.Cc {
		addrs = append(addrs, a.Address)
	}
	addrs = append(addrs, msg.DeliveredTo...)
	checked := map[bson.ObjectID]bool{}
	warned := false
	for _, a := range addrs {
		id, found, err := s.FromAddress(d.o.ReplyBaseAddress, a)
		if !found || checked[id] {
			continue
		}
		if err != nil {
			if !warned { // once: a mail may list thousands
				warned = true
				log.Warn("reply address carries a token that does not verify (forged or from another installation); ignoring it", "address", a)
			}
			continue
		}
		if len(checked) == maxReplyTokens {
			break
		}
		checked[id] = true
		if ok, err := d.exists(ctx, id); err != nil || ok {
			return id, err
		}
		log.Info("reply token names a ticket that no longer exists", "ticket", id.Hex())
	}
	return bson.NilObjectID, nil
}

// threadIDs lists the normalized Message-IDs threading looks up: those of
// In-Reply-To, then References, newest first, without repeats, at most
// maxThreadIDs.
func threadIDs(msg *Message) []string {
	out := make([]string, 0, maxThreadIDs)
	seen := make(map[string]bool, maxThreadIDs)
	for _, list := range [][]string{msg.InReplyTo, msg.References} {
		for i := len(list) - 1; i >= 0 && len(out) < maxThreadIDs; i-- {
			n := store.NormalizeMessageID(list[i])
			if n != "" && !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	return out
}

func (d *deliverer) exists(ctx context.Context, id bson.ObjectID) (bool, error) {
	_, err := d.w.Ticket(ctx, id, store.AllTickets)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("load ticket %s: %w", id.Hex(), err)
	}
	return true, nil
}

// mailText is what a message adds: the stripped text, else the whole text.
func mailText(msg *Message) string {
	if t := strings.TrimSpace(msg.Text); t != "" {
		return t
	}
	if t := strings.TrimSpace(msg.FullText); t != "" {
		return t
	}
	return "(no text)"
}

// textBytes is how much of a mail's text to keep in memory: a
// description of lim's characters, of up to four bytes each (Parse's
// default for the default limit).
func textBytes(lim store.Limits) int {
	return 4 * lim.MaxDescription // 0: Parse's default
}

// truncatedNote ends a description cut to the store's limit.
const truncatedNote = "\n\n[… truncated: the full message is attached as original-message.txt]"

// description is what a message adds, with notes on files left out, cut
// to the store's limit with truncatedNote; cut says it was, and the whole
// text must then be kept as original-message.txt.
func (d *deliverer) description(msg *Message) (desc string, cut bool) {
	return d.w.Limits().FitDescription(mailText(msg)+d.fileNotes(msg), truncatedNote)
}

// subject is the message's subject as a ticket keeps it: cleaned and cut
// to the store's limit, "(no subject)" when nothing visible is left.
func (d *deliverer) subject(msg *Message) string {
	if s := d.w.Limits().FitSubject(msg.Subject); s != "" {
		return s
	}
	return "(no subject)"
}

// file is an attachment (or the full original text) to store, with the
// metadata that lists it.
// part is its index in Message.Attachments, or -1 for the full text.
type file struct {
	meta store.Attachment
	part int
}

// files lists the message's attachments, and its full text when the
// description is only the stripped part of it or was cut (keepFull), under
// ids derived from key:
// the metadata is known before the ticket exists, and storing a re-read
// message's files again is a no-op.
func files(msg *Message, key string, keepFull bool) []file {
	var out []file
	add := func(name string, part int, a store.Attachment, size int64) {
		a.ID = attachmentID(key, name)
		a.Size = size
		out = append(out, file{meta: a, part: part})
	}
	for i, p := range msg.Attachments {
		if p.TooLarge {
			continue // fileNotes tells
		}
		name := p.Filename
		if name == "" {
			name = fmt.Sprintf("attachment-%d", i+1)
		}
		add(strconv.Itoa(i), i, store.Attachment{Filename: name, ContentType: p.ContentType, Inline: p.Inline}, p.Size)
	}
	// A text longer than Parse kept is over any description: kept too.
	size := max(msg.FullTextSize, int64(len(msg.FullText)))
	longer := size > int64(len(msg.FullText))
	if full := strings.TrimSpace(msg.FullText); full != "" && (keepFull || longer || full != strings.TrimSpace(msg.Text)) {
		add("full-text", -1, store.Attachment{Filename: "original-message.txt", ContentType: "text/plain; charset=utf-8"}, size)
	}
	return out
}

func metadata(fs []file) []store.Attachment {
	var out []store.Attachment
	for _, f := range fs {
		out = append(out, f.meta)
	}
	return out
}

// saveFiles stores files under a ticket, each attachment streamed to the
// store as it is decoded from the raw message (Message.EachAttachment),
// and so is the full text (saveFullText): the raw message is the only
// whole copy of the mail in memory.
func (d *deliverer) saveFiles(ctx context.Context, msg *Message, fs []file, ticket bson.ObjectID) error {
	parts := map[int]store.Attachment{}
	for _, f := range fs {
		if f.part >= 0 {
			parts[f.part] = f.meta
			continue
		}
		if err := d.saveFullText(ctx, msg, f.meta, ticket); err != nil {
			return err
		}
	}
	if len(parts) == 0 {
		return nil
	}
	return msg.EachAttachment(func(i int, r io.Reader) error {
		if meta, ok := parts[i]; ok {
			return d.w.WriteAttachment(ctx, meta, ticket, r)
		}
		return nil
	})
}

// saveFullText stores the message's whole text as it is written by
// Message.WriteFullText, through a pipe: the text is decoded again from
// the raw message while the store reads it.
func (d *deliverer) saveFullText(ctx context.Context, msg *Message, meta store.Attachment, ticket bson.ObjectID) error {
	if msg.cutText == nil { // FullText is all of it
		return d.w.WriteAttachment(ctx, meta, ticket, strings.NewReader(msg.FullText))
	}
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				pw.CloseWithError(fmt.Errorf("decode the full text: panic: %v", r))
			}
		}()
		pw.CloseWithError(msg.WriteFullText(pw)) // nil: the reader sees EOF
	}()
	err := d.w.WriteAttachment(ctx, meta, ticket, pr)
	pr.CloseWithError(errors.New("the store stopped reading")) // ends the writer if the store did not read it all
	<-done
	return err
}

// fileNotes says which attachments were left out, and why.
func (d *deliverer) fileNotes(msg *Message) string {
	var notes []string
	for _, p := range msg.Attachments {
		if p.TooLarge {
			notes = append(notes, fmt.Sprintf("[attachment %q (%d bytes) not stored: over the %d-byte limit]", p.Filename, p.Size, d.o.MaxAttachmentBytes))
		}
	}
	if len(notes) == 0 {
		return ""
	}
	return "\n\n" + strings.Join(notes, "\n")
}

// customer returns the sender's customer record, creating it (in the team
// of its domain, else a personal one) when known is nil.
func (d *deliverer) customer(ctx context.Context, msg *Message, from string, known *store.Customer) (*store.Customer, error) {
	if known != nil {
		return known, nil
	}
	cust, _, err := d.w.FindOrCreateCustomer(ctx, from, msg.From.Name, d.o.DomainTeams[domainOf(from)])
	if err != nil {
		return nil, fmt.Errorf("find customer %s: %w", from, err)
	}
	return cust, nil
}

// reply adds the message to a ticket.
func (d *deliverer) reply(ctx context.Context, msg *Message, key, hash, from string, known *store.Customer, ticket bson.ObjectID, how string) (Result, error) {
	cust, err := d.customer(ctx, msg, from, known)
	if err != nil {
		return Result{}, err
	}
	desc, cut := d.description(msg)
	fs := files(msg, key, cut)
	if err := d.saveFiles(ctx, msg, fs, ticket); err != nil {
		return Result{}, err
	}
	_, added, err := d.w.AddResponse(ctx, ticket, store.AllTickets, store.NewResponse{
		Author:      store.Actor{ID: cust.ID, Type: store.CreatorCustomer},
		Description: desc,
		Source:      store.SourceEmail,
		SourceKey:   sourceKey(key),
		SourceHash:  hash,
		Attachments: metadata(fs),
		MessageID:   msg.MessageID, // later replies thread under it
	})
	if err != nil {
		return Result{}, fmt.Errorf("add response to %s: %w", ticket.Hex(), err)
	}
	if added {
		d.c.responses.Add(1)
		d.log.Info("mail added to ticket", "ticket", ticket.Hex(), "from", from, "threadedBy", how, "key", key)
	} else {
		d.c.duplicates.Add(1)
	}
	return Result{Kind: KindResponse, Key: key, TicketID: ticket, ThreadedBy: how, Duplicate: !added}, nil
}

// open opens a ticket, listing its files; they are stored right after,
// under the new ticket's id (a crash in between is repaired by the re-read,
// which finds the ticket and stores them).
func (d *deliverer) open(ctx context.Context, msg *Message, key, hash, from string, known *store.Customer) (Result, error) {
	cust, err := d.customer(ctx, msg, from, known)
	if err != nil {
		return Result{}, err
	}
	desc, cut := d.description(msg)
	fs := files(msg, key, cut)
	t, created, err := d.w.CreateTicket(ctx, store.NewTicket{
		Creator:     store.Actor{ID: cust.ID, Type: store.CreatorCustomer},
		TeamID:      cust.TeamID,
		Category:    d.o.DefaultCategory,
		Subject:     d.subject(msg),
		Description: desc,
		Source:      store.SourceEmail,
		SourceKey:   sourceKey(key),
		SourceHash:  hash,
		MessageID:   msg.MessageID, // later replies thread under it
		Attachments: metadata(fs),
	})
	if err != nil {
		return Result{}, fmt.Errorf("create ticket: %w", err)
	}
	if err := d.saveFiles(ctx, msg, fs, t.ID); err != nil {
		return Result{}, err
	}
	if created {
		d.c.tickets.Add(1)
		d.log.Info("mail opened a ticket", "ticket", t.ID.Hex(), "ref", t.RefID, "from", from, "key", key)
	} else {
		d.c.duplicates.Add(1)
	}
	return Result{Kind: KindTicket, Key: key, TicketID: t.ID, Duplicate: !created}, nil
}

func (d *deliverer) ignore(ctx context.Context, in inbound, msg *Message, key, reason string, log *slog.Logger) (Result, error) {
	subject := d.w.Limits().FitSubject(msg.Subject) // a record, not a ticket: no fallback
	err := d.w.RecordIgnored(ctx, store.IgnoredMail{
		ID: key, Mailbox: in.mailbox, Reason: reason,
		MessageID: msg.MessageID, From: msg.From.Address, Subject: subject,
	})
	if err != nil {
		return Result{}, fmt.Errorf("record ignored mail: %w", err)
	}
	d.c.ignored.Add(1)
	log.Info("mail ignored", "reason", reason, "subject", subject)
	return Result{Kind: KindIgnored, Key: key, Reason: reason}, nil
}

// quarantine keeps a message aside with its reason and (the start of) its
// raw bytes. env, when known, fills in who sent it.
func (d *deliverer) quarantine(ctx context.Context, in inbound, reason string, env *imap.Envelope) (Result, error) {
	size := in.size
	if size == 0 {
		size = int64(len(in.raw))
	}
	raw := in.raw
	if int64(len(raw)) > d.o.QuarantineRawBytes {
		raw = raw[:d.o.QuarantineRawBytes]
	}
	id := fmt.Sprintf("%s/%d/%d", in.mailbox, in.uidValidity, in.uid)
	if in.uid == 0 {
		sum := sha256.Sum256(in.raw)
		id = in.mailbox + "/sha256:" + hex.EncodeToString(sum[:])
	}
	q := store.QuarantinedMail{
		ID: id, Mailbox: in.mailbox, UID: in.uid, Reason: reason,
		Size: size, Raw: raw, Truncated: int64(len(raw)) < size,
	}
	if env != nil {
		// The server's envelope of a mail too big to read holds whatever
		// the sender wrote: each field is cut, like a read mail's.
		q.MessageID = firstMsgID(env.MessageID)
		q.Subject = d.w.Limits().FitSubject(env.Subject)
		if len(env.From) > 0 && len(env.From[0].Addr()) <= maxAddressBytes {
			q.From = env.From[0].Addr()
		}
	}
	if err := d.w.Quarantine(ctx, q); err != nil {
		return Result{}, fmt.Errorf("quarantine message: %w", err)
	}
	d.c.quarantined.Add(1)
	d.log.Warn("mail quarantined: it was not turned into a ticket; inspect it in the quarantine (by id) and re-send it fixed if it matters",
		"id", id, "reason", reason, "size", size, "from", q.From, "subject", q.Subject)
	return Result{Kind: KindQuarantined, Reason: reason}, nil
}

// Deliver stores one raw message as if it had been read from mailbox: for
// other inbound paths (an MTA pipe, a re-send from the quarantine) and
// tests. Its error means "try again later" (the store failed).
func (s *Source) Deliver(ctx context.Context, mailbox string, raw []byte) (Result, error) {
	return s.d.deliver(ctx, inbound{mailbox: mailbox, raw: raw})
}
