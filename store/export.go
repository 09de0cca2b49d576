package store

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// An export is JSON lines: a header, one line per document, and a closing
// line with the count, so that a cut-off file is told from a whole one.
//
//	{"ticketd":"export","version":1,"database":"ticketd"}
//	{"collection":"tickets","document":{"_id":{"$oid":"…"},…}}
//	…
//	{"end":true,"documents":1234}
//
// Documents are MongoDB Extended JSON in its canonical form, which keeps
// every BSON type (ObjectIds, dates, int32 against int64, binary with its
// subtype), so a document imported is the document exported.
const exportVersion = 1

// MaxExportLine bounds one line of an export, and so what Import holds in
// memory at once: a document of MongoDB's largest size (16 MiB) as
// canonical Extended JSON, its binary data in base64, fits.
const MaxExportLine = 64 << 20

type exportHeader struct {
	Ticketd  string `bson:"ticketd"`
	Version  int    `bson:"version"`
	Database string `bson:"database"`
}

type exportEnd struct {
	End       bool  `bson:"end"`
	Documents int64 `bson:"documents"`
}

// Transfer counts the documents of an export or an import.
type Transfer struct {
	Documents     int64
	PerCollection map[string]int64
}

func (t *Transfer) add(col string) {
	if t.PerCollection == nil {
		t.PerCollection = map[string]int64{}
	}
	t.PerCollection[col]++
	t.Documents++
}

// ErrNotEmpty: Import was asked to write into a database that holds
// documents, without ImportOptions.Replace.
var ErrNotEmpty = errors.New("not empty")

// ImportError is a problem with one line of an export.
type ImportError struct {
	Line int
	Err  error
}

func (e *ImportError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *ImportError) Unwrap() error { return e.Err }

// Export writes every document of every collection of the store to w as
// JSON lines, streaming: memory does not grow with the database. It
// refuses a database holding a collection the store does not know, since
// an import could not put it back. Writes that happen while it runs may or
// may not be in the export: stop the daemons first for a consistent copy.
func (s *Store) Export(ctx context.Context, w io.Writer) (Transfer, error) {
	var t Transfer
	names, err := s.db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		return t, fmt.Errorf("export: list collections: %w", classify(err))
	}
	for _, n := range names {
		if !strings.HasPrefix(n, "system.") && !slices.Contains(Collections(), n) {
			return t, fmt.Errorf("export: %w: the database holds collection %q, which ticketd does not know", ErrInvalid, n)
		}
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	if err := writeLine(bw, exportHeader{Ticketd: "export", Version: exportVersion, Database: s.db.Name()}); err != nil {
		return t, fmt.Errorf("export: %w", err)
	}
	for _, col := range Collections() {
		if err := s.exportCollection(ctx, bw, col, &t); err != nil {
			return t, err
		}
	}
	if err := writeLine(bw, exportEnd{End: true, Documents: t.Documents}); err != nil {
		return t, fmt.Errorf("export: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return t, fmt.Errorf("export: %w", err)
	}
	return t, nil
}

func (s *Store) exportCollection(ctx context.Context, w *bufio.Writer, col string, t *Transfer) error {
	cur, err := s.db.Collection(col).Find(ctx, bson.D{}, options.Find().SetBatchSize(100))
	if err != nil {
		return fmt.Errorf("export %s: %w", col, classify(err))
	}
	defer cur.Close(ctx)
	for cur.Next(ctx) {
		doc, err := bson.MarshalExtJSON(cur.Current, true, false)
		if err != nil {
			return fmt.Errorf("export %s: %w", col, err)
		}
		line := make([]byte, 0, len(doc)+len(col)+32)
		line = fmt.Appendf(line, `{"collection":%q,"document":`, col)
		line = append(append(line, doc...), "}\n"...)
		if len(line) > MaxExportLine {
			id, _ := cur.Current.LookupErr("_id")
			return fmt.Errorf("export %s: document %s is %d bytes as JSON, more than an import takes (%d)", col, id, len(line), MaxExportLine)
		}
		if _, err := w.Write(line); err != nil {
			return fmt.Errorf("export %s: %w", col, err)
		}
		t.add(col)
	}
	if err := cur.Err(); err != nil {
		return fmt.Errorf("export %s: %w", col, classify(err))
	}
	return nil
}

func writeLine(w io.Writer, v any) error {
	b, err := bson.MarshalExtJSON(v, true, false)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// exportLine is one parsed line: a document, or the end.
type exportLine struct {
	collection string
	document   bson.Raw
	end        *exportEnd
}

// exportReader reads an export line by line, checking each.
type exportReader struct {
	sc     *bufio.Scanner
	line   int
	header bool
	ended  bool
}

func newExportReader(r io.Reader) *exportReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxExportLine)
	return &exportReader{sc: sc}
}

func (er *exportReader) fail(format string, args ...any) error {
	return &ImportError{Line: er.line, Err: fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)}
}

// next returns the next document line, or io.EOF after a whole export.
func (er *exportReader) next() (exportLine, error) {
	for {
		if !er.sc.Scan() {
			if err := er.sc.Err(); err != nil {
				if errors.Is(err, bufio.ErrTooLong) {
					return exportLine{}, &ImportError{Line: er.line + 1, Err: fmt.Errorf("%w: longer than %d bytes", ErrInvalid, MaxExportLine)}
				}
				return exportLine{}, fmt.Errorf("read the export after line %d: %w", er.line, err)
			}
			switch {
			case !er.header:
				return exportLine{}, er.fail("empty: not a ticketd export")
			case !er.ended:
				return exportLine{}, er.fail(`the export ends without its closing {"end":true} line: it was cut off`)
			}
			return exportLine{}, io.EOF
		}
		er.line++
		text := bytes.TrimSpace(er.sc.Bytes())
		if len(text) == 0 {
			continue
		}
		if er.ended {
			return exportLine{}, er.fail("a line after the closing line")
		}
		var raw bson.Raw
		if err := bson.UnmarshalExtJSON(text, true, &raw); err != nil {
			return exportLine{}, er.fail("not Extended JSON: %v", err)
		}
		if !er.header {
			var h exportHeader
			if err := bson.Unmarshal(raw, &h); err != nil || h.Ticketd != "export" {
				return exportLine{}, er.fail(`not a ticketd export: the first line must be {"ticketd":"export",...}`)
			}
			if h.Version != exportVersion {
				return exportLine{}, er.fail("export format version %d; this ticketd reads version %d", h.Version, exportVersion)
			}
			er.header = true
			continue
		}
		if _, err := raw.LookupErr("end"); err == nil {
			var e exportEnd
			if err := bson.Unmarshal(raw, &e); err != nil || !e.End {
				return exportLine{}, er.fail("a malformed closing line")
			}
			er.ended = true
			return exportLine{end: &e}, nil
		}
		col, ok := raw.Lookup("collection").StringValueOK()
		if !ok {
			return exportLine{}, er.fail(`no "collection" name`)
		}
		if !slices.Contains(Collections(), col) {
			return exportLine{}, er.fail("unknown collection %q (ticketd's are %s)", col, strings.Join(Collections(), ", "))
		}
		doc, ok := raw.Lookup("document").DocumentOK()
		if !ok {
			return exportLine{}, er.fail(`no "document" object`)
		}
		if _, err := doc.LookupErr("_id"); err != nil {
			return exportLine{}, er.fail("a %s document without _id", col)
		}
		return exportLine{collection: col, document: doc}, nil
	}
}

// CheckExport reads a whole export and reports what Import would write,
// or the first bad line; it writes nothing.
func CheckExport(r io.Reader) (Transfer, error) {
	var t Transfer
	er := newExportReader(r)
	for {
		l, err := er.next()
		if errors.Is(err, io.EOF) {
			return t, nil
		}
		if err != nil {
			return t, err
		}
		if l.end != nil {
			if l.end.Documents != t.Documents {
				return t, er.fail("the closing line counts %d documents, the export has %d", l.end.Documents, t.Documents)
			}
			continue
		}
		t.add(l.collection)
	}
}

// ImportOptions says how to import.
type ImportOptions struct {
	// Replace allows a database that already holds documents: each
	// document imported replaces the one with its _id, others are kept, so
	// importing the same export again changes nothing. Without it Import
	// refuses a database that is not empty.
	Replace bool
}

// importBatch is how many documents (or bytes) go to the database in one
// write.
const (
	importBatchDocs  = 256
	importBatchBytes = 8 << 20
)

// Import writes an export made by Export into the store. It reads r twice:
// first every line is checked (CheckExport), and nothing is written if any
// line is bad; then the documents are written in batches. A failure while
// writing (the database refuses a document, or goes away) names the line
// and leaves the documents before it written; with Replace, the same
// import run again completes it.
//
// Import is for a store no daemon is using: a running daemon keeps
// caches that would not see the imported documents.
func (s *Store) Import(ctx context.Context, r io.ReadSeeker, o ImportOptions) (Transfer, error) {
	want, err := CheckExport(r)
	if err != nil {
		return Transfer{}, fmt.Errorf("import: nothing written: %w", err)
	}
	if !o.Replace {
		if err := s.checkEmpty(ctx); err != nil {
			return Transfer{}, err
		}
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return Transfer{}, fmt.Errorf("import: rewind the export: %w", err)
	}
	var (
		done  Transfer
		batch []bson.Raw
		lines []int
		col   string
		size  int
		er    = newExportReader(r)
		flush = func() error {
			if len(batch) == 0 {
				return nil
			}
			models := make([]mongo.WriteModel, len(batch))
			for i, doc := range batch {
				models[i] = importModel(doc, o.Replace)
			}
			c := s.db.Collection(col)
			if _, err := c.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(true)); err != nil {
				// Which document was refused? Not every server says (the
				// embedded one reports every failure at index 0), so the
				// batch is written again one document at a time.
				for i, doc := range batch {
					if err := importOne(ctx, c, doc, o.Replace); err != nil {
						return &ImportError{Line: lines[i], Err: fmt.Errorf("write to %s: %w; the %d documents before this line are written: run the import again with replacing allowed to complete it",
							col, classify(err), done.Documents)}
					}
					done.add(col)
				}
			} else {
				for range batch {
					done.add(col)
				}
			}
			batch, lines, size = batch[:0], lines[:0], 0
			return nil
		}
	)
	for {
		l, err := er.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// The file changed since it was checked.
			return done, fmt.Errorf("import: %w", err)
		}
		if l.end != nil {
			continue
		}
		if l.collection != col || len(batch) == importBatchDocs || size+len(l.document) > importBatchBytes {
			if err := flush(); err != nil {
				return done, fmt.Errorf("import: %w", err)
			}
			col = l.collection
		}
		batch, lines, size = append(batch, l.document), append(lines, er.line), size+len(l.document)
	}
	if err := flush(); err != nil {
		return done, fmt.Errorf("import: %w", err)
	}
	if done.Documents != want.Documents {
		return done, fmt.Errorf("import: wrote %d documents, the export has %d: it changed while being imported", done.Documents, want.Documents)
	}
	s.dropCaches()
	return done, nil
}

func importModel(doc bson.Raw, replace bool) mongo.WriteModel {
	if replace {
		return mongo.NewReplaceOneModel().SetFilter(bson.D{{Key: "_id", Value: doc.Lookup("_id")}}).
			SetReplacement(doc).SetUpsert(true)
	}
	return mongo.NewInsertOneModel().SetDocument(doc)
}

// importOne writes one document. An insert that finds its very document
// already there (written by the batch that failed after it) succeeds.
func importOne(ctx context.Context, c *mongo.Collection, doc bson.Raw, replace bool) error {
	id := doc.Lookup("_id")
	if replace {
		_, err := c.ReplaceOne(ctx, bson.D{{Key: "_id", Value: id}}, doc, options.Replace().SetUpsert(true))
		return err
	}
	_, err := c.InsertOne(ctx, doc)
	if mongo.IsDuplicateKeyError(err) {
		stored, ferr := c.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Raw()
		if ferr == nil && bytes.Equal(stored, doc) {
			return nil
		}
	}
	return err
}

// checkEmpty refuses a database where any of the store's collections holds
// a document.
func (s *Store) checkEmpty(ctx context.Context) error {
	for _, col := range Collections() {
		err := s.db.Collection(col).FindOne(ctx, bson.D{}).Err()
		if errors.Is(err, mongo.ErrNoDocuments) {
			continue
		}
		if err != nil {
			return fmt.Errorf("import: check that %s is empty: %w", col, classify(err))
		}
		return fmt.Errorf("import: the database %s is %w (%s holds documents): import into an empty database, or allow replacing documents with the same _id", s.db.Name(), ErrNotEmpty, col)
	}
	return nil
}

// dropCaches drops what the embedded store keeps in memory about the
// documents, since the import wrote past it. (Its listing index needs
// nothing: SQLite triggers keep it in step with every write.)
func (s *Store) dropCaches() {
	if s.serial {
		s.recent = newRecentTickets(1024)
		s.customersByEmail = newLRU[string, Customer](10000)
	}
}
