package store

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits caps the text of tickets and responses. Every way in reaches the
// store, so the store holds the one copy: CreateTicket and AddResponse
// refuse text over the limits, the API checks with the same methods to say
// why, and channels that must take what arrives (mail, Slack) cut with
// FitSubject and FitDescription first.
type Limits struct {
	// MaxSubject and MaxDescription count characters (Unicode code
	// points), as the API always has; 0 means DefaultMaxSubject and
	// DefaultMaxDescription.
	MaxSubject, MaxDescription int
}

// The limits when none are configured (tickets.maxSubject and
// tickets.maxDescription).
const (
	DefaultMaxSubject     = 200
	DefaultMaxDescription = 20000
)

func (l Limits) withDefaults() Limits {
	if l.MaxSubject <= 0 {
		l.MaxSubject = DefaultMaxSubject
	}
	if l.MaxDescription <= 0 {
		l.MaxDescription = DefaultMaxDescription
	}
	return l
}

// TextError is text the limits refuse. Its message names the field and the
// rule, fit to show a client; it matches ErrInvalid.
type TextError struct{ msg string }

func (e *TextError) Error() string { return e.msg }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *TextError) Is(target error) bool { return target == ErrInvalid }

func textError(format string, args ...any) error {
	return &TextError{msg: fmt.Sprintf(format, args...)}
}

// CheckSubject returns the subject as stored (CleanSubject), or a
// *TextError when it is not valid UTF-8, empty once cleaned, or longer than
// MaxSubject.
func (l Limits) CheckSubject(s string) (string, error) {
	l = l.withDefaults()
	if !utf8.ValidString(s) {
		return "", textError("subject is not valid UTF-8")
	}
	s = CleanSubject(s)
	switch n := utf8.RuneCountInString(s); {
	case s == "":
		return "", textError("subject is required")
	case n > l.MaxSubject:
		return "", textError("subject is longer than %d characters", l.MaxSubject)
	}
	return s, nil
}

// CheckDescription returns a *TextError when a description (or a
// response) is not valid UTF-8 or longer than MaxDescription. Whether an
// empty one is allowed is the caller's rule.
func (l Limits) CheckDescription(s string) error {
	l = l.withDefaults()
	switch {
	case !utf8.ValidString(s):
		return textError("description is not valid UTF-8")
	case strings.ContainsRune(s, 0):
		// No text holds one, and SQLite's text functions stop at it: the
		// embedded store's search would not see what follows.
		return textError("description holds a NUL character")
	case utf8.RuneCountInString(s) > l.MaxDescription:
		return textError("description is longer than %d characters", l.MaxDescription)
	}
	return nil
}

// FitSubject makes any text a subject CheckSubject accepts, except that it
// returns "" when nothing visible is left (the caller picks a fallback):
// cleaned, and cut at a word boundary with "…" when too long.
func (l Limits) FitSubject(s string) string {
	l = l.withDefaults()
	s = CleanSubject(strings.ToValidUTF8(s, "\uFFFD"))
	if utf8.RuneCountInString(s) <= l.MaxSubject {
		return s
	}
	if l.MaxSubject == 1 {
		return "…"
	}
	cut := cutRunes(s, l.MaxSubject-1)
	// Back up to the last space, unless that throws away most of it (one
	// giant word).
	if i := strings.LastIndexByte(cut, ' '); i > 0 && utf8.RuneCountInString(cut[:i]) >= (l.MaxSubject-1)/2 {
		cut = cut[:i]
	}
	return strings.TrimRight(cut, " ") + "…"
}

// MaxNameChars is the longest name kept for a customer or an agent: names
// come from mail and Slack, and go into the To of every mail sent.
const MaxNameChars = 100

// FitName is a person's name as the store keeps it: cleaned like a
// subject, cut to MaxNameChars.
func FitName(s string) string {
	return Limits{MaxSubject: MaxNameChars}.FitSubject(s)
}

// FitDescription cuts a description over MaxDescription so that it, with
// note appended, fits; cut says whether it did. note should say where the
// whole text went.
func (l Limits) FitDescription(s, note string) (fitted string, cut bool) {
	l = l.withDefaults()
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
	if utf8.RuneCountInString(s) <= l.MaxDescription {
		return s, false
	}
	room := l.MaxDescription - utf8.RuneCountInString(note)
	if room <= 0 {
		return cutRunes(s, l.MaxDescription), true
	}
	return strings.TrimRight(cutRunes(s, room), " \t\r\n") + note, true
}

// cutRunes returns the first n characters of s.
func cutRunes(s string, n int) string {
	for i := range s {
		if n == 0 {
			return s[:i]
		}
		n--
	}
	return s
}

// CleanSubject is a subject as stored: ANSI escape sequences and control
// characters (NUL, line breaks) and invisible format characters (zero-width spaces,
// bidirectional overrides, byte order marks) removed, whitespace collapsed
// to single spaces and trimmed. Zero-width joiners stay between visible
// characters, where they hold emoji sequences together.
func CleanSubject(s string) string {
	s = stripANSI(s)
	var b strings.Builder
	b.Grow(len(s))
	space, visible := false, false
	for _, r := range s {
		switch {
		case unicode.IsSpace(r):
			space = visible
			continue
		case unicode.IsControl(r), invisible(r):
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
		visible = visible || !joiner(r)
	}
	if !visible {
		return ""
	}
	return strings.TrimRight(b.String(), "\u200c\u200d")
}

// invisible reports format characters (category Cf) other than the
// joiners, and other code points that render as nothing.
func invisible(r rune) bool {
	if joiner(r) {
		return false
	}
	return unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029' || r == '\u3164' || r == '\u115f' || r == '\u1160'
}

func joiner(r rune) bool { return r == '\u200c' || r == '\u200d' }

// SafeFilename is an attachment's file name as stored: control characters
// (NUL, ANSI escape sequences), invisible format characters and path
// separators removed, so the name can be shown in a terminal or used on a
// disk as it is. An empty result means the caller names the file.
func SafeFilename(name string) string {
	name = strings.ToValidUTF8(name, "")
	name = stripANSI(name)
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || invisible(r) || joiner(r) {
			return -1
		}
		return r
	}, name)
	name = strings.TrimSpace(name)
	if strings.Trim(name, ".") == "" {
		return ""
	}
	if len(name) > MaxFilenameBytes {
		// Keep a short extension: it says what the file is.
		ext := ""
		if i := strings.LastIndexByte(name, '.'); i > 0 && len(name)-i <= 16 {
			ext = name[i:]
		}
		name = strings.TrimSpace(cutBytes(name[:len(name)-len(ext)], MaxFilenameBytes-len(ext))) + ext
	}
	return name
}

// MaxFilenameBytes is the longest file name kept, as most file systems
// allow: a name comes from the sender and is shown wherever the file is.
const MaxFilenameBytes = 255

// cutBytes cuts s to at most n bytes, not inside a character.
func cutBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// stripANSI removes ANSI escape sequences (ESC [ ... final byte, ESC ] ...
// BEL or ESC \, and two-byte ESC sequences) whole, so no parameter bytes
// are left behind once the ESC itself is dropped.
func stripANSI(s string) string {
	if !strings.ContainsAny(s, "\x1b\u009b") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		// ESC [ or the C1 CSI (one rune, two bytes in UTF-8)
		csi := c == 0x1b && i+1 < len(s) && s[i+1] == '[' || strings.HasPrefix(s[i:], "\u009b")
		switch {
		case csi:
			j := i + 2
			for j < len(s) && (s[j] < 0x40 || s[j] > 0x7e) {
				j++
			}
			i = j + 1
		case c == 0x1b && i+1 < len(s) && s[i+1] == ']':
			j := i + 2
			for j < len(s) && s[j] != 0x07 && !(s[j] == 0x1b && j+1 < len(s) && s[j+1] == '\\') {
				j++
			}
			if j < len(s) && s[j] == 0x1b {
				j++
			}
			i = j + 1
		case c == 0x1b:
			i += 2
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String()
}
