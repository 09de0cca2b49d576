package store

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The listing index (embedded mode) and the database query (MongoDB mode)
// must list the same tickets in the same order for every query.
func TestIndexListsLikeTheDatabase(t *testing.T) {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := t.TempDir()
	uri, stop, err := startEmbedded(ctx, dir, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer stop(ctx)
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(ctx)
	withIndex, err := New(ctx, client, client.Database("cat"), Options{Logger: quiet, Serialized: true,
		sqliteFile: filepath.Join(dir, "cat.sqlite")})
	if err != nil {
		t.Fatal(err)
	}
	withQuery, err := New(ctx, client, client.Database("cat"), Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if withIndex.index == nil || withQuery.index != nil {
		t.Fatal("want one store with the index and one without")
	}

	creators := []bson.ObjectID{bson.NewObjectID(), bson.NewObjectID()}
	subjects := []string{"Printer jam", "100% done_now", "printer JAM again", "Café crème machine", "Refund (a.k.a. money back)", "ΣΊΣΥΦΟΣ upgrade", "Login",
		"a\x01b \x01\x01", "K",
		// Case pairs SQLite's folding is older than (Georgian Mtavruli,
		// Osage, Cherokee), the Kelvin and long s signs, a Turkish capital.
		"ᲐᲑᲒ 𐒰𐒱 ꭰꭱ \u212a \u017ftop İstanbul"}
	var ids []bson.ObjectID
	for i := 0; i < 30; i++ {
		tk, _, err := withIndex.CreateTicket(ctx, NewTicket{
			Creator: Actor{ID: creators[i%2], Type: CreatorCustomer}, TeamID: fmt.Sprintf("team-%d", i%3),
			Category: []string{"Support", "Billing"}[i%2], Subject: subjects[i%len(subjects)],
			Description: fmt.Sprintf("details %d, see ticket", i)[:min(i, 22)], Priority: Priorities[i%4],
		})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tk.ID)
	}
	admin := Actor{ID: bson.NewObjectID(), Type: CreatorAdmin}
	for i, id := range ids {
		switch i % 5 {
		case 0:
			st := Statuses[i%len(Statuses)]
			withIndex.UpdateTicket(ctx, id, AllTickets, TicketUpdate{Status: &st}, admin)
		case 1:
			withIndex.AddResponse(ctx, id, AllTickets, NewResponse{Author: admin, Description: "answer"})
		case 2:
			withIndex.DeleteTicket(ctx, id, AllTickets, admin)
		}
	}
	queries := []ListQuery{
		{}, {Limit: 7}, {Limit: 7, Offset: 7}, {Limit: 7, Offset: 28}, {Offset: 100},
		{TeamID: "team-1"}, {CreatorID: creators[0]}, {Status: StatusClosed}, {Priority: PriorityUrgent},
		{Category: "Billing", TeamID: "team-2"}, {Keyword: "printer"}, {Keyword: "CAFÉ"}, {Keyword: "σίσυφος"},
		{Keyword: "(a.k.a."}, {Keyword: ".*"}, {Keyword: "ticket", Limit: 3, Offset: 2}, {Keyword: "nothing like this"},
		{Keyword: "in"}, {Keyword: "J"}, {Keyword: "%"}, {Keyword: "_"}, {Keyword: "a."}, {Keyword: `"`}, {Keyword: `jam"`},
		{Keyword: "printer", Status: StatusCreated, TeamID: "team-0"}, {Keyword: "de", Priority: PriorityHigh},
		{Keyword: "ticket", CreatorID: creators[1], Limit: 2}, {Keyword: "ème"}, {Keyword: "É"}, {Keyword: "σΊ"},
		// One or two characters (shortgrams.go): first and last of a text,
		// across a subject and a description, a whole text, the pad.
		{Keyword: "p"}, {Keyword: "n"}, {Keyword: "nd"}, {Keyword: "NG"}, {Keyword: "ng"}, {Keyword: "l"}, {Keyword: "k"},
		{Keyword: "gd"}, {Keyword: "kd"}, {Keyword: "s,"}, {Keyword: "\x01"}, {Keyword: "a\x01"}, {Keyword: "\x01\x01"}, {Keyword: "b"},
		{Keyword: "σ"}, {Keyword: "ΊΣ"}, {Keyword: " "}, {Keyword: "0"}, {Keyword: "99"},
		{Keyword: "ა"}, {Keyword: "აბ"}, {Keyword: "აბგ"}, {Keyword: "\U000104d8"}, {Keyword: "\U000104d8\U000104d9"}, {Keyword: "Ꭰ"},
		{Keyword: "ᎠᎡ"}, {Keyword: "k"}, {Keyword: "s"}, {Keyword: "STOP"}, {Keyword: "i"}, {Keyword: "istanbul"}, {Keyword: "İ"},
	}
	compare := func(when string) {
		t.Helper()
		// Keyword searches both ways: matches sorted (few) and the listing
		// walked (many; search.go), the second time from the kept matches.
		for _, rare := range []int{rareMatches, 0, 0} {
			withIndex.index.rareMatches = rare
			for _, q := range queries {
				for _, scope := range []Scope{AllTickets, TeamScope("team-0")} {
					a, an, err := withIndex.ListTickets(ctx, scope, q)
					if err != nil {
						t.Fatal(err)
					}
					b, bn, err := withQuery.ListTickets(ctx, scope, q)
					if err != nil {
						t.Fatal(err)
					}
					if an != bn || fmt.Sprint(idsOf(a)) != fmt.Sprint(idsOf(b)) {
						t.Errorf("%s, %+v in %+v (sorted up to %d matches): index %d %v, database %d %v", when, q, scope, rare, an, idsOf(a), bn, idsOf(b))
					}
				}
			}
		}
	}
	compare("at first")
	// Every change a kept keyword's matches must follow: a new ticket, an
	// edited text, a deleted ticket, a ticket removed from the database.
	if _, _, err := withIndex.CreateTicket(ctx, NewTicket{Creator: Actor{ID: creators[0], Type: CreatorCustomer}, TeamID: "team-0",
		Category: "Support", Subject: "Printer café", Description: "a new one, see ticket", Priority: PriorityHigh}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := withIndex.EditOpening(ctx, ids[1], AllTickets, "Login trouble", "no longer about it", admin); err != nil {
		t.Fatal(err)
	}
	if _, _, err := withIndex.EditOpening(ctx, ids[4], AllTickets, "printer in the hall", "jam \x01\x01 a\x01b", admin); err != nil {
		t.Fatal(err)
	}
	if _, err := withIndex.DeleteTicket(ctx, ids[3], AllTickets, admin); err != nil {
		t.Fatal(err)
	}
	if _, err := withIndex.tickets.DeleteOne(ctx, bson.D{{Key: "_id", Value: ids[6]}}); err != nil {
		t.Fatal(err)
	}
	compare("after changes")
	// The scheduled jobs' questions too.
	a, _, err := withIndex.OpenTickets(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := withQuery.OpenTickets(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(idsOf(a)) != fmt.Sprint(idsOf(b)) || len(a) == 0 {
		t.Errorf("open tickets: index %v, database %v", idsOf(a), idsOf(b))
	}
	a, err = withIndex.FirstResponseCandidates(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	b, err = withQuery.FirstResponseCandidates(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(idsOf(a)) != fmt.Sprint(idsOf(b)) || len(a) == 0 {
		t.Errorf("first-response candidates: index %v, database %v", idsOf(a), idsOf(b))
	}
}

func idsOf(ts []Ticket) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.ID.Hex()[18:]+"/"+string(t.Status))
	}
	return out
}

// Every listing query of the embedded store walks an index in the listing
// order (no sort of all matches, no scan of all tickets), and the outbox
// sweep and the look-ups by number and source key search one: what keeps
// their cost flat as the store grows. SQLite's planner is asked.
func TestIndexQueriesUseIndexes(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, OpenOptions{DataDir: t.TempDir(), Database: "plans", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	plan := func(q string, args ...any) string { return explain(t, s.index.db, q, args...) }
	for _, q := range []ListQuery{
		{}, {Offset: 5000}, {TeamID: "t"}, {CreatorID: bson.NewObjectID()}, {Status: StatusOpen},
		{Priority: PriorityHigh}, {Category: "Billing"}, {TeamID: "t", Status: StatusOpen, Priority: PriorityLow},
	} {
		where, args := q.where()
		p := plan(`SELECT l.id FROM ticketd_listing l WHERE `+where+` ORDER BY l.updated DESC, l.id DESC LIMIT ? OFFSET ?`, append(args, 50, q.Offset)...)
		if !strings.Contains(p, "INDEX ticketd_listing_") || strings.Contains(p, "TEMP B-TREE") {
			t.Errorf("page of %+v plans as %q, want a walk of a listing index", q, p)
		}
	}
	// A keyword's matches come from the full-text index, new ones by row id;
	// a search's count takes out the deleted ones from their own index.
	for _, keyword := range []string{"printer", "pr", "p"} {
		table, cond, args, _ := keywordCondition(keyword)
		if p := plan(`SELECT group_concat(rowid) FROM `+table+` WHERE rowid > ? AND rowid <= ? AND `+cond, append([]any{1, 2}, args...)...); !regexp.MustCompile(`VIRTUAL TABLE INDEX \d+:M`).MatchString(p) {
			t.Errorf("the matches of %q plan as %q, want a full-text index", keyword, p)
		}
	}
	if p := plan(`SELECT rid FROM ticketd_listing WHERE deleted = 1`); !strings.Contains(p, "INDEX ticketd_listing_deleted") {
		t.Errorf("the deleted tickets plan as %q, want their partial index", p)
	}
	// The partial index holds only the tickets with events: walking all of
	// it is the point.
	if p := plan(`SELECT id FROM ticketd_listing WHERE outbox > 0`); !strings.Contains(p, "INDEX ticketd_listing_outbox") {
		t.Errorf("the sweep plans as %q, want the partial index of tickets with events", p)
	}
	for _, column := range []string{"ref", "source_key"} {
		if p := plan(`SELECT id FROM ticketd_listing WHERE `+column+` = ? LIMIT 1`, "x"); !strings.HasPrefix(p, "SEARCH") ||
			!strings.Contains(p, "INDEX ticketd_listing_"+column) {
			t.Errorf("the look-up by %s plans as %q, want a search of its index", column, p)
		}
	}
}

// Writers of different tickets run concurrently on the embedded server;
// none may be refused with "database is locked" (SQLITE_BUSY), which the
// index's triggers made frequent until the server's transactions took the
// write lock when they begin.
func TestConcurrentWritersAreNeverRefused(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, OpenOptions{DataDir: t.TempDir(), Database: "busy", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	errs := make(chan error, 4)
	for w := 0; w < 4; w++ {
		go func(w int) {
			cust := Actor{ID: bson.NewObjectID(), Type: CreatorCustomer}
			for i := 0; i < 60; i++ {
				tk, _, err := s.CreateTicket(ctx, NewTicket{Creator: cust, TeamID: fmt.Sprint("t", w), Subject: fmt.Sprint("printer ", i), Description: "jammed"})
				if err == nil {
					_, _, err = s.AddResponse(ctx, tk.ID, AllTickets, NewResponse{Author: cust, Description: "still jammed"})
				}
				if err == nil {
					_, _, err = s.EditOpening(ctx, tk.ID, AllTickets, fmt.Sprint("scanner ", i), "broken", cust)
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}(w)
	}
	for w := 0; w < 4; w++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if _, total, err := s.ListTickets(ctx, AllTickets, ListQuery{Keyword: "scanner"}); err != nil || total != 240 {
		t.Errorf("search found %d (%v), want all 240 edited tickets", total, err)
	}
}
