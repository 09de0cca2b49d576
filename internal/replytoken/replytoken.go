// Package replytoken signs and checks the ticket token carried in reply
// addresses (support+TOKEN@example.com). Inbound mail and outbound mail both
// use it, and neither may import the other, hence a package of its own.
//
// A token is the ticket's 12-byte id followed by the first 10 bytes of an
// HMAC-SHA256 of that id, in lowercase unpadded base32: 36 characters that
// survive mail systems which lowercase local parts. Without the secret a
// token cannot be forged, and ticket ids cannot be guessed into one.
package replytoken

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

const macLen = 10

var enc = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// ErrInvalid: the token is malformed or its signature does not match.
var ErrInvalid = errors.New("invalid reply token")

// Signer makes and checks tokens with one secret.
type Signer struct{ secret []byte }

// New returns a Signer; the secret must be kept stable across restarts, or
// replies to earlier mail stop threading by token.
func New(secret []byte) *Signer { return &Signer{secret: append([]byte(nil), secret...)} }

func (s *Signer) mac(id bson.ObjectID) []byte {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte("ticketd-reply-token-v1:"))
	m.Write(id[:])
	return m.Sum(nil)[:macLen]
}

// tagLen is 128 bits: a tag cannot be guessed.
const tagLen = 16

// Tag is an HMAC of id under purpose, in the token alphabet (26
// characters): what only the holder of the secret can compute, the same
// every time, for an id that must prove nothing by itself yet stay stable
// (an outgoing Message-ID, resent under the same id). purpose keeps tags
// apart from each other and from reply tokens.
func (s *Signer) Tag(purpose string, id bson.ObjectID) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte("ticketd-tag-v1:" + purpose + ":"))
	m.Write(id[:])
	return enc.EncodeToString(m.Sum(nil)[:tagLen])
}

// Token returns the token for a ticket.
func (s *Signer) Token(ticket bson.ObjectID) string {
	return enc.EncodeToString(append(ticket[:], s.mac(ticket)...))
}

// Verify returns the ticket a token names, or ErrInvalid.
func (s *Signer) Verify(token string) (bson.ObjectID, error) {
	raw, err := enc.DecodeString(strings.ToLower(token))
	if err != nil || len(raw) != 12+macLen {
		return bson.NilObjectID, ErrInvalid
	}
	var id bson.ObjectID
	copy(id[:], raw[:12])
	if !hmac.Equal(raw[12:], s.mac(id)) {
		return bson.NilObjectID, ErrInvalid
	}
	return id, nil
}

// Address puts a token into a mailbox address: support@example.com becomes
// support+TOKEN@example.com.
func (s *Signer) Address(base string, ticket bson.ObjectID) string {
	local, domain, ok := strings.Cut(base, "@")
	if !ok {
		return base
	}
	if i := strings.IndexByte(local, '+'); i >= 0 {
		local = local[:i]
	}
	return local + "+" + s.Token(ticket) + "@" + domain
}

// FromAddress finds and verifies the token in an address whose mailbox is
// base's (support+TOKEN@example.com against support@example.com). It
// reports found=false when the address carries no token for this mailbox,
// and ErrInvalid when it carries one that does not verify.
func (s *Signer) FromAddress(base, addr string) (ticket bson.ObjectID, found bool, err error) {
	bl, bd, ok := strings.Cut(strings.ToLower(base), "@")
	if !ok {
		return bson.NilObjectID, false, nil
	}
	al, ad, ok := strings.Cut(strings.ToLower(strings.TrimSpace(addr)), "@")
	if !ok || ad != bd {
		return bson.NilObjectID, false, nil
	}
	tag, ok := strings.CutPrefix(al, bl+"+")
	if !ok || tag == "" {
		return bson.NilObjectID, false, nil
	}
	id, err := s.Verify(tag)
	return id, true, err
}
