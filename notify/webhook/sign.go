package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Signing follows the Standard Webhooks specification
// (https://www.standardwebhooks.com): the secret is "whsec_" and the
// base64 of the key; each request carries webhook-id, webhook-timestamp
// (Unix seconds of the attempt) and webhook-signature, which is "v1,"
// and the base64 HMAC-SHA256, under the key, of "id.timestamp.body".
// Several space-separated signatures may be sent (during a key
// rotation); one match is enough.
//
// Written here with crypto/hmac rather than taken from the official Go
// library (github.com/standard-webhooks/standard-webhooks/libraries):
// that module is not served by our module proxy, and the algorithm is
// these thirty lines. A receiver may copy Verify as it is.

// The headers of a signed request.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix starts every secret.
const SecretPrefix = "whsec_"

// The key lengths the specification recommends.
const (
	minKeyBytes = 24
	maxKeyBytes = 64
)

// DefaultTolerance is how far a request's timestamp may be from the
// receiver's clock; an older request is refused as a possible replay.
const DefaultTolerance = 5 * time.Minute

// Why Verify refuses a request.
var (
	ErrMissingHeaders = errors.New("webhook: missing webhook-id, webhook-timestamp or webhook-signature header")
	ErrTimestamp      = errors.New("webhook: timestamp outside the tolerance (a replay, or a clock far off)")
	ErrSignature      = errors.New("webhook: no matching signature (wrong secret, or the body was changed)")
)

// DecodeSecret returns the key of a "whsec_" secret.
func DecodeSecret(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok {
		return nil, fmt.Errorf("webhook secret: must start with %s", SecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("webhook secret: the part after %s is not base64: %w", SecretPrefix, err)
	}
	if len(key) < minKeyBytes || len(key) > maxKeyBytes {
		return nil, fmt.Errorf("webhook secret: the key is %d bytes, want %d to %d", len(key), minKeyBytes, maxKeyBytes)
	}
	return key, nil
}

// Sign returns the webhook-signature value ("v1,<base64>") of a request.
func Sign(key []byte, id string, ts time.Time, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + strconv.FormatInt(ts.Unix(), 10) + "."))
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Verify checks a request signed the Standard Webhooks way: that its
// timestamp is within tolerance of now (either side) and that one of its
// v1 signatures is the HMAC of "id.timestamp.body" under secret ("whsec_"
// and the base64 key). Verify the raw body as received, before parsing
// it. A receiver should also remember webhook-id values it has processed:
// a retry sends the same id.
func Verify(secret string, header http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	key, err := DecodeSecret(secret)
	if err != nil {
		return err
	}
	id, tsText, sigs := header.Get(HeaderID), header.Get(HeaderTimestamp), header.Get(HeaderSignature)
	if id == "" || tsText == "" || sigs == "" {
		return ErrMissingHeaders
	}
	sec, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q is not Unix seconds", ErrTimestamp, tsText)
	}
	ts := time.Unix(sec, 0)
	if d := now.Sub(ts); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: %s is %s from now", ErrTimestamp, ts.UTC().Format(time.RFC3339), d.Round(time.Second))
	}
	want := []byte(Sign(key, id, ts, body))
	for _, s := range strings.Fields(sigs) {
		if hmac.Equal([]byte(s), want) {
			return nil
		}
	}
	return ErrSignature
}
