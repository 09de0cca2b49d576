package store

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
)

func TestLevelFloorKeepsAttrsForRecordsThatPass(t *testing.T) {
	var buf bytes.Buffer
	base := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	log := slog.New(levelFloor{h: base.Handler(), min: slog.LevelError}).With("conn", 7).WithGroup("g").With("k", "v")
	log.Warn("dropped")
	log.Error("kept")
	out := buf.String()
	if strings.Contains(out, "dropped") || !strings.Contains(out, "msg=kept conn=7 g.k=v") {
		t.Errorf("log output %q", out)
	}
	if !log.Handler().Enabled(context.Background(), slog.LevelError) || log.Handler().Enabled(context.Background(), slog.LevelWarn) {
		t.Error("Enabled does not follow the floor")
	}
}
