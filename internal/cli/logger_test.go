package cli

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"regexp"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/logs"
)

// TestLoggerDurations: both log formats write a duration as Go and the
// configuration file write it ("1.5s"), JSON too (not integer
// nanoseconds), inside groups as well.
func TestLoggerDurations(t *testing.T) {
	logLine := func(format string) string {
		var b bytes.Buffer
		log := newLogger(&config.Config{Log: config.Log{Level: "info", Format: format}}, &b, new(slog.LevelVar))
		log.Info("shutting_down", "timeout", 1500*time.Millisecond, slog.Group("store", "outage", 2*time.Minute), "count", 3)
		return b.String()
	}
	t.Run("json", func(t *testing.T) {
		var got map[string]any
		if err := json.Unmarshal([]byte(logLine("json")), &got); err != nil {
			t.Fatal(err)
		}
		delete(got, "time")
		want := map[string]any{"level": "INFO", "msg": "shutting_down", "timeout": "1.5s", "store": map[string]any{"outage": "2m0s"}, "count": 3.0}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("JSON log line (-want +got):\n%s", diff)
		}
	})
	t.Run("text", func(t *testing.T) {
		got := regexp.MustCompile(`^time=\S+ `).ReplaceAllString(logLine("text"), "")
		want := "level=INFO msg=shutting_down timeout=1.5s store.outage=2m0s count=3\n"
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("text log line (-want +got):\n%s", diff)
		}
	})
}

// TestLoggerComponentLevels: log.levels gives a component a level of its
// own, above or below log.level.
func TestLoggerComponentLevels(t *testing.T) {
	var b bytes.Buffer
	cfg := &config.Config{Log: config.Log{Level: "warn", Format: "text", Levels: map[string]string{"frontend": "debug", "upstream": "error"}}}
	level := new(slog.LevelVar)
	log := newLogger(cfg, &b, level)
	levels := logs.LevelsOf(log.Handler())
	log.With("component", "frontend").Debug("frontend_debug")
	log.With("component", "upstream").Warn("upstream_warn")
	log.With("component", "session").Warn("session_warn")
	log.With("component", "session").Info("session_info")
	got := b.String()
	for _, want := range []string{"frontend_debug", "session_warn"} {
		if !regexp.MustCompile(`msg=` + want + `\b`).MatchString(got) {
			t.Errorf("%s missing:\n%s", want, got)
		}
	}
	for _, not := range []string{"upstream_warn", "session_info"} {
		if regexp.MustCompile(`msg=` + not + `\b`).MatchString(got) {
			t.Errorf("%s logged:\n%s", not, got)
		}
	}
	if l, own := levels.Level("upstream"); !own || l != slog.LevelError || level.Level() != slog.LevelWarn {
		t.Errorf("upstream level %v (own %v), global %v", l, own, level.Level())
	}
}
