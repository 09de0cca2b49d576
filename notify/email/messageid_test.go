package email

import (
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/internal/replytoken"
	"github.com/ticketd/ticketd/store"
)

func notifierWithSecret(t *testing.T, secret string) *Adapter {
	t.Helper()
	cfg, err := Options{
		SMTP:   SMTPOptions{Host: "127.0.0.1", Security: SecurityPlain},
		From:   "Example Support <support@example.com>",
		Signer: replytoken.New([]byte(secret)),
	}.compile()
	if err != nil {
		t.Fatal(err)
	}
	return &Adapter{cfg: cfg}
}

// An outgoing Message-ID is the same on every attempt of a delivery, but
// nobody without the secret can make it from the event id: ObjectIDs are a
// timestamp and a counter, so ids sent to other customers were guessable
// from one's own.
func TestMessageIDIsStableButUnguessable(t *testing.T) {
	event := bson.NewObjectID()
	d := &store.Delivery{Event: store.Event{ID: event}}
	ours := notifierWithSecret(t, "our secret")
	id := ours.messageID(d)
	if again := ours.messageID(d); again != id || !ourMessageID.MatchString(id) {
		t.Fatalf("Message-IDs %q then %q, want one id of the form %s", id, again, ourMessageID)
	}
	if other := notifierWithSecret(t, "another secret").messageID(d); other == id {
		t.Errorf("the Message-ID %s does not depend on the secret: anyone who knows the event id can make it", id)
	}
	next := event
	next[11]++ // the neighbouring event of the same process and second
	nextID := ours.messageID(&store.Delivery{Event: store.Event{ID: next}})
	tag := func(s string) string { return strings.Split(strings.TrimSuffix(s, "@example.com>"), ".")[2] }
	if tag(nextID) == tag(id) {
		t.Errorf("neighbouring events share the tag: %s and %s", id, nextID)
	}
}
