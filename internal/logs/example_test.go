package logs_test

import (
	"log/slog"
	"os"

	"github.com/mcpgate/mcpgate/internal/logs"
)

// One component at debug, the rest at the global info.
func ExampleLevels() {
	global := new(slog.LevelVar) // info
	levels := logs.NewLevels(global, "frontend", "upstream")
	_ = levels.Set("frontend", slog.LevelDebug)
	plain := &slog.HandlerOptions{Level: slog.Level(-8), ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}
	log := slog.New(levels.Handler(slog.NewTextHandler(os.Stdout, plain)))
	log.With("component", "frontend").Debug("written")
	log.With("component", "upstream").Debug("dropped")
	log.With("component", "upstream").Info("written too")
	// Output:
	// level=DEBUG msg=written component=frontend
	// level=INFO msg="written too" component=upstream
}
