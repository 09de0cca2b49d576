package store

import (
	"context"
	"io"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/valyala/fastjson"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// A listing decodes the stored documents itself (sjson.go); it must give
// every field exactly as the database driver does, for tickets with every
// optional field set and texts that look like JSON.
func TestListingsDecodeTicketsLikeTheDriver(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, OpenOptions{DataDir: t.TempDir(), Database: "decode", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	cust := Actor{ID: bson.NewObjectID(), Type: CreatorCustomer}
	admin := Actor{ID: bson.NewObjectID(), Type: CreatorAdmin}
	texts := []string{`plain`, `{"$s": {"p": {}}, "x": "}"}`, `quote " and \ backslash`, "tab\tnew\nline \x01 é 🎉 \u2028", `[]{}[`}
	for i, text := range texts {
		tk, _, err := s.CreateTicket(ctx, NewTicket{Creator: cust, TeamID: "t", Subject: "subject " + text, Description: text,
			SourceKey: "key-" + text, SourceHash: "hash"})
		if err != nil {
			t.Fatal(err)
		}
		att := []Attachment{{ID: bson.NewObjectID(), Filename: text + ".pdf", ContentType: "application/pdf", Size: 1234, Inline: i%2 == 0}}
		if _, _, err := s.AddResponse(ctx, tk.ID, AllTickets, NewResponse{Author: admin, Description: "note " + text, Internal: true, Attachments: att}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.AddResponse(ctx, tk.ID, AllTickets, NewResponse{Author: cust, Description: text, Source: SourceEmail, SourceKey: "<m" + text + "@x>"}); err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 {
			continue // the optional fields stay unset
		}
		at := time.Date(2026, 11, 30, 12, 0, 0, 123_000_000, time.UTC)
		_, err = s.tickets.UpdateOne(ctx, bson.D{{Key: "_id", Value: tk.ID}}, bson.D{{Key: "$set", Value: bson.D{
			{Key: "assigneeId", Value: admin.ID}, {Key: "attachments", Value: att}, {Key: "messageIds", Value: []string{"<a@x>", "<b@x>"}},
			{Key: "threads", Value: []ThreadRef{{Kind: "slack", Key: "C1/123.456"}}},
			{Key: "firstResponse", Value: FirstResponse{DueAt: &at, RespondedAt: &at}}, {Key: "nothingWeKnow", Value: bson.D{{Key: "a", Value: 1.5}}},
		}}})
		if err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			if _, err := s.DeleteTicket(ctx, tk.ID, AllTickets, admin); err != nil {
				t.Fatal(err)
			}
		}
	}
	// No responses, and arrays emptied.
	bare, _, err := s.CreateTicket(ctx, NewTicket{Creator: cust, TeamID: "t", Subject: "bare"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.tickets.UpdateOne(ctx, bson.D{{Key: "_id", Value: bare.ID}}, bson.D{{Key: "$set", Value: bson.D{
		{Key: "messageIds", Value: bson.A{}}, {Key: "threads", Value: nil}}}}); err != nil {
		t.Fatal(err)
	}
	listed, total, err := s.ListTickets(ctx, AllTickets, ListQuery{Limit: 100})
	if err != nil || total != int64(len(texts)) {
		t.Fatalf("listed %d (%v), want %d", total, err, len(texts))
	}
	ids := []string{}
	for _, l := range listed {
		ids = append(ids, l.ID.Hex())
	}
	tx, err := s.index.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	cur, err := s.tickets.Find(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	var all []Ticket
	if err := cur.All(ctx, &all); err != nil {
		t.Fatal(err)
	}
	for _, want := range all {
		want.Logs, want.Outbox = nil, nil
		got, err := s.index.read(ctx, tx, []string{want.ID.Hex()})
		if err != nil || len(got) != 1 {
			t.Fatalf("read %s: %v, %d tickets", want.ID.Hex(), err, len(got))
		}
		if !reflect.DeepEqual(got[0], want) {
			t.Errorf("ticket %q decoded\n as %+v\nwant %+v", want.Description, got[0], want)
		}
	}
}

// A ticket stored in a form ticketd does not write (imported with other
// types) is still listed as the driver decodes it: the listing falls back to
// the database server rather than fail or guess.
func TestListingsOfTicketsStoredInOtherForms(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, OpenOptions{DataDir: t.TempDir(), Database: "forms", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	base := func(subject string) bson.D {
		return bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "subject", Value: subject}, {Key: "status", Value: "open"},
			{Key: "teamId", Value: "t"}, {Key: "isDelete", Value: false}, {Key: "createdAt", Value: time.Now()}}
	}
	for _, doc := range []bson.D{
		append(base("timestamp"), bson.E{Key: "updatedAt", Value: bson.Timestamp{T: 1_700_000_000, I: 1}}),
		append(base("null in an array"), bson.E{Key: "updatedAt", Value: time.Now()}, bson.E{Key: "messageIds", Value: bson.A{nil, "<x@y>"}}),
	} {
		if _, err := s.tickets.InsertOne(ctx, doc); err != nil {
			t.Fatal(err)
		}
		id := doc[0].Value.(bson.ObjectID)
		var want Ticket
		if err := s.tickets.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&want); err != nil {
			t.Fatal(err)
		}
		listed, _, err := s.ListTickets(ctx, AllTickets, ListQuery{Keyword: want.Subject})
		if err != nil || len(listed) != 1 || !reflect.DeepEqual(listed[0], want) {
			t.Errorf("%q: listed %+v (%v), want %+v", want.Subject, listed, err, want)
		}
	}
}

// A stored document's schema is stepped over whatever its strings hold,
// and a document the server wrote another way is read whole.
func TestDocumentsWithoutTheirSchema(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{`{"$s":{"p":{"a":{"t":"string"}},"$k":["a"]},"a":"x"}`, `{"a":"x"}`},
		{`{"$s":{"p":{"a}\"":{"t":"string"}},"$k":["a}\"","[{"]},"a}\"":"}"}`, `{"a}\"":"}"}`},
		{`{"$s":{"p":{},"$k":[]}}`, `{}`},
		{`{"a":"x","$s":{}}`, `{"a":"x","$s":{}}`},
		{`{"$s":{"p":`, `{"$s":{"p":`},
	} {
		if got := string(withoutSchema([]byte(c.doc))); got != c.want {
			t.Errorf("%s without its schema: %s, want %s", c.doc, got, c.want)
		}
	}
	// Every type of field the decoder cannot take is refused when compiled,
	// not met in a listing.
	if _, err := newSJSONDecoder[struct{ M map[string]int }](); err == nil {
		t.Error("a decoder of a map field compiled")
	}
	d, err := newSJSONDecoder[struct {
		N int32 `bson:"n"`
	}]()
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		N int32 `bson:"n"`
	}
	if err := d.decodeInto(new(fastjson.Parser), []byte(`{"n":3000000000}`), &v); err == nil {
		t.Errorf("an int32 field took 3000000000: %d", v.N)
	}
}
