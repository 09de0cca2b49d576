package replytoken

import (
	"errors"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestRoundTripAndForgery(t *testing.T) {
	s := New([]byte("secret"))
	id := bson.NewObjectID()
	addr := s.Address("support@example.com", id)
	if !strings.HasPrefix(addr, "support+") || !strings.HasSuffix(addr, "@example.com") {
		t.Fatalf("address %q", addr)
	}
	got, found, err := s.FromAddress("support@example.com", strings.ToUpper(addr))
	if err != nil || !found || got != id {
		t.Fatalf("verify own token (uppercased): %v %v %v", got, found, err)
	}

	// Another ticket's id with this ticket's signature.
	tok := s.Token(id)
	other := bson.NewObjectID()
	forged := enc.EncodeToString(other[:]) + tok[len(tok)-16:]
	if _, err := s.Verify(forged); !errors.Is(err, ErrInvalid) {
		t.Errorf("forged token accepted: %v", err)
	}
	// Same id, other secret.
	if _, err := New([]byte("other")).Verify(tok); !errors.Is(err, ErrInvalid) {
		t.Errorf("token from another secret accepted: %v", err)
	}
	for _, bad := range []string{"", "x", tok[:len(tok)-1], tok + "a", "!!!!"} {
		if _, err := s.Verify(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Verify(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	if _, found, _ := s.FromAddress("support@example.com", "support@example.com"); found {
		t.Error("plain address has no token")
	}
	if _, found, _ := s.FromAddress("support@example.com", "support+"+tok+"@elsewhere.com"); found {
		t.Error("token on another domain must not count")
	}
	if _, found, err := s.FromAddress("support@example.com", "support+garbage@example.com"); !found || !errors.Is(err, ErrInvalid) {
		t.Errorf("garbage tag: found=%v err=%v", found, err)
	}
}

func TestTag(t *testing.T) {
	s := New([]byte("secret"))
	id := bson.NewObjectID()
	tag := s.Tag("message-id", id)
	if len(tag) != 26 || strings.Trim(tag, "abcdefghijklmnopqrstuvwxyz234567") != "" || s.Tag("message-id", id) != tag {
		t.Fatalf("tag %q: want 26 stable characters of the token alphabet", tag)
	}
	other := id
	other[11]++
	for what, x := range map[string]string{
		"another id":      s.Tag("message-id", other),
		"another purpose": s.Tag("other", id),
		"another secret":  New([]byte("other")).Tag("message-id", id),
	} {
		if x == tag {
			t.Errorf("%s gives the same tag %q", what, tag)
		}
	}
	if strings.Contains(s.Token(id), tag[:16]) {
		t.Errorf("the tag repeats the reply token's signature")
	}
}
