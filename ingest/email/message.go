// Package email turns mail read over IMAP into tickets and responses.
//
// parse.go turns raw bytes into a Message (MIME, charsets, HTML, quoting,
// auto-reply detection); the IMAP side (source.go) reads mailboxes, and
// deliver.go decides which ticket a Message belongs to and stores it.
package email

import (
	"net/mail"
	"time"
)

// Message is an inbound mail, decoded, as ticketd needs it.
type Message struct {
	// MessageID is the Message-ID header as written ("<id@host>"); empty
	// when the mail has none.
	MessageID  string
	InReplyTo  []string // Message-IDs, each "<id@host>"
	References []string // Message-IDs, oldest first, each "<id@host>"

	From mail.Address
	// ReturnPath is the envelope sender from Return-Path, without angle
	// brackets; NullReturnPath is true for "<>" (a bounce).
	ReturnPath     string
	NullReturnPath bool
	To, Cc         []mail.Address
	// DeliveredTo holds Delivered-To, X-Original-To and Envelope-To
	// addresses: where the mail was really delivered (reply tokens may only
	// survive there).
	DeliveredTo []string
	Subject     string // RFC 2047 decoded
	Date        time.Time

	// Text is what this mail adds to the conversation: the body as text with
	// the quoted earlier message and the signature removed.
	Text string
	// FullText is the whole body as text (HTML-only mail turned into
	// readable text), kept beside Text so nothing the customer wrote is lost.
	// Text and FullText hold at most about ParseOptions.MaxTextBytes: of a
	// longer body, its start. FullTextSize is the length of the whole
	// text, which WriteFullText writes.
	FullText     string
	FullTextSize int64

	Attachments []Part

	// Auto is empty for mail a person wrote; otherwise why it is machine
	// mail that must never open a ticket or trigger a notification, e.g.
	// "auto-submitted: auto-replied", "precedence: bulk", "bounce: null
	// return path", "bounce: multipart/report".
	Auto string

	// Warnings lists what was recovered from (an unknown charset decoded as
	// UTF-8 with replacement, an attachment over the size limit left out).
	Warnings []string

	Size int // bytes of the raw message

	// raw and opts are where EachAttachment (with ParseOptions.DataLater)
	// reads the attachments again, and WriteFullText the bodies listed in
	// cutText, set when FullText holds only the start of the text.
	raw     []byte
	opts    ParseOptions
	cutText []bodyLeaf
}

// Part is an attachment or an inline image.
type Part struct {
	Filename    string
	ContentType string
	ContentID   string // for inline images referenced from HTML, without <>
	Inline      bool
	Size        int64 // decoded size, also when Data was left out
	// TooLarge says Size is over ParseOptions.MaxAttachmentBytes: the part
	// is listed, never stored.
	TooLarge bool
	Data     []byte // nil when TooLarge, or parsed with ParseOptions.DataLater
}
