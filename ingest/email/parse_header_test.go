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
