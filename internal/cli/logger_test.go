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
