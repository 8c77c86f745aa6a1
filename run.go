package mcpgate

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"gopkg.in/yaml.v3"

	"github.com/mcpgate/mcpgate/internal/admin"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/gateway"
)

// Run serves opts, listeners and routes included, as `mcpgate serve`
// does, until ctx ends: the admin listener and its MCP server when
// configured, SIGHUP reloads, then a graceful shutdown. Without a Logger
// it logs to stderr as the configuration's log section says.
func Run(ctx context.Context, opts *Options) error {
	if opts == nil {
		opts = &Options{}
	}
	text, err := yaml.Marshal(opts)
	if err != nil {
		return fmt.Errorf("mcpgate: options: %w", err)
	}
	cfg, err := config.LoadBytes(text)
	if err != nil {
		return fmt.Errorf("mcpgate: %w", err)
	}
	level := new(slog.LevelVar)
	level.Set(cfg.Log.SlogLevel())
	log := opts.Logger
	if log == nil {
		ho := &slog.HandlerOptions{Level: level}
		if cfg.Log.Format == "text" {
			log = slog.New(slog.NewTextHandler(os.Stderr, ho))
		} else {
			log = slog.New(slog.NewJSONHandler(os.Stderr, ho))
		}
	}
	gw, err := gateway.New(cfg, gateway.Options{Logger: log, SessionHooks: opts.Hooks.internal(),
		Source: gateway.ConfigSource{Text: text, Parse: config.LoadBytesOver}})
	if err != nil {
		return fmt.Errorf("mcpgate: %w", err)
	}
	ctl := admin.New(admin.Options{Gateway: gw, Logger: log, LogLevel: level})
	defer ctl.Close()
	gw.HandleAdmin("/mcp", ctl)
	stopWatch, err := gw.Watch(ctx, gateway.WatchOptions{Signal: true})
	if err != nil {
		gw.Close()
		return err
	}
	defer stopWatch()
	return gw.Run(ctx)
}
