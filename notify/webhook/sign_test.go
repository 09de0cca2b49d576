package webhook

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The example of the Standard Webhooks specification and its libraries'
// tests: the same secret, id, timestamp and body give the same signature,
// so any receiver built on their libraries verifies ours.
const (
	specSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	specID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	specTimestamp = 1614265330
	specBody      = `{"test": 2432232314}`
	specSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func specHeader(sig string) http.Header {
	h := http.Header{}
	h.Set(HeaderID, specID)
	h.Set(HeaderTimestamp, "1614265330")
	h.Set(HeaderSignature, sig)
	return h
}

func TestSignMatchesTheSpecification(t *testing.T) {
	key, err := DecodeSecret(specSecret)
	if err != nil {
		t.Fatal(err)
	}
	if got := Sign(key, specID, time.Unix(specTimestamp, 0), []byte(specBody)); got != specSignature {
		t.Fatalf("Sign = %s, want %s", got, specSignature)
	}
}

func TestVerify(t *testing.T) {
	at := time.Unix(specTimestamp, 0)
	otherSecret := "whsec_" + strings.Repeat("QUJD", 8) // 24 bytes of "ABC..."
	cases := []struct {
		name   string
		secret string
		header http.Header
		body   string
		now    time.Time
		want   error
	}{
		{"valid", specSecret, specHeader(specSignature), specBody, at, nil},
		{"valid a little later", specSecret, specHeader(specSignature), specBody, at.Add(4 * time.Minute), nil},
		{"valid with the receiver's clock behind", specSecret, specHeader(specSignature), specBody, at.Add(-4 * time.Minute), nil},
		{"one of several signatures (key rotation)", specSecret, specHeader("v1,bm90IHRoaXMgb25l " + specSignature), specBody, at, nil},
		{"tampered body", specSecret, specHeader(specSignature), `{"test": 2432232315}`, at, ErrSignature},
		{"wrong secret", otherSecret, specHeader(specSignature), specBody, at, ErrSignature},
		{"old timestamp", specSecret, specHeader(specSignature), specBody, at.Add(6 * time.Minute), ErrTimestamp},
		{"timestamp from the future", specSecret, specHeader(specSignature), specBody, at.Add(-6 * time.Minute), ErrTimestamp},
		{"unversioned signature", specSecret, specHeader(strings.TrimPrefix(specSignature, "v1,")), specBody, at, ErrSignature},
		{"no signature", specSecret, specHeader(""), specBody, at, ErrMissingHeaders},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Verify(c.secret, c.header, []byte(c.body), c.now, DefaultTolerance)
			if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, c.want)
			}
		})
	}
	// A different id or timestamp is signed differently: the signature
	// covers both, so neither can be replayed onto another request.
	h := specHeader(specSignature)
	h.Set(HeaderID, "msg_other")
	if err := Verify(specSecret, h, []byte(specBody), at, DefaultTolerance); !errors.Is(err, ErrSignature) {
		t.Fatalf("another id: %v", err)
	}
	h = specHeader(specSignature)
	h.Set(HeaderTimestamp, "1614265331")
	if err := Verify(specSecret, h, []byte(specBody), at, DefaultTolerance); !errors.Is(err, ErrSignature) {
		t.Fatalf("another timestamp: %v", err)
	}
}

func TestDecodeSecretRefusesBadSecrets(t *testing.T) {
	for _, s := range []string{
		"", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!", "whsec_c2hvcnQ=",
		"whsec_" + strings.Repeat("QUJD", 22), // 66 bytes
	} {
		if _, err := DecodeSecret(s); err == nil {
			t.Errorf("DecodeSecret(%q) accepted it", s)
		}
	}
}
