package store_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/store"
	"github.com/ticketd/ticketd/store/storetest"
)

// filledEmbedded is an embedded store (whatever MONGODB_URI says: it is
// what one moves away from) with a document in every collection.
func filledEmbedded(t *testing.T) *store.Store {
	t.Helper()
	ctx := context.Background()
	s, err := store.Open(ctx, store.OpenOptions{DataDir: t.TempDir(), Database: "ticketd"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	join(t, s, "email")
	cust, _, err := s.FindOrCreateCustomer(ctx, "ann@example.com", "Ann", "team-a")
	must(err)
	ag, err := s.FindOrCreateAgent(ctx, "bob@example.com", "Bob", "U123")
	must(err)
	by := store.Actor{ID: ag.ID, Type: store.CreatorAdmin}
	for i := range 3 {
		tk, _, err := s.CreateTicket(ctx, store.NewTicket{
			Creator: store.Actor{ID: cust.ID, Type: store.CreatorCustomer}, TeamID: "team-a", Category: "Billing",
			Subject: fmt.Sprintf("Invoice %d <&> é 😀", i), Description: "line one\nline \"two\"\t\u0001",
			Source: store.SourceEmail, SourceKey: fmt.Sprintf("email:<m%d@example.com>", i),
		})
		must(err)
		must(s.AddMessageID(ctx, tk.ID, fmt.Sprintf("<m%d@example.com>", i)))
		_, _, err = s.AddResponse(ctx, tk.ID, store.AllTickets, store.NewResponse{Author: by, Description: "We are on it."})
		must(err)
		high := store.PriorityHigh
		_, err = s.UpdateTicket(ctx, tk.ID, store.AllTickets, store.TicketUpdate{Priority: &high}, by)
		must(err)
		data := []byte{byte(i), 0, 0xff}
		if i == 0 {
			data = bytes.Repeat(data, store.ChunkBytes/3+1) // two pieces
		}
		must(s.WriteAttachment(ctx, store.Attachment{ID: bson.NewObjectID(), Filename: "scan.pdf", ContentType: "application/pdf"}, tk.ID, bytes.NewReader(data)))
	}
	_, err = s.RelayAll(ctx)
	must(err)
	d, err := s.ClaimDelivery(ctx, "email", time.Minute)
	must(err)
	must(s.CompleteDelivery(ctx, d))
	d, err = s.ClaimDelivery(ctx, "email", time.Minute)
	must(err)
	must(s.KillDelivery(ctx, d, errors.New("mailbox unavailable")))
	must(s.SaveMailboxState(ctx, store.MailboxState{ID: "support/INBOX", UIDValidity: 7, LastUID: 42}))
	must(s.Quarantine(ctx, store.QuarantinedMail{ID: "support/INBOX/7/9", Mailbox: "support/INBOX", UID: 9, Reason: "unparsable", Raw: []byte("\x00\x01not mail"), Size: 10, ReceivedAt: time.Now()}))
	must(s.RecordIgnored(ctx, store.IgnoredMail{ID: "email:<auto@x>", Mailbox: "support/INBOX", Reason: "auto-reply"}))
	must(s.RecordEvent(ctx, "slack:Ev123"))

	// Every BSON type the embedded server keeps, where no ticketd type
	// happens to use it.
	_, err = s.Database().Collection("ignored").InsertOne(ctx, bson.D{
		{Key: "_id", Value: bson.NewObjectID()},
		{Key: "int32", Value: int32(7)}, {Key: "int64", Value: int64(7)}, {Key: "bigInt64", Value: int64(math.MaxInt64)},
		{Key: "double", Value: 7.0}, {Key: "fraction", Value: 0.1}, {Key: "negative", Value: -2.5e-300},
		{Key: "binary", Value: bson.Binary{Subtype: 0, Data: []byte{0, 1, 2, 0xff}}},
		{Key: "uuid", Value: bson.Binary{Subtype: 4, Data: bytes.Repeat([]byte{0xab}, 16)}},
		{Key: "date", Value: bson.DateTime(1764590400123)}, {Key: "before1970", Value: bson.DateTime(-86400000)},
		{Key: "timestamp", Value: bson.Timestamp{T: 1764590400, I: 3}},
		{Key: "regex", Value: bson.Regex{Pattern: "^a.*b$", Options: "i"}},
		{Key: "null", Value: nil}, {Key: "true", Value: true}, {Key: "empty", Value: ""},
		{Key: "nested", Value: bson.D{{Key: "z", Value: 1}, {Key: "a", Value: bson.A{int32(1), int64(2), "three", bson.D{}}}}},
	})
	must(err)
	return s
}

// rawDocs is every document of a collection as stored, by _id.
func rawDocs(t *testing.T, s *store.Store, col string) map[string]bson.Raw {
	t.Helper()
	ctx := context.Background()
	cur, err := s.Database().Collection(col).Find(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	defer cur.Close(ctx)
	out := map[string]bson.Raw{}
	for cur.Next(ctx) {
		out[cur.Current.Lookup("_id").String()] = bytes.Clone(cur.Current)
	}
	if err := cur.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// documentLines is an export without its header, which names the database.
func documentLines(t *testing.T, export []byte) string {
	t.Helper()
	_, rest, ok := bytes.Cut(export, []byte("\n"))
	if !ok {
		t.Fatalf("export without lines: %q", export)
	}
	return string(rest)
}

// exported is a filled embedded store and its export, shared by the
// subtests, which only read them.
type exported struct {
	src  *store.Store
	sent store.Transfer
	exp  []byte
}

// TestExportImport fills one embedded store and exports it once; each
// subtest imports that export into a fresh store of its own.
func TestExportImport(t *testing.T) {
	src := filledEmbedded(t)
	var buf bytes.Buffer
	sent, err := src.Export(context.Background(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	e := exported{src: src, sent: sent, exp: buf.Bytes()}
	t.Run("round trip", func(t *testing.T) { testRoundTrip(t, e) })
	t.Run("lines are one document each", func(t *testing.T) { testLinesAreOneDocumentEach(t, e) })
	t.Run("refuses a non-empty store unless replacing", func(t *testing.T) { testRefusesNonEmpty(t, e) })
	t.Run("refuses bad input wholly", func(t *testing.T) { testRefusesBadInput(t, e) })
	t.Run("stops at a refused document", func(t *testing.T) { testStopsAtARefusedDocument(t, e) })
}

// An embedded store exported and imported into a fresh store (a real
// MongoDB when MONGODB_URI is set) comes back byte for byte, and works.
func testRoundTrip(t *testing.T, e exported) {
	ctx := context.Background()
	src, sent := e.src, e.sent
	exp := bytes.NewBuffer(e.exp)
	// The collections this test fills; one added to the store later is
	// exported all the same, and named here until the test fills it.
	filled := []string{"tickets", "customers", "agents", "counters", "keys", "outbox", "mailboxes",
		"attachments", "attachmentChunks", "quarantine", "ignored", "deployment", "daemons"}
	for _, col := range store.Collections() {
		switch {
		case !slices.Contains(filled, col):
			t.Logf("the round trip does not fill collection %s", col)
		case sent.PerCollection[col] == 0:
			t.Errorf("the filled store has no %s document", col)
		}
	}
	if checked, err := store.CheckExport(bytes.NewReader(e.exp)); err != nil || checked.Documents != sent.Documents {
		t.Fatalf("check: %+v %v, exported %d", checked, err, sent.Documents)
	}

	dst := storetest.Open(t)
	got, err := dst.Import(ctx, bytes.NewReader(exp.Bytes()), store.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Documents != sent.Documents {
		t.Errorf("imported %d documents, exported %d", got.Documents, sent.Documents)
	}
	for _, col := range store.Collections() {
		a, b := rawDocs(t, src, col), rawDocs(t, dst, col)
		if len(a) != len(b) {
			t.Errorf("%s: %d documents, %d after the round trip", col, len(a), len(b))
		}
		for id, doc := range a {
			if !bytes.Equal(doc, b[id]) {
				t.Errorf("%s %s changed:\n was %s\n now %s", col, id, doc, b[id])
			}
		}
	}
	var again bytes.Buffer
	if _, err := dst.Export(ctx, &again); err != nil {
		t.Fatal(err)
	}
	if documentLines(t, exp.Bytes()) != documentLines(t, again.Bytes()) {
		t.Error("exporting the imported store gives other lines")
	}

	// The imported store is usable, not just equal.
	list, total, err := dst.ListTickets(ctx, store.AllTickets, store.ListQuery{})
	if err != nil || total != 3 || len(list) != 3 {
		t.Fatalf("list after import: %d of %d, %v", len(list), total, err)
	}
	full, err := dst.Ticket(ctx, list[0].ID, store.AllTickets)
	if err != nil || len(full.Response) != 1 || full.Priority != store.PriorityHigh {
		t.Errorf("an imported ticket: %+v %v", full, err)
	}
}

// Importing again needs Replace, and then changes nothing.
func testRefusesNonEmpty(t *testing.T, e exported) {
	ctx := context.Background()
	exp := bytes.NewBuffer(e.exp)
	dst := storetest.Open(t)
	if _, err := dst.Import(ctx, bytes.NewReader(exp.Bytes()), store.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	before := rawDocs(t, dst, "tickets")
	if _, err := dst.Import(ctx, bytes.NewReader(exp.Bytes()), store.ImportOptions{}); !errors.Is(err, store.ErrNotEmpty) {
		t.Fatalf("a second import: %v, want ErrNotEmpty", err)
	}
	if _, err := dst.Import(ctx, bytes.NewReader(exp.Bytes()), store.ImportOptions{Replace: true}); err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	if _, err := dst.Export(ctx, &again); err != nil {
		t.Fatal(err)
	}
	if documentLines(t, exp.Bytes()) != documentLines(t, again.Bytes()) {
		t.Error("importing twice changed the store")
	}
	if after := rawDocs(t, dst, "tickets"); len(after) != len(before) {
		t.Errorf("%d tickets, %d after importing again", len(before), len(after))
	}
}

// Bad input is refused with its line number, and nothing is written.
func testRefusesBadInput(t *testing.T, e exported) {
	ctx := context.Background()
	exp := bytes.NewBuffer(e.exp)
	lines := strings.SplitAfter(strings.TrimSuffix(exp.String(), "\n"), "\n")
	n := len(lines)
	with := func(i int, line string) string {
		l := append([]string(nil), lines...)
		l[i-1] = line
		return strings.Join(l, "")
	}
	dst := storetest.Open(t)
	for _, c := range []struct {
		name, input string
		line        int
		says        string
	}{
		{"broken JSON", with(n-2, `{"collection":"tickets","document":{"_id":`+"\n"), n - 2, "not Extended JSON"},
		{"unknown collection", with(5, `{"collection":"users","document":{"_id":1}}`+"\n"), 5, `unknown collection "users"`},
		{"no _id", with(4, `{"collection":"tickets","document":{"subject":"x"}}`+"\n"), 4, "without _id"},
		{"cut off", strings.Join(lines[:n-1], ""), n - 1, "cut off"},
		{"a line lost", strings.Join(append(append([]string(nil), lines[:3]...), lines[4:]...), ""), n - 1, "closing line counts"},
		{"not an export", `{"_id":{"$oid":"0123456789abcdef01234567"}}` + "\n", 1, "not a ticketd export"},
		{"another version", `{"ticketd":"export","version":2}` + "\n", 1, "version 2"},
		{"empty", "", 0, "empty"},
		{"after the end", exp.String() + `{"collection":"tickets","document":{"_id":1}}` + "\n", n + 1, "after the closing line"},
	} {
		_, err := dst.Import(ctx, strings.NewReader(c.input), store.ImportOptions{})
		var ie *store.ImportError
		if !errors.As(err, &ie) || ie.Line != c.line || !strings.Contains(err.Error(), c.says) || !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: %v, want line %d saying %q", c.name, err, c.line, c.says)
		}
		for _, col := range store.Collections() {
			if docs := rawDocs(t, dst, col); len(docs) != 0 {
				t.Fatalf("%s: %d %s documents written", c.name, len(docs), col)
			}
		}
	}
}

// Export holds one document at a time: its lines are bounded by the
// largest document, not by the database.
func testLinesAreOneDocumentEach(t *testing.T, e exported) {
	sent := e.sent
	sc := bufio.NewScanner(bytes.NewReader(e.exp))
	sc.Buffer(nil, store.MaxExportLine)
	lines := 0
	for sc.Scan() {
		lines++
		if len(sc.Bytes()) > store.ChunkBytes*2 {
			t.Errorf("line %d is %d bytes", lines, len(sc.Bytes()))
		}
	}
	if want := int(sent.Documents) + 2; lines != want {
		t.Errorf("%d lines for %d documents, want %d", lines, sent.Documents, want)
	}
}

// A document the database refuses while writing stops the import at its
// line, saying how much was written; nothing is skipped silently.
func testStopsAtARefusedDocument(t *testing.T, e exported) {
	ctx := context.Background()
	exp := bytes.NewBuffer(e.exp)
	dst := storetest.Open(t)
	// Another ticket already holds the second exported ticket's source
	// key, which is unique.
	if _, _, err := dst.CreateTicket(ctx, store.NewTicket{Creator: alice, TeamID: "t", Subject: "s", Source: store.SourceEmail, SourceKey: "email:<m1@example.com>"}); err != nil {
		t.Fatal(err)
	}
	_, err := dst.Import(ctx, bytes.NewReader(exp.Bytes()), store.ImportOptions{Replace: true})
	var ie *store.ImportError
	if !errors.As(err, &ie) || ie.Line != 3 || !strings.Contains(err.Error(), "the 1 documents before this line are written") {
		t.Fatalf("import over a conflicting ticket: %v, want line 3 (the second ticket) refused", err)
	}
	if n, _ := dst.Database().Collection("tickets").CountDocuments(ctx, bson.D{}); n != 2 {
		t.Errorf("%d tickets after the refused import, want the one before and the first imported", n)
	}

	// Into an empty store: the file itself has two tickets with one source
	// key; the first two tickets are written by the batch, the third is
	// refused.
	twice := bytes.Replace(exp.Bytes(), []byte(`"sourceKey":"email:<m2@example.com>"`), []byte(`"sourceKey":"email:<m0@example.com>"`), 1)
	if bytes.Equal(twice, exp.Bytes()) {
		t.Fatal("the export has no third source key to change")
	}
	empty := storetest.Open(t)
	_, err = empty.Import(ctx, bytes.NewReader(twice), store.ImportOptions{})
	if !errors.As(err, &ie) || ie.Line != 4 || !strings.Contains(err.Error(), "the 2 documents before this line are written") {
		t.Fatalf("import of a file with a repeated source key: %v, want line 4 refused", err)
	}
	if n, _ := empty.Database().Collection("tickets").CountDocuments(ctx, bson.D{}); n != 2 {
		t.Errorf("%d tickets after the refused import, want the 2 before the refused one", n)
	}
}
