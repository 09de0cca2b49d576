package main

import (
	"runtime/debug"
	"strings"
)

// buildVersion is set by the release build:
//
//	go build -trimpath -ldflags "-X main.buildVersion=v1.4.0" ./cmd/ticketd
//
// It wins over the module version that Go records, which is "(devel)" for
// a build from a checkout and a pseudo-version only for `go install
// MODULE@VERSION`.
var buildVersion string

func version() string {
	bi, _ := debug.ReadBuildInfo()
	return formatVersion(buildVersion, bi)
}

// formatVersion says what was built, from the -X override and what the Go
// toolchain recorded: "v1.4.0 (0123456789ab 2026-12-01T10:00:00Z modified)
// go1.26.0". The commit, its time and "modified" (uncommitted changes) come
// from the vcs.* settings, present when the build ran in a Git checkout
// with git available.
func formatVersion(override string, bi *debug.BuildInfo) string {
	v := strings.TrimSpace(override)
	if bi == nil {
		if v == "" {
			v = "(devel)"
		}
		return v
	}
	if v == "" {
		v = bi.Main.Version
	}
	if v == "" {
		v = "(devel)"
	}
	var vcs []string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			vcs = append(vcs, s.Value[:min(12, len(s.Value))])
		case "vcs.time":
			vcs = append(vcs, s.Value)
		case "vcs.modified":
			if s.Value == "true" {
				vcs = append(vcs, "modified")
			}
		}
	}
	if len(vcs) > 0 {
		v += " (" + strings.Join(vcs, " ") + ")"
	}
	return v + " " + bi.GoVersion
}
