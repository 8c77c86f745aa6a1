package logs_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/logs"
)

// TestLevels: each component at its own level, the others at the global
// one, and changes at run time.
func TestLevels(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	global := new(slog.LevelVar)
	levels := logs.NewLevels(global, "frontend", "upstream")
	if err := levels.Set("frontend", slog.LevelDebug); err != nil {
		t.Fatal(err)
	}
	if err := levels.Set("upstream", slog.LevelWarn); err != nil {
		t.Fatal(err)
	}
	if err := levels.Set("nope", slog.LevelDebug); err == nil {
		t.Error("an unknown component was given a level")
	}
	log := slog.New(levels.Handler(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug - 4})))
	front := log.With("component", "frontend", "route", "r")
	up := log.With("component", "upstream")
	other := log.With("component", "session")
	front.Debug("front_debug")
	up.Info("up_info")
	up.Warn("up_warn")
	other.Debug("session_debug")
	other.Info("session_info")
	log.Debug("plain_debug")
	front.WithGroup("g").Debug("front_group_debug")
	got := buf.String()
	for _, want := range []string{"front_debug", "up_warn", "session_info", "front_group_debug"} {
		if !strings.Contains(got, want) {
			t.Errorf("%s missing:\n%s", want, got)
		}
	}
	for _, not := range []string{"up_info", "session_debug", "plain_debug"} {
		if strings.Contains(got, not) {
			t.Errorf("%s logged:\n%s", not, got)
		}
	}
	buf.Reset()
	global.Set(slog.LevelDebug)
	levels.Reset("upstream")
	up.Debug("up_debug_now")
	other.Debug("session_debug_now")
	if got := buf.String(); !strings.Contains(got, "up_debug_now") || !strings.Contains(got, "session_debug_now") {
		t.Errorf("after the global level changed:\n%s", got)
	}
	if lv, own := levels.Level("frontend"); lv != slog.LevelDebug || !own {
		t.Errorf("Level(frontend) = %v, %v", lv, own)
	}
}

// BenchmarkDisabled is the cost of a debug line a component's level
// drops.
func BenchmarkDisabled(b *testing.B) {
	levels := logs.NewLevels(new(slog.LevelVar), "frontend")
	log := slog.New(levels.Handler(slog.DiscardHandler)).With("component", "frontend")
	b.ReportAllocs()
	for b.Loop() {
		log.Debug("x", "k", 1)
	}
}
