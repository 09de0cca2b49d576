package slackui

import (
	"strconv"
	"strings"
	"unicode/utf16"

	"github.com/slack-go/slack"
	"github.com/ticketd/ticketd/store"
)

// Slack's limits on block text, in characters (counted here in UTF-16 code
// units, the stricter count, so an emoji outside the BMP never overflows).
const (
	MaxHeaderText  = 150
	MaxSectionText = 3000
	MaxFieldText   = 2000
	// DescriptionPreview is how much of the description the root message
	// shows; the rest is in the API.
	DescriptionPreview = 1000
)

// ellipsis marks text that was cut.
const ellipsis = "…"

// Mrkdwn is s escaped for a mrkdwn text object (&, <, > as entities, so
// outside text can neither ping @channel nor forge a link) and cut at a
// rune boundary to at most max characters, "…" included. An entity is
// never cut in half.
func Mrkdwn(s string, max int) string { return cut(s, max, true) }

// Plain is s cut for a plain_text object, like Mrkdwn without escaping.
func Plain(s string, max int) string { return cut(s, max, false) }

func cut(s string, max int, escape bool) string {
	var b strings.Builder
	used := 0
	room := max - utf16Len(ellipsis)
	cutAt := -1 // b.Len() when the text still left room for the ellipsis
	for _, r := range s {
		piece, n := string(r), runeUnits(r)
		if escape {
			piece, n = escaped(r)
		}
		if used+n > max {
			if cutAt < 0 {
				return ""
			}
			return b.String()[:cutAt] + ellipsis
		}
		used += n
		b.WriteString(piece)
		if used <= room {
			cutAt = b.Len()
		}
	}
	return b.String()
}

// CustomerLabel is how the root message names a customer: a Slack mention
// when the customer writes from Slack, else the name and address.
func CustomerLabel(name, email, slackUserID string) string {
	if slackUserID != "" {
		return "<@" + slackUserID + ">"
	}
	name = strings.TrimSpace(name)
	switch {
	case email == "" && name == "":
		return "unknown"
	case email == "":
		return Mrkdwn(name, 200)
	case name == "":
		return Mrkdwn(email, 320)
	}
	return Mrkdwn(name, 200) + " " + Mrkdwn("<"+email+">", 330)
}

// Root is what the agents' root message of a ticket shows.
type Root struct {
	Ticket *store.Ticket
	// Customer and Assignee are mrkdwn (CustomerLabel, a mention or an
	// escaped name); an empty Assignee shows "unassigned".
	Customer string
	Assignee string
	// Note is an optional mrkdwn context line (a link to the customer's
	// own thread, for instance).
	Note string
}

// RootText is the root message's notification text: "#42 subject",
// escaped (Slack reads mentions in it).
func RootText(t *store.Ticket) string {
	return Mrkdwn(refTitle(t), MaxSectionText)
}

func refTitle(t *store.Ticket) string {
	subject := strings.TrimSpace(t.Subject)
	if subject == "" {
		subject = "(no subject)"
	}
	return "#" + strconv.FormatInt(t.RefID, 10) + " " + subject
}

// RootBlocks renders the root message: header, facts, the description's
// start, the status buttons and priority select, and a context line.
func RootBlocks(r Root) []slack.Block {
	t := r.Ticket
	mk := func(s string) *slack.TextBlockObject {
		return slack.NewTextBlockObject(slack.MarkdownType, s, false, false)
	}
	field := func(label, value string) *slack.TextBlockObject {
		return mk(Mrkdwn(label, 50) + "\n" + cutMrkdwnValue(value, MaxFieldText-len(label)-1))
	}
	assignee := r.Assignee
	if assignee == "" {
		assignee = "unassigned"
	}
	customer := r.Customer
	if customer == "" {
		customer = "unknown"
	}
	source := string(t.Source)
	if source == "" {
		source = "unknown"
	}
	blocks := []slack.Block{
		slack.NewHeaderBlock(slack.NewTextBlockObject(slack.PlainTextType, Plain(refTitle(t), MaxHeaderText), false, false)),
		slack.NewSectionBlock(nil, []*slack.TextBlockObject{
			field("*Customer*", customer),
			field("*Source*", Mrkdwn(source, 50)),
			field("*Category*", Mrkdwn(orDash(t.Category), 200)),
			field("*Priority*", Mrkdwn(string(t.Priority), 50)),
			field("*Status*", Mrkdwn(string(t.Status), 50)),
			field("*Assignee*", assignee),
		}, nil),
	}
	if d := strings.TrimSpace(t.Description); d != "" {
		blocks = append(blocks, slack.NewSectionBlock(mk(Mrkdwn(d, DescriptionPreview)), nil, nil))
	}
	elems := make([]slack.BlockElement, 0, len(ButtonStatuses)+1)
	for _, s := range ButtonStatuses {
		b := slack.NewButtonBlockElement(StatusActionID(s), Value(t.ID, string(s)),
			slack.NewTextBlockObject(slack.PlainTextType, statusLabel(s), false, false))
		if s == t.Status {
			b = b.WithStyle(slack.StylePrimary)
		}
		elems = append(elems, b)
	}
	var opts []*slack.OptionBlockObject
	var current *slack.OptionBlockObject
	for _, p := range store.Priorities {
		o := slack.NewOptionBlockObject(Value(t.ID, string(p)), slack.NewTextBlockObject(slack.PlainTextType, "Priority: "+string(p), false, false), nil)
		if p == t.Priority {
			current = o
		}
		opts = append(opts, o)
	}
	sel := slack.NewOptionsSelectBlockElement(slack.OptTypeStatic,
		slack.NewTextBlockObject(slack.PlainTextType, "Priority", false, false), ActionPriority, opts...)
	if current != nil {
		sel = sel.WithInitialOption(current)
	}
	elems = append(elems, sel)
	blocks = append(blocks, slack.NewActionBlock(BlockActions, elems...))
	ctx := []slack.MixedElement{mk("Ticket `" + t.ID.Hex() + "` · opened " + t.CreatedAt.UTC().Format("2006-01-02 15:04 UTC"))}
	if r.Note != "" {
		ctx = append(ctx, mk(cutMrkdwnValue(r.Note, MaxFieldText)))
	}
	blocks = append(blocks, slack.NewContextBlock("", ctx...))
	return blocks
}

// cutMrkdwnValue bounds text that is mrkdwn already (a mention, escaped
// text): it is cut only when over the limit, on a rune boundary and before
// any "&" or "<" that starts the markup it would break.
func cutMrkdwnValue(s string, max int) string {
	if utf16Len(s) <= max {
		return s
	}
	out := Plain(s, max)
	out = strings.TrimSuffix(out, ellipsis)
	if i := strings.LastIndexAny(out, "&<"); i >= 0 && !strings.ContainsAny(out[i:], ";>") {
		out = out[:i]
	}
	return out + ellipsis
}

func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		n += runeUnits(r)
	}
	return n
}

// runeUnits is a rune's length in UTF-16 code units; an invalid one is
// sent as U+FFFD, one unit.
func runeUnits(r rune) int {
	if n := utf16.RuneLen(r); n > 0 {
		return n
	}
	return 1
}

func statusLabel(s store.Status) string {
	switch s {
	case store.StatusInProgress:
		return "In progress"
	case store.StatusOpen:
		return "Open"
	case store.StatusResolved:
		return "Resolved"
	case store.StatusClosed:
		return "Closed"
	}
	return string(s)
}

func orDash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}

// Chunks splits s into mrkdwn pieces of at most size characters each
// (escaped like Mrkdwn, cut on rune and entity boundaries), at most max of
// them; cut reports that text was left out (the last piece then ends in
// "…"). A long message becomes several section blocks this way.
func Chunks(s string, size, max int) (chunks []string, cut bool) {
	var b strings.Builder
	used := 0
	room := size - utf16Len(ellipsis)
	cutAt := 0 // b.Len() when the chunk still left room for the ellipsis
	for _, r := range s {
		piece, n := escaped(r)
		if used+n > size {
			if len(chunks) == max-1 {
				return append(chunks, b.String()[:cutAt]+ellipsis), true
			}
			chunks = append(chunks, b.String())
			b.Reset()
			used, cutAt = 0, 0
		}
		used += n
		b.WriteString(piece)
		if used <= room {
			cutAt = b.Len()
		}
	}
	if b.Len() > 0 {
		chunks = append(chunks, b.String())
	}
	return chunks, false
}

// escaped is one rune as mrkdwn and its length in characters.
func escaped(r rune) (string, int) {
	switch r {
	case '&':
		return "&amp;", 5
	case '<':
		return "&lt;", 4
	case '>':
		return "&gt;", 4
	}
	return string(r), runeUnits(r)
}
