package main

import (
	"runtime/debug"
	"testing"
)

// The build stamps what it knows; the real -ldflags build is checked in
// deploy/, with the container recipe's own build command.
func TestFormatVersion(t *testing.T) {
	checkout := &debug.BuildInfo{
		GoVersion: "go1.26.0",
		Main:      debug.Module{Path: "github.com/ticketd/ticketd", Version: "(devel)"},
		Settings: []debug.BuildSetting{
			{Key: "-trimpath", Value: "true"},
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-12-01T10:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	clean := &debug.BuildInfo{
		GoVersion: "go1.26.0",
		Main:      debug.Module{Path: "github.com/ticketd/ticketd", Version: "v1.3.0"},
		Settings:  []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "false"}},
	}
	for _, c := range []struct {
		name, override string
		bi             *debug.BuildInfo
		want           string
	}{
		{"release build from a checkout", "v1.4.0", checkout, "v1.4.0 (0123456789ab 2026-12-01T10:00:00Z modified) go1.26.0"},
		{"plain build from a checkout", "", checkout, "(devel) (0123456789ab 2026-12-01T10:00:00Z modified) go1.26.0"},
		{"go install module@version", "", clean, "v1.3.0 (abc) go1.26.0"},
		{"no build information", "v1.4.0", nil, "v1.4.0"},
		{"nothing at all", " ", nil, "(devel)"},
	} {
		if got := formatVersion(c.override, c.bi); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}
