package store_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ticketd/ticketd/store"
	"github.com/ticketd/ticketd/store/storetest"
)

// failingReader fails the test's write if it is read at all.
type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("read again") }

// A file is stored from a stream in pieces and read back whole; writing it
// again neither reads the stream nor stores anything twice.
func TestWriteAttachmentInPieces(t *testing.T) {
	s := storetest.Open(t)
	ctx := context.Background()
	tk := newTicket(t, s, "team-a", "Files")
	data := make([]byte, 2*store.ChunkBytes+123)
	for i := range data {
		data[i] = byte(i * 7)
	}
	meta := store.Attachment{ID: bson.NewObjectID(), Filename: "big.bin", ContentType: "application/octet-stream"}
	if err := s.WriteAttachment(ctx, meta, tk.ID, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteAttachment(ctx, meta, tk.ID, failingReader{}); err != nil {
		t.Fatalf("writing a stored file again: %v", err)
	}
	f, err := s.Attachment(ctx, meta.ID, store.AllTickets)
	if err != nil {
		t.Fatal(err)
	}
	if f.Chunks != 3 || f.Size != int64(len(data)) || !bytes.Equal(f.Data, data) || f.Filename != "big.bin" {
		t.Errorf("read back %d pieces, size %d, %d bytes equal=%v", f.Chunks, f.Size, len(f.Data), bytes.Equal(f.Data, data))
	}
	empty := store.Attachment{ID: bson.NewObjectID(), Filename: "empty.txt"}
	if err := s.WriteAttachment(ctx, empty, tk.ID, bytes.NewReader(nil)); err != nil {
		t.Fatal(err)
	}
	if f, err := s.Attachment(ctx, empty.ID, store.AllTickets); err != nil || f.Size != 0 || len(f.Data) != 0 {
		t.Errorf("empty file: %+v %v", f, err)
	}
	if _, err := s.Attachment(ctx, meta.ID, store.TeamScope("team-b")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("another team reads the file: %v", err)
	}
}

// A file of one piece, like a mail's whole text, is stored in one write:
// its bytes go with its metadata, not in a piece of their own.
func TestWriteSmallAttachmentInOneWrite(t *testing.T) {
	s := storetest.Open(t)
	ctx := context.Background()
	tk := newTicket(t, s, "team-a", "Files")
	data := bytes.Repeat([]byte("the whole text of a mail\n"), 100)
	meta := store.Attachment{ID: bson.NewObjectID(), Filename: "original-message.txt", ContentType: "text/plain; charset=utf-8"}
	before := s.CommandCounts()
	if err := s.WriteAttachment(ctx, meta, tk.ID, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	after := s.CommandCounts()
	if n := after["insert"] - before["insert"]; n != 1 {
		t.Errorf("%d inserts for a file of one piece, want 1", n)
	}
	if err := s.WriteAttachment(ctx, meta, tk.ID, failingReader{}); err != nil {
		t.Fatalf("writing a stored file again: %v", err)
	}
	f, err := s.Attachment(ctx, meta.ID, store.AllTickets)
	if err != nil {
		t.Fatal(err)
	}
	if f.Size != int64(len(data)) || !bytes.Equal(f.Data, data) || f.Filename != "original-message.txt" {
		t.Errorf("read back size %d, %d bytes, equal=%v", f.Size, len(f.Data), bytes.Equal(f.Data, data))
	}
}
