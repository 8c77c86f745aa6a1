package logging

import (
	"context"
	"log/slog"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
)

// New returns the logging interceptor. A nil logger discards.
func New(logger *slog.Logger) core.Interceptor {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return func(next core.Handler) core.Handler {
		return func(ctx context.Context, m *core.Message) (*core.Message, error) {
			start := time.Now()
			resp, err := next(ctx, m)
			level := slog.LevelDebug
			switch {
			case err != nil:
				level = slog.LevelWarn
			case resp != nil && resp.Kind == core.KindError:
				level = slog.LevelInfo
			}
			if !logger.Enabled(ctx, level) {
				return resp, err
			}
			code := 0
			if err == nil && resp != nil && resp.Kind == core.KindError {
				code = resp.ErrorCode() // parses JSON: only once the record is wanted
			}
			attrs := make([]slog.Attr, 0, 10)
			attrs = append(attrs,
				slog.String("direction", m.Direction.String()),
				slog.String("kind", m.Kind.String()),
				slog.String("method", m.Method),
				slog.Duration("duration", time.Since(start)))
			if m.Session != nil {
				attrs = append(attrs, slog.String("session", m.Session.LogID()), slog.String("principal", m.Session.Principal), slog.String("route", m.Session.Route),
					slog.String("era", m.Session.Era.String()))
			}
			if m.Name != "" {
				key := "tool"
				switch m.Method {
				case "prompts/get":
					key = "prompt"
				case "resources/read", "resources/subscribe", "resources/unsubscribe":
					key = "uri"
				}
				attrs = append(attrs, slog.String(key, m.Name))
			}
			if !m.ID.IsZero() {
				attrs = append(attrs, slog.String("id", string(m.ID)))
			}
			if code != 0 {
				attrs = append(attrs, slog.Int("error_code", code))
			}
			if err != nil {
				attrs = append(attrs, slog.String("error", err.Error()))
			}
			logger.LogAttrs(ctx, level, "mcp_exchange", attrs...)
			return resp, err
		}
	}
}
