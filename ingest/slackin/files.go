package slackin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/slack-go/slack"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/store"
)

// maxFilesPerMessage bounds the downloads one message causes (Slack itself
// allows 10 files per message).
const maxFilesPerMessage = 10

// filesTimeout bounds the work on a reply with files: downloads and the
// store, past the connection's deadline if need be.
const filesTimeout = 2 * time.Minute

// fullTextName is the file that keeps a message cut to Limits.MaxDescription whole.
const fullTextName = "original-message.txt"

// fileID derives an attachment's id from the message's key and the Slack
// file id, so that a redelivered message stores nothing twice.
func fileID(messageKey, part string) bson.ObjectID {
	sum := sha256.Sum256([]byte("slack\x00" + messageKey + "\x00" + part))
	var id bson.ObjectID
	copy(id[:], sum[:12])
	return id
}

// attachments downloads a message's files and stores them under the
// ticket. A file that is too large, gone, or unreadable with the bot token
// is left out with a note for the text; an error means Slack or the store
// could not be reached, and the event should be retried.
func (h *Bridge) attachments(ctx context.Context, ticket bson.ObjectID, key string, files []slack.File) ([]store.Attachment, []string, error) {
	var (
		stored []store.Attachment
		notes  []string
	)
	for i, f := range files {
		name := fileName(f, i)
		if i >= maxFilesPerMessage {
			notes = append(notes, fmt.Sprintf("[attachment %q not stored: more than %d files in one message]", name, maxFilesPerMessage))
			continue
		}
		data, why, err := h.download(ctx, f)
		if err != nil {
			return nil, nil, err
		}
		if why != "" {
			notes = append(notes, fmt.Sprintf("[attachment %q not stored: %s]", name, why))
			continue
		}
		a := store.Attachment{ID: fileID(key, f.ID), Filename: name, ContentType: f.Mimetype, Size: int64(len(data))}
		if a.ContentType == "" {
			a.ContentType = "application/octet-stream"
		}
		if err := h.o.Store.SaveAttachment(ctx, store.AttachmentFile{Attachment: a, TicketID: ticket, Data: data}); err != nil {
			return nil, nil, err
		}
		stored = append(stored, a)
	}
	return stored, notes, nil
}

func fileName(f slack.File, i int) string {
	switch {
	case f.Name != "":
		return f.Name
	case f.Title != "":
		return f.Title
	}
	return fmt.Sprintf("attachment-%d", i+1)
}

// download fetches a file's bytes with the bot token, at most
// MaxAttachmentBytes of them. why says why a file is left out for good.
func (h *Bridge) download(ctx context.Context, f slack.File) (data []byte, why string, err error) {
	max := h.o.MaxAttachmentBytes
	if f.Mode == "tombstone" || f.Mode == "hidden_by_limit" {
		return nil, "no longer available in Slack", nil
	}
	url := f.URLPrivateDownload
	if url == "" {
		url = f.URLPrivate
	}
	if url == "" || f.FileAccess == "check_file_info" {
		// Events may carry a file without its details (Slack Connect):
		// files.info has them.
		info, _, _, err := h.o.Slack.GetFileInfoContext(ctx, f.ID, 0, 0)
		var slackErr slack.SlackErrorResponse
		if errors.As(err, &slackErr) {
			return nil, "Slack refused files.info: " + slackErr.Err, nil
		}
		if err != nil {
			return nil, "", fmt.Errorf("files.info %s: %w", f.ID, err)
		}
		f = *info
		url = f.URLPrivateDownload
		if url == "" {
			url = f.URLPrivate
		}
	}
	if f.Size > int(max) {
		return nil, fmt.Sprintf("%d bytes, over the %d-byte limit", f.Size, max), nil
	}
	if url == "" {
		return nil, "Slack gave no download address", nil
	}
	buf := &capped{max: max}
	err = h.o.Slack.GetFileContext(ctx, url, buf)
	var status slack.StatusCodeError
	switch {
	case errors.Is(err, errOverLimit):
		return nil, fmt.Sprintf("over the %d-byte limit", max), nil
	case errors.As(err, &status) && status.Code >= 400 && status.Code < 500 && status.Code != 429:
		return nil, fmt.Sprintf("download refused (HTTP %d)", status.Code), nil
	case err != nil && ctx.Err() == nil && !isTransient(err):
		return nil, "download failed: " + err.Error(), nil
	case err != nil:
		return nil, "", fmt.Errorf("download file %s: %w", f.ID, err)
	}
	return buf.Bytes(), "", nil
}

// isTransient says whether a download error may go away on a retry: a
// network failure, a rate limit, a server error. Anything else (the token
// may not read the file, a URL the client will not send the token to) will
// not.
func isTransient(err error) bool {
	var (
		status  slack.StatusCodeError
		limited *slack.RateLimitedError
	)
	if errors.As(err, &limited) || (errors.As(err, &status) && (status.Code >= 500 || status.Code == 429)) {
		return true
	}
	var netErr interface{ Timeout() bool }
	return errors.As(err, &netErr)
}

var errOverLimit = errors.New("file over the size limit")

// capped is a buffer that refuses to grow past max bytes: the size Slack
// announces is not trusted.
type capped struct {
	bytes.Buffer
	max int64
}

func (c *capped) Write(p []byte) (int, error) {
	if int64(c.Len()+len(p)) > c.max {
		return 0, errOverLimit
	}
	return c.Buffer.Write(p)
}

// saveFullText stores the whole text of a message that was cut.
func (h *Bridge) saveFullText(ctx context.Context, ticket bson.ObjectID, key, whole string) (store.Attachment, error) {
	a := store.Attachment{ID: fileID(key, "full-text"), Filename: fullTextName, ContentType: "text/plain; charset=utf-8", Size: int64(len(whole))}
	err := h.o.Store.SaveAttachment(ctx, store.AttachmentFile{Attachment: a, TicketID: ticket, Data: []byte(whole)})
	return a, err
}

// body turns a message into what is stored of it: its markup as plain
// text (plain, whole), its files downloaded and stored under the ticket,
// and the text to store (text): within Limits.MaxDescription, with notes for the
// files left out, the whole text kept as fullTextName when it was cut.
func (h *Bridge) body(ctx context.Context, ticket bson.ObjectID, key, markup string, files []slack.File) (text, plain string, stored []store.Attachment, err error) {
	plain = h.plainText(ctx, markup)
	stored, notes, err := h.attachments(ctx, ticket, key, files)
	if err != nil {
		return "", "", nil, err
	}
	text, whole := withNotes(plain, notes, h.o.Limits)
	if whole != "" {
		f, err := h.saveFullText(ctx, ticket, key, whole)
		if err != nil {
			return "", "", nil, err
		}
		stored = append(stored, f)
	}
	return text, plain, stored, nil
}
