package slackin

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"
)

// withNotes appends notes (files left out) to a message's text, within max
// characters (tickets.maxDescription) in all: when they do not fit, the text
// is cut, a note says so, and whole is the text to keep as fullTextName.
func withNotes(text string, notes []string, max int) (out, whole string) {
	join := func(notes []string) string {
		if len(notes) == 0 {
			return ""
		}
		return "\n\n" + strings.Join(notes, "\n")
	}
	suffix := join(notes)
	if utf8.RuneCountInString(text)+utf8.RuneCountInString(suffix) > max {
		suffix = join(append(notes, fmt.Sprintf("[message cut; the whole text is attached as %s]", fullTextName)))
		text, whole = cutToMaxDescription(text, max-utf8.RuneCountInString(suffix))
		if whole == "" { // the notes alone took the room
			whole = text
			text = ""
		}
	}
	return strings.TrimSpace(text + suffix), whole
}

// cutToMaxDescription applies tickets.maxDescription (the most characters
// the API takes for a description or a response) to a Slack message's
// text: it returns the text cut at a rune boundary to at most max
// characters, and the whole text when it was cut ("" when it was not), to
// be kept as a file so that nothing is lost.
func cutToMaxDescription(s string, max int) (text, whole string) {
	if max <= 0 {
		return "", s
	}
	n := 0
	for i := range s {
		if n == max {
			return s[:i], s
		}
		n++
	}
	return s, ""
}

// maxMentionLookups bounds the users.info calls one message's mentions
// cause; further mentions keep their user id.
const maxMentionLookups = 10

// plainText turns Slack's message markup into the plain text a customer
// reads in a mail: user mentions become "@Real Name" (from users.info),
// channel and group mentions their names, "<url|label>" becomes
// "label (url)", and the &amp; &lt; &gt; entities their characters.
func (h *Bridge) plainText(ctx context.Context, s string) string {
	if !strings.ContainsAny(s, "<&") {
		return s
	}
	var b strings.Builder
	lookups := 0
	names := map[string]string{}
	for {
		open := strings.IndexByte(s, '<')
		if open < 0 {
			break
		}
		end := strings.IndexByte(s[open:], '>')
		if end < 0 {
			break
		}
		b.WriteString(unescape(s[:open]))
		inner := s[open+1 : open+end]
		s = s[open+end+1:]
		target, label, _ := strings.Cut(inner, "|")
		switch {
		case strings.HasPrefix(target, "@"):
			id := target[1:]
			name, ok := names[id]
			if !ok && label == "" && lookups < maxMentionLookups {
				lookups++
				name = h.userName(ctx, id)
				names[id] = name
			}
			switch {
			case name != "":
				b.WriteString("@" + name)
			case label != "":
				b.WriteString("@" + strings.TrimPrefix(unescape(label), "@"))
			default:
				b.WriteString("@" + id)
			}
		case strings.HasPrefix(target, "#"):
			if label == "" {
				label = target[1:]
			}
			b.WriteString("#" + unescape(label))
		case strings.HasPrefix(target, "!"):
			// <!here>, <!channel>, <!subteam^ID|@team>, <!date^...|fallback>
			if label != "" {
				b.WriteString(unescape(label))
			} else {
				cmd, _, _ := strings.Cut(target[1:], "^")
				b.WriteString("@" + cmd)
			}
		default: // a link
			url := unescape(target)
			text := unescape(label)
			if mail, ok := strings.CutPrefix(url, "mailto:"); ok {
				url = mail
			}
			if text == "" || text == url {
				b.WriteString(url)
			} else {
				b.WriteString(text + " (" + url + ")")
			}
		}
	}
	b.WriteString(unescape(s))
	return b.String()
}

var entities = strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&")

func unescape(s string) string { return entities.Replace(s) }

// userName is a user's real name, or "" when Slack does not say.
func (h *Bridge) userName(ctx context.Context, id string) string {
	u, err := h.o.Slack.GetUserInfoContext(ctx, id)
	if err != nil {
		return ""
	}
	if u.RealName != "" {
		return u.RealName
	}
	if u.Profile.DisplayName != "" {
		return u.Profile.DisplayName
	}
	return u.Name
}
