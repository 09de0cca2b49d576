package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Mail-side storage: which Message-IDs belong to which ticket, how far each
// mailbox has been read, attachments, and mail that was quarantined or
// ignored. Every lookup goes by _id.

const (
	colMailboxes   = "mailboxes"
	colAttachments = "attachments"
	colChunks      = "attachmentChunks"
	colQuarantine  = "quarantine"
	colIgnored     = "ignored"
)

func (s *Store) col(name string) *mongo.Collection { return s.db.Collection(name) }

// NormalizeMessageID is the key form of a Message-ID: without angle
// brackets and space, lowercased (some clients and gateways change case), so
// "<A@X>" and "a@x" match.
func NormalizeMessageID(id string) string {
	id = strings.TrimSpace(id)
	id = strings.TrimPrefix(id, "<")
	id = strings.TrimSuffix(id, ">")
	return strings.ToLower(strings.TrimSpace(id))
}

// headerMessageID is the header form of a Message-ID, "<id@host>", or ""
// for an empty one.
func headerMessageID(id string) string {
	id = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(id), "<"), ">")
	if strings.TrimSpace(id) == "" {
		return ""
	}
	return "<" + id + ">"
}

// BindMessageID records that a Message-ID (received or sent) belongs to a
// ticket, for threading lookups only (the caller records it on the ticket
// in its own write). Binding the same id again is a no-op; the first ticket
// wins, silently.
func (s *Store) BindMessageID(ctx context.Context, messageID string, ticket bson.ObjectID) error {
	k, err := threadKey(ThreadMail, messageID)
	if err != nil {
		return nil // no id, nothing to bind
	}
	_, err = s.bindKey(ctx, k, ticket)
	return err
}

// AddMessageID records a Message-ID of the ticket's mail thread: it is
// bound for threading lookups and appended to Ticket.MessageIDs unless
// already there (BindThread with ThreadMail). An id that already names
// another ticket stays with that ticket. Idempotent.
func (s *Store) AddMessageID(ctx context.Context, ticket bson.ObjectID, messageID string) error {
	if NormalizeMessageID(messageID) == "" {
		return nil
	}
	if err := s.BindThread(ctx, ticket, ThreadMail, messageID); err != nil && !errors.Is(err, ErrConflict) {
		return err
	}
	return nil
}

// TicketIDByMessageID returns the ticket a Message-ID belongs to.
func (s *Store) TicketIDByMessageID(ctx context.Context, messageID string) (bson.ObjectID, error) {
	return s.TicketIDByThread(ctx, ThreadMail, messageID)
}

// MailboxState is how far one IMAP mailbox has been read.
type MailboxState struct {
	ID          string    `bson:"_id"` // account/mailbox
	UIDValidity uint32    `bson:"uidValidity"`
	LastUID     uint32    `bson:"lastUid"`
	UpdatedAt   time.Time `bson:"updatedAt"`
}

// MailboxState returns the saved state, or a zero state with the id set
// when the mailbox was never read.
func (s *Store) MailboxState(ctx context.Context, id string) (MailboxState, error) {
	st, err := findByID[MailboxState](ctx, s.col(colMailboxes), id)
	if errors.Is(err, ErrNotFound) {
		return MailboxState{ID: id}, nil
	}
	if err != nil {
		return MailboxState{}, err
	}
	return *st, nil
}

// SaveMailboxState records how far a mailbox has been read.
func (s *Store) SaveMailboxState(ctx context.Context, st MailboxState) error {
	st.UpdatedAt = s.nowUTC()
	_, err := s.col(colMailboxes).ReplaceOne(ctx, bson.D{{Key: "_id", Value: st.ID}}, st, options.Replace().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("save mailbox state %s: %w", st.ID, classify(err))
	}
	return nil
}

// AttachmentFile is an attachment's metadata with its bytes.
type AttachmentFile struct {
	Attachment `bson:",inline"`
	TicketID   bson.ObjectID `bson:"ticketId"`
	// Data holds the bytes of a file read back, and of files stored
	// whole before they were stored in chunks.
	Data []byte `bson:"data,omitempty"`
	// Chunks is how many attachmentChunks documents hold the bytes.
	Chunks    int       `bson:"chunks,omitempty"`
	CreatedAt time.Time `bson:"createdAt"`
}

// ChunkBytes is the size of the pieces a file is stored in: each write,
// and every copy the driver and the database make of it, costs this much
// memory, not the size of the file.
const ChunkBytes = 256 << 10

// chunk is one piece of a file; _id is "<file id>/<n>", so reading a file
// back is lookups by _id, and storing a piece again is a no-op.
type chunk struct {
	ID   string `bson:"_id"`
	Data []byte `bson:"data"`
}

func chunkID(file bson.ObjectID, n int) string { return fmt.Sprintf("%s/%d", file.Hex(), n) }

// SaveAttachment stores a file held in memory; see WriteAttachment.
func (s *Store) SaveAttachment(ctx context.Context, f AttachmentFile) error {
	return s.WriteAttachment(ctx, f.Attachment, f.TicketID, bytes.NewReader(f.Data))
}

// WriteAttachment stores a file read from r, in pieces of ChunkBytes, so
// that a large file never sits whole in memory on its way to the database.
// The metadata is written last: a file is listed only once all its pieces
// are stored. A file of one piece or less (a mail's text, most images) is
// stored with its metadata, in one write. Writing the same _id again is a
// no-op that does not read r, so a re-read message whose attachment ids are
// derived from its key does not store its files twice, and an interrupted
// write is completed.
func (s *Store) WriteAttachment(ctx context.Context, a Attachment, ticket bson.ObjectID, r io.Reader) error {
	if _, err := findByID[AttachmentFile](ctx, s.col(colAttachments), a.ID); err == nil {
		return nil
	} else if !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("save attachment %s: %w", a.Filename, err)
	}
	f := AttachmentFile{Attachment: a, TicketID: ticket}
	f.Size = 0
	buf := make([]byte, ChunkBytes)
	for {
		n, err := io.ReadFull(r, buf)
		end := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
		if err != nil && !end {
			return fmt.Errorf("save attachment %s: read: %w", a.Filename, err)
		}
		if end && f.Chunks == 0 {
			// The whole file is this piece: kept in the metadata's
			// document (Data), as Attachment reads it.
			f.Data = buf[:n]
			f.Size = int64(n)
			break
		}
		if n > 0 {
			c := chunk{ID: chunkID(a.ID, f.Chunks), Data: buf[:n]}
			if _, err := s.col(colChunks).InsertOne(ctx, c); err != nil && !mongo.IsDuplicateKeyError(err) {
				return fmt.Errorf("save attachment %s: %w", a.Filename, classify(err))
			}
			f.Chunks++
			f.Size += int64(n)
		}
		if end {
			break
		}
	}
	f.CreatedAt = s.nowUTC()
	if _, err := s.col(colAttachments).InsertOne(ctx, f); err != nil && !mongo.IsDuplicateKeyError(err) {
		return fmt.Errorf("save attachment %s: %w", a.Filename, classify(err))
	}
	return nil
}

// Attachment returns a stored file with its bytes, if its ticket lies
// within scope.
func (s *Store) Attachment(ctx context.Context, id bson.ObjectID, scope Scope) (*AttachmentFile, error) {
	f, err := findByID[AttachmentFile](ctx, s.col(colAttachments), id)
	if err != nil {
		return nil, err
	}
	if _, err := s.Ticket(ctx, f.TicketID, scope); err != nil {
		return nil, err
	}
	if f.Chunks > 0 {
		f.Data = make([]byte, 0, f.Size)
		for n := 0; n < f.Chunks; n++ {
			c, err := findByID[chunk](ctx, s.col(colChunks), chunkID(id, n))
			if err != nil {
				return nil, fmt.Errorf("read attachment %s piece %d: %w", id.Hex(), n, err)
			}
			f.Data = append(f.Data, c.Data...)
		}
	}
	return f, nil
}

// QuarantinedMail is a message that could not be turned into a ticket or a
// response, kept with its reason and raw bytes for an operator.
type QuarantinedMail struct {
	ID         string    `bson:"_id"` // mailbox/uidvalidity/uid: quarantining twice is a no-op
	Mailbox    string    `bson:"mailbox"`
	UID        uint32    `bson:"uid"`
	Reason     string    `bson:"reason"`
	MessageID  string    `bson:"messageId,omitempty"`
	From       string    `bson:"from,omitempty"`
	Subject    string    `bson:"subject,omitempty"`
	Size       int64     `bson:"size"`
	Raw        []byte    `bson:"raw,omitempty"`
	Truncated  bool      `bson:"truncated,omitempty"`
	ReceivedAt time.Time `bson:"receivedAt"`
}

// Quarantine keeps a message aside. Idempotent on ID.
func (s *Store) Quarantine(ctx context.Context, q QuarantinedMail) error {
	if q.ReceivedAt.IsZero() {
		q.ReceivedAt = s.nowUTC()
	}
	if _, err := s.col(colQuarantine).InsertOne(ctx, q); err != nil && !mongo.IsDuplicateKeyError(err) {
		return fmt.Errorf("quarantine %s: %w", q.ID, classify(err))
	}
	return nil
}

// ListQuarantine returns a page of quarantined mail, newest first, without
// raw bytes, and the total.
func (s *Store) ListQuarantine(ctx context.Context, limit, offset int) ([]QuarantinedMail, int64, error) {
	return listPage[QuarantinedMail](ctx, s.col(colQuarantine), limit, offset, "receivedAt", bson.D{{Key: "raw", Value: 0}})
}

// QuarantinedMessage returns one quarantined message with its raw bytes.
func (s *Store) QuarantinedMessage(ctx context.Context, id string) (*QuarantinedMail, error) {
	return findByID[QuarantinedMail](ctx, s.col(colQuarantine), id)
}

// IgnoredMail records a message that was deliberately not turned into a
// ticket (auto-reply, bounce, own address, rate limit, policy), and why.
type IgnoredMail struct {
	ID        string    `bson:"_id"` // the message's idempotency key
	Mailbox   string    `bson:"mailbox"`
	Reason    string    `bson:"reason"`
	MessageID string    `bson:"messageId,omitempty"`
	From      string    `bson:"from,omitempty"`
	Subject   string    `bson:"subject,omitempty"`
	At        time.Time `bson:"at"`
}

// RecordIgnored notes an ignored message. Idempotent on ID.
func (s *Store) RecordIgnored(ctx context.Context, m IgnoredMail) error {
	if m.At.IsZero() {
		m.At = s.nowUTC()
	}
	if _, err := s.col(colIgnored).InsertOne(ctx, m); err != nil && !mongo.IsDuplicateKeyError(err) {
		return fmt.Errorf("record ignored mail %s: %w", m.ID, classify(err))
	}
	return nil
}

// ListIgnored returns a page of ignored mail, newest first, and the total.
func (s *Store) ListIgnored(ctx context.Context, limit, offset int) ([]IgnoredMail, int64, error) {
	return listPage[IgnoredMail](ctx, s.col(colIgnored), limit, offset, "at", nil)
}

func listPage[T any](ctx context.Context, col *mongo.Collection, limit, offset int, newest string, projection bson.D) ([]T, int64, error) {
	if limit <= 0 {
		limit = DefaultLimit
	}
	opts := options.Find().SetSort(bson.D{{Key: newest, Value: -1}}).SetSkip(int64(offset)).SetLimit(int64(limit))
	if projection != nil {
		opts.SetProjection(projection)
	}
	cur, err := col.Find(ctx, bson.D{}, opts)
	if err != nil {
		return nil, 0, fmt.Errorf("list %s: %w", col.Name(), classify(err))
	}
	out := []T{}
	if err := cur.All(ctx, &out); err != nil {
		return nil, 0, fmt.Errorf("list %s: %w", col.Name(), classify(err))
	}
	n, err := col.CountDocuments(ctx, bson.D{})
	if err != nil {
		return nil, 0, fmt.Errorf("count %s: %w", col.Name(), classify(err))
	}
	return out, n, nil
}
