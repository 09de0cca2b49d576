package email

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/ticketd/ticketd/store"
)

// mailWithAttachments builds a mail with n base64 attachments of size
// bytes each, generated (too big to commit).
func mailWithAttachments(n, size int) []byte {
	var b bytes.Buffer
	b.WriteString("From: Big Sender <big@customer.test>\r\nTo: " + testBase + "\r\nSubject: Two big files\r\n" +
		"Message-ID: <two-big-files@customer.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n" +
		"--XX\r\nContent-Type: text/plain\r\n\r\nThe files are attached.\r\n")
	line := make([]byte, 57) // 76 base64 characters
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "--XX\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=big%d.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n", i)
		for done := 0; done < size; done += len(line) {
			chunk := line[:min(len(line), size-done)]
			for j := range chunk {
				chunk[j] = byte(done + j + i)
			}
			b.WriteString(base64.StdEncoding.EncodeToString(chunk))
			b.WriteString("\r\n")
		}
	}
	b.WriteString("--XX--\r\n")
	return bytes.Clone(b.Bytes()) // as read: no spare capacity
}

// heapPeak samples the bytes of live and not yet collected heap objects
// until stop is closed, and sends the largest value seen.
func heapPeak(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		var peak uint64
		for {
			metrics.Read(s)
			peak = max(peak, s[0].Value.Uint64())
			select {
			case <-stop:
				out <- peak
				return
			case <-time.After(100 * time.Microsecond):
			}
		}
	}()
	return out
}

// textMail builds a single-part mail whose body is size bytes of lines of
// words, as text/plain or as text/html paragraphs, generated (too big to
// commit).
func textMail(size int, html bool) []byte {
	var b bytes.Buffer
	ct, open, end := "text/plain", "", ""
	if html {
		ct, open, end = "text/html", "<p>", "</p>"
	}
	fmt.Fprintf(&b, "From: Big Sender <big@customer.test>\r\nTo: %s\r\nSubject: A long story\r\n"+
		"Message-ID: <long-story-%s@customer.test>\r\nMIME-Version: 1.0\r\nContent-Type: %s; charset=utf-8\r\n\r\n", testBase, ct[5:], ct)
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "%sline %d of a long story told in plain words %s\r\n", open, i, end)
	}
	return bytes.Clone(b.Bytes()) // as read: no spare capacity
}

// Delivering a mail holds about one copy of it: the raw message, with its
// attachments decoded again as streams and written to the store in
// pieces, and its text kept only as far as a description can use it, the
// whole text for original-message.txt decoded again as a stream. Issue 6
// measured a 25.8 MB mail with two 9 MiB attachments taking peak RSS from
// 36 to 364 MB, and a 10 MB body from 36 to 304 MB. The heap is sampled
// with a GC target of 10%, so the peak is the memory the delivery keeps
// live, not garbage the collector has not come to yet, and it must stay
// under twice the message size, the raw message itself included.
func TestDeliveryMemoryIsBoundedByTheMessage(t *testing.T) {
	st := newStore(t)
	src := newDeliverSource(t, st)
	ctx := context.Background()
	if _, err := src.Deliver(ctx, "INBOX", testMail{subject: "warm up"}.bytes()); err != nil {
		t.Fatal(err)
	}
	defer debug.SetGCPercent(debug.SetGCPercent(10))

	cases := []struct {
		name  string
		raw   func() []byte
		files func(*testing.T, []store.Attachment)
	}{
		{"two 9 MiB attachments", func() []byte { return mailWithAttachments(2, 9<<20) }, func(t *testing.T, as []store.Attachment) {
			if len(as) != 2 || as[0].Size != 9<<20 || as[1].Size != 9<<20 {
				t.Fatalf("attachments %+v", as)
			}
		}},
		{"10 MB plain text", func() []byte { return textMail(10<<20, false) }, originalKept},
		{"10 MB HTML", func() []byte { return textMail(10<<20, true) }, originalKept},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			runtime.GC()
			base := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
			metrics.Read(base)

			raw := tc.raw()
			runtime.GC()
			stop := make(chan struct{})
			peak := heapPeak(stop)
			res, err := src.Deliver(ctx, "INBOX", raw)
			close(stop)
			growth := int64(<-peak) - int64(base[0].Value.Uint64())
			if err != nil || res.Kind != KindTicket {
				t.Fatalf("Deliver = %+v, %v", res, err)
			}
			tc.files(t, loadTicket(t, st, res.TicketID).Attachments)
			t.Logf("message %d bytes, peak heap growth %d bytes (%.2fx)", len(raw), growth, float64(growth)/float64(len(raw)))
			if growth > 2*int64(len(raw)) {
				t.Errorf("peak heap grew by %d bytes delivering a %d-byte message: over twice its size", growth, len(raw))
			}
			runtime.KeepAlive(raw)
		})
	}
}

// originalKept checks that a text too long for a description is kept whole
// as original-message.txt, and nothing else is stored.
func originalKept(t *testing.T, as []store.Attachment) {
	t.Helper()
	if len(as) != 1 || as[0].Filename != "original-message.txt" || as[0].Size < 8<<20 {
		t.Fatalf("attachments %+v, want the whole text as original-message.txt", as)
	}
}

// sizedLiteral is a fetched literal that announces its size, as IMAP's do.
type sizedLiteral struct {
	*bytes.Reader
	size int64
}

func (l sizedLiteral) Size() int64 { return l.size }

// A fetched message is read into one buffer of its announced size, capped
// by the message size limit, not grown by doubling as io.ReadAll does
// (which allocates about three times the message on the way).
func TestReadLiteralAllocatesTheMessageOnce(t *testing.T) {
	raw := textMail(4<<20, false)
	for _, tc := range []struct {
		name        string
		size, limit int64
		maxAlloc    int64 // 0: any, only the bytes are checked
	}{
		{"announced", int64(len(raw)), 25 << 20, int64(len(raw)) + 64<<10},
		{"announced too small", 1 << 20, 25 << 20, 0},
		{"over the limit", int64(len(raw)), 1 << 20, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			got, err := readLiteral(sizedLiteral{bytes.NewReader(raw), tc.size}, tc.limit)
			runtime.ReadMemStats(&after)
			if err != nil || !bytes.Equal(got, raw) {
				t.Fatalf("read %d bytes, %v; want the %d of the message", len(got), err, len(raw))
			}
			if alloc := int64(after.TotalAlloc - before.TotalAlloc); tc.maxAlloc > 0 && alloc > tc.maxAlloc {
				t.Errorf("allocated %d bytes reading a %d-byte message, want at most %d", alloc, len(raw), tc.maxAlloc)
			}
		})
	}
}
