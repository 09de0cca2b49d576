package email

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// floodIDs is a References value of n distinct ids, folded as clients do:
// about 30 bytes each, so 35,000 of them make a megabyte.
func floodIDs(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString("\r\n ")
		}
		fmt.Fprintf(&b, "<flood%06d.x@flood.test>", i)
	}
	return b.String()
}

func TestMsgIDListKeepsTheNewest(t *testing.T) {
	const n = 35000
	want := make([]string, 0, maxMsgIDs)
	for i := n - maxMsgIDs; i < n; i++ {
		want = append(want, fmt.Sprintf("<flood%06d.x@flood.test>", i))
	}
	oneHeader := msgIDList([]string{floodIDs(n)})
	if !slices.Equal(oneHeader, want) {
		t.Errorf("one References of %d ids gave %d: %q..., want the last %d", n, len(oneHeader), oneHeader[:min(3, len(oneHeader))], maxMsgIDs)
	}
	// The same ids as one header each.
	many := strings.Split(floodIDs(n), "\r\n ")
	if got := msgIDList(many); !slices.Equal(got, want) {
		t.Errorf("%d References headers gave %d ids, want the last %d", n, len(got), maxMsgIDs)
	}
}

// The header is read from its end: an id cut by the tail's edge is dropped,
// never taken in part.
func TestMsgIDListDropsTheCutID(t *testing.T) {
	huge := "<" + strings.Repeat("a", 2*msgIDTailBytes) + "@x.test>"
	if got := msgIDList([]string{huge}); len(got) != 0 {
		t.Errorf("an id longer than the tail gave %d ids (%.40q...), want none", len(got), got)
	}
	got := msgIDList([]string{huge + " <parent@x.test>"})
	if !slices.Equal(got, []string{"<parent@x.test>"}) {
		t.Errorf("ids = %.80q, want only the parent", got)
	}
}

// Work per header is a constant: a References four times as long costs the
// same allocations (counted, not timed).
func TestMsgIDListWorkDoesNotGrowWithTheHeader(t *testing.T) {
	short, long := []string{floodIDs(35000)}, []string{floodIDs(140000)}
	a := testing.AllocsPerRun(3, func() { msgIDList(short) })
	b := testing.AllocsPerRun(3, func() { msgIDList(long) })
	if b > a {
		t.Errorf("allocations grow with the header: %.0f for 35,000 ids, %.0f for 140,000", a, b)
	}
}

// The header block keeps at most maxFieldBytes of a field: the head of
// most, the tail of In-Reply-To and References, whose newest id (the
// parent) comes last, folded or on one line.
func TestParseKeepsTheHeadOrTailOfLongFields(t *testing.T) {
	for name, refs := range map[string]string{
		"folded":   floodIDs(35000) + "\r\n <parent@x.test>",
		"one line": strings.ReplaceAll(floodIDs(35000), "\r\n", "") + " <parent@x.test>",
	} {
		raw := hostileMail("a@customer.test", "<m@customer.test>", wordsOf(1<<20, "\r\n ")+"\r\nReferences: "+refs+"\r\nIn-Reply-To: "+refs, "Body.\r\n")
		msg, err := Parse(raw, ParseOptions{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, ids := range [][]string{msg.References, msg.InReplyTo} {
			if len(ids) == 0 || ids[len(ids)-1] != "<parent@x.test>" || len(ids) > maxMsgIDs {
				t.Errorf("%s: %d ids ending %q, want the parent last", name, len(ids), ids[max(0, len(ids)-1):])
			}
		}
		if !strings.HasPrefix(msg.Subject, "word0 word1 ") || len(msg.Subject) > maxFieldBytes {
			t.Errorf("%s: subject of %d bytes: %.40q", name, len(msg.Subject), msg.Subject)
		}
		if msg.From.Address != "a@customer.test" || msg.MessageID != "<m@customer.test>" {
			t.Errorf("%s: From %q, Message-ID %q", name, msg.From.Address, msg.MessageID)
		}
	}
}
