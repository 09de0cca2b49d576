package slackui

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"
	"github.com/ticketd/ticketd/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestCutKeepsRunesAndEntitiesWhole(t *testing.T) {
	cases := []struct {
		name, in string
		max      int
		escape   bool
		want     string
	}{
		{"short", "héllo", 10, false, "héllo"},
		{"exact", "abcde", 5, false, "abcde"},
		{"ascii", "abcdef", 5, false, "abcd…"},
		{"accents", "ééééé", 4, false, "ééé…"},
		// 😀 is two UTF-16 units: 3 emoji are 6 units, over 5.
		{"astral", "😀😀😀", 5, false, "😀😀…"},
		{"entity not split", "ab<cd", 5, true, "ab…"},
		{"escaped", "a<b>&", 20, true, "a&lt;b&gt;&amp;"},
		{"no mention", "<!channel> hi", 50, true, "&lt;!channel&gt; hi"},
	}
	for _, c := range cases {
		got := cut(c.in, c.max, c.escape)
		if got != c.want {
			t.Errorf("%s: cut(%q, %d) = %q, want %q", c.name, c.in, c.max, got, c.want)
		}
		if !utf8.ValidString(got) || utf16Len(got) > c.max {
			t.Errorf("%s: %q is invalid or over %d units", c.name, got, c.max)
		}
	}
}

func TestValueRoundTrip(t *testing.T) {
	id := bson.NewObjectID()
	got, target, err := ParseValue(Value(id, "in-progress"))
	if err != nil || got != id || target != "in-progress" {
		t.Fatalf("ParseValue = %v %q %v", got, target, err)
	}
	for _, bad := range []string{"", "x|open", id.Hex(), id.Hex() + "|"} {
		if _, _, err := ParseValue(bad); err == nil {
			t.Errorf("ParseValue(%q) accepted", bad)
		}
	}
}

func TestKeys(t *testing.T) {
	ch, ts, ok := ParseSourceKey(SourceKey("C1", "1700000000.000100"))
	if !ok || ch != "C1" || ts != "1700000000.000100" {
		t.Fatalf("ParseSourceKey = %q %q %v", ch, ts, ok)
	}
	for _, bad := range []string{"email:<a@b>", "slack:C1", "slack:/1.2", "api:x"} {
		if _, _, ok := ParseSourceKey(bad); ok {
			t.Errorf("ParseSourceKey(%q) accepted", bad)
		}
	}
	tk, ev := bson.NewObjectID(), bson.NewObjectID()
	gt, ge, ok := ParseMetadata(Metadata(tk, ev))
	if !ok || gt != tk.Hex() || ge != ev.Hex() {
		t.Fatalf("ParseMetadata = %q %q %v", gt, ge, ok)
	}
	if _, _, ok := ParseMetadata(slack.SlackMetadata{EventType: "other", EventPayload: map[string]any{PayloadTicketID: "x"}}); ok {
		t.Error("foreign metadata accepted")
	}
}

func TestRootBlocks(t *testing.T) {
	tk := &store.Ticket{
		ID: bson.NewObjectID(), RefID: 42, Subject: strings.Repeat("s", 400),
		Description: strings.Repeat("é", 5000), Category: "Billing",
		Priority: store.PriorityHigh, Status: store.StatusInProgress, Source: store.SourceEmail,
		CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	if got := RootText(&store.Ticket{RefID: 7, Subject: "<!channel> & co"}); got != "#7 &lt;!channel&gt; &amp; co" {
		t.Errorf("RootText = %q", got)
	}
	blocks := RootBlocks(Root{Ticket: tk, Customer: CustomerLabel("Ann <x>", "ann@example.com", "")})
	raw, err := json.Marshal(slack.Blocks{BlockSet: blocks})
	if err != nil {
		t.Fatal(err)
	}
	var back slack.Blocks
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	h := back.BlockSet[0].(*slack.HeaderBlock)
	if n := utf16Len(h.Text.Text); n > MaxHeaderText || !strings.HasPrefix(h.Text.Text, "#42 sss") {
		t.Errorf("header %q (%d units)", h.Text.Text, n)
	}
	facts := back.BlockSet[1].(*slack.SectionBlock)
	if got := facts.Fields[0].Text; got != "*Customer*\nAnn &lt;x&gt; &lt;ann@example.com&gt;" {
		t.Errorf("customer field %q", got)
	}
	desc := back.BlockSet[2].(*slack.SectionBlock).Text.Text
	if n := utf16Len(desc); n > DescriptionPreview || !strings.HasSuffix(desc, "…") {
		t.Errorf("description %d units, ends %q", n, desc[len(desc)-6:])
	}
	acts := back.BlockSet[3].(*slack.ActionBlock)
	if acts.BlockID != BlockActions || len(acts.Elements.ElementSet) != len(ButtonStatuses)+1 {
		t.Fatalf("actions %+v", acts)
	}
	for i, s := range ButtonStatuses {
		b := acts.Elements.ElementSet[i].(*slack.ButtonBlockElement)
		id, target, err := ParseValue(b.Value)
		if b.ActionID != StatusActionID(s) || err != nil || id != tk.ID || target != string(s) {
			t.Errorf("button %d: %q %q", i, b.ActionID, b.Value)
		}
		if (b.Style == slack.StylePrimary) != (s == tk.Status) {
			t.Errorf("button %s style %q", s, b.Style)
		}
	}
	sel := acts.Elements.ElementSet[len(ButtonStatuses)].(*slack.SelectBlockElement)
	if sel.ActionID != ActionPriority || sel.InitialOption == nil || sel.InitialOption.Value != Value(tk.ID, "high") {
		t.Errorf("priority select %+v", sel)
	}
}

func TestChunks(t *testing.T) {
	got, cut := Chunks("ab<cdé", 5, 3)
	if cut || strings.Join(got, "|") != "ab|&lt;c|dé" {
		t.Errorf("Chunks = %q, %v", got, cut)
	}
	got, cut = Chunks(strings.Repeat("x", 12), 5, 2)
	if !cut || strings.Join(got, "|") != "xxxxx|xxxx…" {
		t.Errorf("Chunks cut = %q, %v", got, cut)
	}
	if got, cut := Chunks("", 5, 2); len(got) != 0 || cut {
		t.Errorf("Chunks empty = %q, %v", got, cut)
	}
}
