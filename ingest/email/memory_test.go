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

// Delivering a mail holds about one copy of it: the raw message, with its
// attachments decoded again as streams and written to the store in
// pieces. Issue 6 measured a 25.8 MB mail with two 9 MiB attachments
// taking peak RSS from 36 to 364 MB. The heap is sampled with a GC target
// of 10%, so the peak is the memory the delivery keeps live, not garbage
// the collector has not come to yet, and it must stay under twice the
// message size, the raw message itself included.
func TestDeliveryMemoryIsBoundedByTheMessage(t *testing.T) {
	st := newStore(t)
	src := newDeliverSource(t, st)
	ctx := context.Background()
	if _, err := src.Deliver(ctx, "INBOX", testMail{subject: "warm up"}.bytes()); err != nil {
		t.Fatal(err)
	}
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	base := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(base)

	raw := mailWithAttachments(2, 9<<20)
	runtime.GC()
	stop := make(chan struct{})
	peak := heapPeak(stop)
	res, err := src.Deliver(ctx, "INBOX", raw)
	close(stop)
	growth := int64(<-peak) - int64(base[0].Value.Uint64())
	if err != nil || res.Kind != KindTicket {
		t.Fatalf("Deliver = %+v, %v", res, err)
	}
	tk := loadTicket(t, st, res.TicketID)
	if len(tk.Attachments) != 2 || tk.Attachments[0].Size != 9<<20 || tk.Attachments[1].Size != 9<<20 {
		t.Fatalf("attachments %+v", tk.Attachments)
	}
	t.Logf("message %d bytes, peak heap growth %d bytes (%.2fx)", len(raw), growth, float64(growth)/float64(len(raw)))
	if growth > 2*int64(len(raw)) {
		t.Errorf("peak heap grew by %d bytes delivering a %d-byte message: over twice its size", growth, len(raw))
	}
	runtime.KeepAlive(raw)
}
