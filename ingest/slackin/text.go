package slackin

import (
	"context"
	"fmt"
	"strings"

	"github.com/ticketd/ticketd/store"
)

// withNotes appends notes (files left out) to a message's text, within the
// store's limits (tickets.maxDescription, the same cut as every other way in)
// in all: when they do not fit, the text is cut at a rune boundary, a note
// says so, and whole is the text to keep as fullTextName.
func withNotes(text string, notes []string, limits store.Limits) (out, whole string) {
	join := func(notes []string) string {
		if len(notes) == 0 {
			return ""
		}
		return "\n\n" + strings.Join(notes, "\n")
	}
	if out, cut := limits.FitDescription(text+join(notes), ""); !cut {
		return strings.TrimSpace(out), ""
	}
	suffix := join(append(notes, fmt.Sprintf("[message cut; the whole text is attached as %s]", fullTextName)))
	out, _ = limits.FitDescription(text+suffix, suffix)
	return strings.TrimSpace(out), text
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
