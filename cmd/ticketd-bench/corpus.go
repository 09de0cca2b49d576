package main

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/ticketd/ticketd/api"
	"github.com/ticketd/ticketd/store"
)

// The corpus makes tickets that read like a support desk's: subjects and
// descriptions of ordinary words with a long-tailed frequency (a few words
// in many tickets, most in few), some names with accents, and a handful of
// rare technical words, so that a keyword search has the selectivity it has
// in life. Everything is derived from the ticket's number, so a store of n
// tickets is the same store on every run.

// corpusVersion names the generator; change it whenever the tickets it
// makes change, so cached stores made by an older one are not reused.
const corpusVersion = 1

// The keywords the search figures use, with what they stand for. Each is
// matched as a case-insensitive substring, like the API does.
var searchKeywords = []struct{ label, word string }{
	{"common word", "password"},
	{"rare word", "kerberos"},
	{"2 letters", "ip"},
	{"non-ASCII word", "zürich"},
}

var (
	things = []string{"printer", "laptop", "invoice", "password", "account", "email", "calendar", "VPN", "router",
		"monitor", "keyboard", "license", "subscription", "report", "dashboard", "phone", "headset", "badge",
		"database", "backup", "shared drive", "mailbox", "website", "checkout", "order", "refund", "delivery",
		"payment", "contract", "certificate", "camera", "projector", "meeting room", "tablet", "scanner", "app",
		"browser", "server", "network", "Wi-Fi", "IP phone", "login page", "export", "spreadsheet", "chat", "download"}
	problems = []string{"does not work", "is very slow", "keeps crashing", "shows an error", "stopped syncing",
		"cannot be opened", "was charged twice", "is missing", "is locked", "expired yesterday", "will not start",
		"lost its settings", "is not arriving", "looks wrong", "needs to be renewed", "cannot connect",
		"asks for a code again", "prints blank pages", "freezes after the update", "is not accepted"}
	openers = []string{"Hello,", "Hi team,", "Good morning,", "Dear support,", "Hi there,", "Hello again,", "Hey,"}
	fillers = []string{
		"Since this morning the %s %s.",
		"We noticed that the %s %s after the maintenance window.",
		"Our colleague in the finance department says the %s %s as well.",
		"I already restarted everything but the %s still %s.",
		"This is urgent because the %s %s and we have a deadline on Friday.",
		"Could you check why the %s %s for several users?",
		"It happened twice last week, and now the %s %s again.",
		"The error message mentions the %s, and it %s.",
		"When I try from home the %s %s, but in the office it is fine.",
		"A customer called to say that the %s %s on their side.",
		"We skipped the last update, yet the %s %s.",
		"The shipping team reports that the %s %s.",
	}
	closers = []string{"Thanks in advance.", "Best regards.", "Kind regards, and thank you.", "Many thanks for your help.",
		"Please let me know if you need more details.", "I can share screenshots if that helps.", "Cheers."}
	people = []string{"Anna", "Ben", "Carla", "David", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kenji",
		"Laura", "Marco", "Nadia", "Oscar", "Priya", "Quentin", "Rosa", "Sven", "Tanya"}
	// accented names and places, in a few tickets each: the non-ASCII search
	// matches them whatever their case.
	accented = []string{"Zürich", "Müller", "São Paulo", "Kraków", "Málaga", "Göteborg", "Øresund", "Ærø",
		"Thérèse", "François", "Łódź", "Škoda"}
	// rare words, each in about one ticket of 2,000.
	rare = []string{"kerberos", "ldapsearch", "firmware", "tracert", "hyperlink", "watermark", "checksum",
		"dongle", "thumbnail", "webhook", "barcode", "postscript", "keychain", "captcha", "geofence",
		"letterhead", "timesheet", "voicemail", "sandbox", "toner"}
	replies = []string{
		"Thanks for reporting this. We are looking into it and will get back to you shortly.",
		"Could you tell us which version you are using and when it started?",
		"We have reset the %s on our side; please try again and let us know.",
		"The %s issue is known and a fix is being rolled out today.",
		"I have escalated this to the second-level team; they will contact you.",
		"Please restart the %s and send us a screenshot of the message if it happens again.",
	}
	customerReplies = []string{
		"Thank you, it works again.",
		"Still the same problem here, the %s %s.",
		"We are on the latest version. Here is the screenshot you asked for.",
		"Thanks, I will try that this afternoon.",
		"It happened again today at around ten.",
	}
)

// weighted picks from values by weights.
func weighted[T any](r *rand.Rand, values []T, weights []int) T {
	total := 0
	for _, w := range weights {
		total += w
	}
	n := r.IntN(total)
	for i, w := range weights {
		if n < w {
			return values[i]
		}
		n -= w
	}
	return values[len(values)-1]
}

// zipf picks from values with a long tail: the first ones often, the last
// ones rarely.
func zipf[T any](r *rand.Rand, values []T) T {
	z := rand.NewZipf(r, 1.3, 2, uint64(len(values)-1))
	return values[z.Uint64()]
}

// ticketPlan is everything the seeding makes of ticket i: what opens it,
// the replies it gets and where it ends up.
type ticketPlan struct {
	team, category, subject, description string
	priority                             store.Priority
	status                               store.Status
	customer                             int // an index into the team's customers
	replies                              []planReply
}

type planReply struct {
	byCustomer bool
	text       string
}

// planTicket derives ticket i of the corpus.
func planTicket(i int) ticketPlan {
	r := rand.New(rand.NewPCG(uint64(corpusVersion), uint64(i)))
	thing, problem := zipf(r, things), problems[r.IntN(len(problems))]
	p := ticketPlan{
		team:     fmt.Sprintf("team-%d", i%10),
		category: weighted(r, api.DefaultCategories, []int{40, 25, 20, 10, 5}),
		priority: weighted(r, store.Priorities, []int{40, 35, 18, 7}),
		status:   weighted(r, store.Statuses, []int{10, 30, 20, 25, 15}),
		customer: r.IntN(200),
	}
	p.subject = strings.ToUpper(thing[:1]) + thing[1:] + " " + problem
	var d strings.Builder
	d.WriteString(openers[r.IntN(len(openers))])
	for range 2 + r.IntN(4) {
		d.WriteString(" ")
		fmt.Fprintf(&d, fillers[r.IntN(len(fillers))], zipf(r, things), problems[r.IntN(len(problems))])
	}
	if r.IntN(20) == 0 {
		fmt.Fprintf(&d, " I am writing from our office in %s.", accented[r.IntN(len(accented))])
	}
	if r.IntN(100) == 0 {
		fmt.Fprintf(&d, " The log says something about %s.", rare[r.IntN(len(rare))])
	}
	d.WriteString(" " + closers[r.IntN(len(closers))] + " " + people[r.IntN(len(people))])
	p.description = d.String()
	for k := range 2 + r.IntN(2) {
		if k%2 == 0 {
			p.replies = append(p.replies, planReply{text: fillIn(replies[r.IntN(len(replies))], thing, problem)})
		} else {
			p.replies = append(p.replies, planReply{byCustomer: true, text: fillIn(customerReplies[r.IntN(len(customerReplies))], thing, problem)})
		}
	}
	return p
}

// fillIn fills a template's %s verbs (none, one or two) with the ticket's
// thing and problem.
func fillIn(tmpl, thing, problem string) string {
	switch strings.Count(tmpl, "%s") {
	case 0:
		return tmpl
	case 1:
		return fmt.Sprintf(tmpl, thing)
	default:
		return fmt.Sprintf(tmpl, thing, problem)
	}
}
