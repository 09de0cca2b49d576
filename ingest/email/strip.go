package email

import (
	"regexp"
	"strings"
)

// stripQuoted returns what a reply adds: the text before the quoted
// earlier message and before the signature. The order of the steps
// matters:
//
//  1. cut at the first "hard" marker: Outlook's "-----Original Message-----"
//     (and localized variants), an Outlook "From: / Sent: / To: / Subject:"
//     header block (optionally after a "____" separator), or an attribution
//     line ("On ... wrote:", "Am ... schrieb ...:", "Le ... a écrit :",
//     "El ... escribió:", ...) that is NOT followed by ">" lines, because
//     then the quoted message follows unmarked;
//  2. drop attribution lines that introduce ">" quotes and all ">" lines,
//     which keeps answers written between or below quotes (inline and
//     bottom posting);
//  3. cut at the signature delimiter "-- " (or "--") and at mobile
//     trailers ("Sent from my iPhone", "Get Outlook for iOS", ...).
//
// The result may be empty; the caller then keeps the full text.
func stripQuoted(text string) string {
	lines := strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n")
	lines = lines[:hardCut(lines)]
	lines = dropQuotes(lines)
	lines = lines[:signatureCut(lines)]
	return strings.Join(lines, "\n")
}

// isQuotedLine reports a line quoted with ">" (Gmail, Apple Mail,
// Thunderbird, mutt).
func isQuotedLine(l string) bool {
	return strings.HasPrefix(strings.TrimLeft(l, " \t"), ">")
}

// originalMessage matches Outlook's separator lines and their translations.
var originalMessage = regexp.MustCompile(`(?i)^\s*-{2,}\s*(original message|ursprüngliche nachricht|message d'origine|mensaje original|messaggio originale|oorspronkelijk bericht|originalmeddelande|oprindelig meddelelse)\s*-{2,}\s*$`)

// underscoreSeparator is the line Outlook puts above the header block.
var underscoreSeparator = regexp.MustCompile(`^\s*_{20,}\s*$`)

// headerFrom and headerSent start and continue an Outlook-style quoted
// header block, in English, German, French, Spanish, Italian, Dutch and
// Portuguese, with Outlook's optional "*bold*" markers from HTML.
var (
	headerFrom = regexp.MustCompile(`(?i)^\s*\*?(from|von|de|da|van|från|fra)\s*:\*?\s*\S`)
	headerSent = regexp.MustCompile(`(?i)^\s*\*?(sent|date|gesendet|datum|envoyé|enviado|fecha|inviato|data|verzonden|skickat|sendt|to|an|à|para|a|aan|till|til|subject|betreff|objet|asunto|oggetto|onderwerp|ämne|emne|assunto)\s*:\*?`)
)

// attribution matches the line a mail program writes above a quote, once
// joined with up to two following lines (Gmail wraps long ones).
var attribution = regexp.MustCompile(`(?is)^\s*(` +
	`on\s.*\swrote\s*:` +
	`|am\s.*\sschrieb.*:` +
	`|le\s.*\sa\s+écrit\s*:` +
	`|el\s.*\sescribió\s*:` +
	`|il\s.*\sha\s+scritto\s*:` +
	`|op\s.*\sschreef.*:` +
	`|em\s.*\sescreveu\s*:` +
	`|.{0,80}<[^>\s]+@[^>\s]+>\s+(wrote|schrieb|a écrit|escribió)\s*:` +
	`)\s*$`)

// attributionStart is how multi-line attributions begin, in the languages
// above.
var attributionStart = regexp.MustCompile(`(?i)^\s*(on|am|le|el|il|op|em)\s`)

// hardCut returns the index of the first line of the quoted earlier
// message that is not ">"-marked, or len(lines).
func hardCut(lines []string) int {
	for i, l := range lines {
		if isQuotedLine(l) {
			continue
		}
		if originalMessage.MatchString(l) {
			return i
		}
		if underscoreSeparator.MatchString(l) && isHeaderBlock(lines, nextNonBlank(lines, i+1)) {
			return i
		}
		if isHeaderBlock(lines, i) {
			return i
		}
		if n := attributionLen(lines, i); n > 0 && !quoteFollows(lines, i+n) {
			return i
		}
	}
	return len(lines)
}

// isHeaderBlock reports a "From:" line followed within three lines by
// another header of the block (Sent/Date/To/Subject...).
func isHeaderBlock(lines []string, i int) bool {
	if i >= len(lines) || !headerFrom.MatchString(lines[i]) {
		return false
	}
	for j := i + 1; j < len(lines) && j <= i+3; j++ {
		if headerSent.MatchString(lines[j]) {
			return true
		}
	}
	return false
}

func nextNonBlank(lines []string, i int) int {
	for i < len(lines) && strings.TrimSpace(lines[i]) == "" {
		i++
	}
	return i
}

// attributionLen returns how many lines (1 to 3) starting at i form an
// attribution, or 0.
func attributionLen(lines []string, i int) int {
	if strings.TrimSpace(lines[i]) == "" {
		return 0
	}
	joined := strings.TrimSpace(lines[i])
	for n := 1; n <= 3 && i+n <= len(lines); n++ {
		if n > 1 {
			// A wrapped attribution must start like one, so that a line
			// of content before it is never swallowed.
			if !attributionStart.MatchString(lines[i]) {
				return 0
			}
			l := strings.TrimSpace(lines[i+n-1])
			if l == "" || isQuotedLine(l) {
				return 0
			}
			joined = strings.TrimSpace(joined + " " + l)
		}
		if len(joined) > 400 {
			return 0
		}
		if attribution.MatchString(joined) {
			return n
		}
	}
	return 0
}

// quoteFollows reports whether the next non-blank line is ">"-quoted.
func quoteFollows(lines []string, i int) bool {
	j := nextNonBlank(lines, i)
	return j < len(lines) && isQuotedLine(lines[j])
}

// dropQuotes removes ">" lines and the attribution lines introducing them.
func dropQuotes(lines []string) []string {
	out := make([]string, 0, len(lines))
	for i := 0; i < len(lines); i++ {
		if isQuotedLine(lines[i]) {
			continue
		}
		if n := attributionLen(lines, i); n > 0 && quoteFollows(lines, i+n) {
			i += n - 1
			continue
		}
		out = append(out, lines[i])
	}
	return out
}

// mobileTrailer matches the one-line advertisements mobile and web mail
// programs append.
var mobileTrailer = regexp.MustCompile(`(?i)^\s*(sent from my \w+|sent from (mail|outlook) for \w+|get outlook for (ios|android)|sent from yahoo mail|sent from samsung mobile|von meinem \w+ gesendet|gesendet von meinem \w+|envoyé de mon \w+|enviado desde mi \w+|inviato da \w+)`)

// signatureCut returns the index of the signature delimiter or mobile
// trailer, or len(lines). A delimiter on the very first line is ignored:
// cutting there would leave nothing.
func signatureCut(lines []string) int {
	for i, l := range lines {
		trimmed := strings.TrimRight(l, "\r")
		if i > 0 && (trimmed == "-- " || trimmed == "--") {
			return i
		}
		if mobileTrailer.MatchString(l) && len(strings.TrimSpace(l)) < 60 {
			return i
		}
	}
	return len(lines)
}
