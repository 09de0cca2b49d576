package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ticketd/ticketd/store"
	"github.com/ticketd/ticketd/store/storetest"
)

// Subjects and attachment names lose what can hide or spoof text.
func TestCleaning(t *testing.T) {
	for _, tt := range []struct {
		name  string
		clean func(string) string
		cases map[string]string
	}{
		{"CleanSubject", store.CleanSubject, map[string]string{
			"\u0000\u0000":                "",
			"\u202e\u200b":                "",
			"\ufeff \u200d\t\r\n":         "",
			"  Printer\u0000 on\tfire \n": "Printer on fire",
			"pay\u202egnp.exe":            "paygnp.exe",
			"\x1b[31mred\x1b[0m":          "red",
			"family 👨\u200d👩\u200d👧":      "family 👨\u200d👩\u200d👧",
			"Ünïcødé  subject":            "Ünïcødé subject",
		}},
		{"SafeFilename", store.SafeFilename, map[string]string{
			"authorized_keys\u0000.txt":         "authorized_keys.txt",
			"\x1b[2J\x1b[31mreport\x1b[0m.pdf":  "report.pdf",
			"\x1b]0;pwned\x07invoice.pdf":       "invoice.pdf",
			"\u009b31mred.txt":                  "red.txt",
			"../../etc/passwd":                  "passwd",
			`C:\temp\x.doc`:                     "x.doc",
			"fact\u202eFDP.exe":                 "factFDP.exe",
			"tab\tand\nnewline.txt":             "tabandnewline.txt",
			"\u0000..":                          "",
			"Rechnung März.pdf":                 "Rechnung März.pdf",
			strings.Repeat("ä", 1<<20) + ".pdf": strings.Repeat("ä", (store.MaxFilenameBytes-4)/2) + ".pdf",
			strings.Repeat("x", 300):            strings.Repeat("x", store.MaxFilenameBytes),
		}},
	} {
		for in, want := range tt.cases {
			if got := tt.clean(in); got != want {
				t.Errorf("%s(%q) = %q, want %q", tt.name, in, got, want)
			}
		}
	}
}

func TestLimitsCheck(t *testing.T) {
	l := store.Limits{MaxSubject: 10, MaxDescription: 20}
	for _, s := range []string{"", "\u0000\u0000", "\u202e\u200b", "12345678901", "\xff"} {
		if _, err := l.CheckSubject(s); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("CheckSubject(%q) = %v, want ErrInvalid", s, err)
		}
	}
	if got, err := l.CheckSubject(" ünïcødé \u200b1 "); err != nil || got != "ünïcødé 1" {
		t.Errorf("10 characters (more bytes) refused: %q %v", got, err)
	}
	if err := l.CheckDescription(strings.Repeat("é", 20)); err != nil {
		t.Errorf("20 characters refused: %v", err)
	}
	if err := l.CheckDescription(strings.Repeat("é", 21)); !errors.Is(err, store.ErrInvalid) || err.Error() != "description is longer than 20 characters" {
		t.Errorf("21 characters: %v", err)
	}
	if err := l.CheckDescription("before\x00after"); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("a NUL in a description: %v", err)
	}
}

func TestLimitsFit(t *testing.T) {
	l := store.Limits{MaxSubject: 20, MaxDescription: 50}
	for in, want := range map[string]string{
		"short": "short",
		"the printer on the third floor is on fire": "the printer on the…",
		strings.Repeat("ж", 30):                     strings.Repeat("ж", 19) + "…",
		"\u0000\u202e":                              "",
	} {
		got := l.FitSubject(in)
		if got != want || utf8.RuneCountInString(got) > 20 {
			t.Errorf("FitSubject(%q) = %q, want %q", in, got, want)
		}
	}
	note := " [cut]"
	if got, cut := l.FitDescription("fits", note); got != "fits" || cut {
		t.Errorf("short description changed: %q %v", got, cut)
	}
	if got, _ := l.FitDescription("a\x00b\xffc", note); got != "a\uFFFDb\uFFFDc" {
		t.Errorf("FitDescription kept a NUL or invalid UTF-8: %q", got)
	}
	long := strings.Repeat("日本語", 100)
	got, cut := l.FitDescription(long, note)
	if !cut || utf8.RuneCountInString(got) != 50 || !strings.HasSuffix(got, note) || !strings.HasPrefix(long, strings.TrimSuffix(got, note)) {
		t.Errorf("FitDescription = %q (%d characters), %v", got, utf8.RuneCountInString(got), cut)
	}
	if err := l.CheckDescription(got); err != nil {
		t.Errorf("a fitted description is refused: %v", err)
	}
	if n := utf8.RuneCountInString(store.FitName(strings.Repeat("Ada ", 1<<18))); n > store.MaxNameChars {
		t.Errorf("FitName kept %d characters", n)
	}
	if got := store.FitName("Ada\u0000 \x1b[31mLovelace"); got != "Ada Lovelace" {
		t.Errorf("FitName = %q", got)
	}
}

// The store itself holds every writer to its limits, whatever the adapter
// checked or forgot.
func TestCreateAndRespondHonourLimits(t *testing.T) {
	s, _ := storetest.OpenWith(t, store.OpenOptions{Limits: store.Limits{MaxSubject: 10, MaxDescription: 20}})
	ctx := context.Background()
	if got := s.Limits(); got.MaxSubject != 10 || got.MaxDescription != 20 {
		t.Fatalf("Limits() = %+v", got)
	}
	base := store.NewTicket{Creator: alice, TeamID: "t", Subject: "ok", Description: "d"}
	for name, mod := range map[string]func(in *store.NewTicket){
		"long subject":     func(in *store.NewTicket) { in.Subject = "12345678901" },
		"NUL subject":      func(in *store.NewTicket) { in.Subject = "\u0000\u0000" },
		"invisible":        func(in *store.NewTicket) { in.Subject = "\u202e\u200b" },
		"long description": func(in *store.NewTicket) { in.Description = strings.Repeat("x", 21) },
	} {
		in := base
		mod(&in)
		if _, _, err := s.CreateTicket(ctx, in); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: want ErrInvalid, got %v", name, err)
		}
	}
	base.Subject = "\u200bPrinter\u0000 "
	tk, _, err := s.CreateTicket(ctx, base)
	if err != nil || tk.Subject != "Printer" {
		t.Fatalf("create: %v, subject %q", err, tk.Subject)
	}
	if _, _, err := s.AddResponse(ctx, tk.ID, store.AllTickets, store.NewResponse{Author: agent, Description: strings.Repeat("x", 21)}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("long response: want ErrInvalid, got %v", err)
	}
	if _, _, err := s.AddResponse(ctx, tk.ID, store.AllTickets, store.NewResponse{Author: agent, Description: strings.Repeat("x", 20)}); err != nil {
		t.Errorf("response at the limit: %v", err)
	}
}
