package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestScenariosRun keeps the load command working: every scenario at a
// tiny size must finish and print its table and ratio. (The figures
// themselves are in BENCHMARKS.md; no timing is asserted here.)
func TestScenariosRun(t *testing.T) {
	var out bytes.Buffer
	b := &bench{small: 20, large: 40, ops: 32, out: &out}
	if err := b.run(context.Background(), "all"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Ratio of medians, 40 vs 20 tickets", "Ratio API / raw driver", "| 40 | GET /api/ticket/fetch |", "Auto-close job over 40 tickets, 4 of them"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if err := b.run(context.Background(), "bogus"); err == nil {
		t.Error("unknown scenario accepted")
	}
}
