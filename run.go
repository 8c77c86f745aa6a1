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
	"github.com/mcpgate/mcpgate/internal/logs"
)

// Run serves opts, listeners and routes included, as `mcpgate serve`
// does, until ctx ends: the admin listener and its MCP server when
// configured, SIGHUP reloads (and file changes with Watch), then a
// graceful shutdown.
func Run(ctx context.Context, opts *Options) error {
	if opts == nil {
		opts = &Options{}
	}
	var text []byte
	var err error
	if opts.File != "" {
		if text, err = os.ReadFile(opts.File); err != nil {
			return fmt.Errorf("config: %w", err)
		}
	} else if text, err = yaml.Marshal(opts); err != nil {
		return fmt.Errorf("mcpgate: options: %w", err)
	}
	parse := parser(opts.Override)
	cfg, err := parse(text, nil)
	if err != nil {
		return err
	}
	level, log := opts.LogLevel, opts.Logger
	if level == nil {
		level = new(slog.LevelVar)
		level.Set(cfg.Log.SlogLevel())
	}
	if log == nil {
		log, _ = logs.New(os.Stderr, cfg.Log.Format, level, cfg.Log.Levels, config.Components)
	}
	// The text is the file's, or the options' own encoding: either way
	// the admin server shows it and the history starts with it.
	src := gateway.ConfigSource{Parse: parse, Text: text}
	gw, err := gateway.New(cfg, gateway.Options{Logger: log, SessionHooks: opts.Hooks.internal(), Source: src})
	if err != nil {
		return err
	}
	// The admin MCP server answers while admin.mcp.enabled is on, which a
	// reload may change.
	// log_level_set changes the global level and, when the logger is one
	// of logs.New's, a component's.
	ctl := admin.New(admin.Options{Gateway: gw, Logger: log.With("component", "admin"), LogLevel: level, LogLevels: logs.LevelsOf(log.Handler())})
	defer ctl.Close()
	gw.HandleAdmin("/mcp", ctl)
	// SIGHUP reloads (and no longer ends the process); so does a change to
	// the file with Watch.
	stopWatch, err := gw.Watch(ctx, gateway.WatchOptions{Path: opts.File, File: opts.Watch && opts.File != "", Signal: true})
	if err != nil {
		gw.Close()
		return err
	}
	defer stopWatch()
	return gw.Run(ctx)
}

// parser reads a configuration text as Run does: secrets written REDACTED
// taken from prev, then override applied to its mirror (which is loaded
// again, so what override changed is checked like the file).
func parser(override func(*Options)) func(text []byte, prev *config.Config) (*config.Config, error) {
	return func(text []byte, prev *config.Config) (*config.Config, error) {
		cfg, err := config.LoadBytesOver(text, prev)
		if err != nil || override == nil {
			return cfg, err
		}
		o, err := optionsOf(cfg)
		if err != nil {
			return nil, err
		}
		override(o)
		b, err := yaml.Marshal(o)
		if err != nil {
			return nil, err
		}
		return config.LoadBytes(b)
	}
}
