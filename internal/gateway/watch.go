package gateway

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/internal/config"
)

// Outcomes of a reload, the label of mcpgate_config_reloads_total.
const (
	ReloadApplied         = "applied"          // the new configuration is in force
	ReloadUnchanged       = "unchanged"        // it equals the one in force: nothing done
	ReloadInvalid         = "invalid"          // it does not load or validate: nothing changed
	ReloadRestartRequired = "restart_required" // it changes what only a restart can: nothing changed
	ReloadFailed          = "failed"           // building it failed (an upstream, auth): nothing changed
)

// reloadCounter is mcpgate_config_reloads_total of one registry.
func reloadCounter(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mcpgate_config_reloads_total",
		Help: "Configuration reloads by outcome: applied, unchanged, invalid, restart_required, failed.",
	}, []string{"outcome"})
	for _, o := range []string{ReloadApplied, ReloadUnchanged, ReloadInvalid, ReloadRestartRequired, ReloadFailed} {
		c.WithLabelValues(o)
	}
	if err := reg.Register(c); err != nil {
		return nil, err
	}
	return c, nil
}

// reloadOutcome classifies what Reload returned.
func reloadOutcome(err error) string {
	var (
		cfgErr  *config.Error
		restart *RestartRequired
	)
	switch {
	case err == nil:
		return ReloadApplied
	case errors.As(err, &cfgErr):
		return ReloadInvalid
	case errors.As(err, &restart):
		return ReloadRestartRequired
	}
	return ReloadFailed
}

// WatchOptions say what Watch watches.
type WatchOptions struct {
	// Path is the configuration file, read again on every trigger and
	// applied as Apply does (parsed as Options.Source says). Empty: there
	// is no file, and SIGHUP is only logged.
	Path string
	// File reloads when the file changes (an editor's write or rename, a
	// Kubernetes ConfigMap's swap of its ..data link), once it has been
	// quiet for Debounce.
	File bool
	// Debounce is the quiet time after the last change before a reload.
	// Default 250ms.
	Debounce time.Duration
	// Signal reloads on SIGHUP.
	Signal bool
}

// Watch reloads the configuration whenever its file changes or, with
// opts.Signal, the process gets SIGHUP, until ctx ends or stop is called.
// Each attempt is logged (config_reloaded, config_unchanged, or
// config_reload_refused with its trigger and every problem) and counted
// in mcpgate_config_reloads_total; a refused configuration leaves the
// running one untouched. The watch is in place when Watch returns (an
// error if the file's directory cannot be watched); stop ends it and
// waits for a reload in progress.
func (g *Gateway) Watch(ctx context.Context, opts WatchOptions) (stop func(), err error) {
	if opts.File && opts.Path == "" {
		return nil, errors.New("gateway: WatchOptions.File needs a Path")
	}
	if opts.Debounce <= 0 {
		opts.Debounce = 250 * time.Millisecond
	}
	var (
		fw   *fsnotify.Watcher
		name string
	)
	if opts.File {
		if fw, err = fsnotify.NewWatcher(); err != nil {
			return nil, fmt.Errorf("gateway: watching %s: %w", opts.Path, err)
		}
		// The directory, not the file: editors and ConfigMaps replace the
		// file, which ends a watch on the file itself.
		if err := fw.Add(filepath.Dir(opts.Path)); err != nil {
			fw.Close()
			return nil, fmt.Errorf("gateway: watching %s: %w", opts.Path, err)
		}
		name = filepath.Base(opts.Path)
	}
	var hup chan os.Signal
	if opts.Signal {
		hup = make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if fw != nil {
			defer fw.Close()
		}
		if hup != nil {
			defer signal.Stop(hup)
		}
		g.watch(ctx, opts, fw, name, hup)
	}()
	return func() { cancel(); <-done }, nil
}

// watch is Watch's loop; fw and hup may be nil.
func (g *Gateway) watch(ctx context.Context, opts WatchOptions, fw *fsnotify.Watcher, name string, hup <-chan os.Signal) {
	var (
		events <-chan fsnotify.Event
		errs   <-chan error
	)
	if fw != nil {
		events, errs = fw.Events, fw.Errors
	}
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-events:
			base := filepath.Base(ev.Name)
			if base != name && base != "..data" || ev.Op == fsnotify.Chmod {
				continue
			}
			debounce.Reset(opts.Debounce)
		case err := <-errs:
			g.log.Warn("config_watch_error", "path", opts.Path, "error", err)
		case <-debounce.C:
			g.reloadFile(ctx, opts.Path, "file")
		case <-hup:
			g.reloadFile(ctx, opts.Path, "signal")
		}
	}
}

// reloadFile applies the text of the file at path, by and through
// trigger; Apply logs and counts the outcome.
func (g *Gateway) reloadFile(ctx context.Context, path, trigger string) {
	if path == "" {
		g.log.Info("config_reload_skipped", "trigger", trigger, "reason", "the configuration came from the command line, not a file")
		return
	}
	text, err := os.ReadFile(path)
	if err != nil {
		g.reloadRefused(trigger, ReloadInvalid, err)
		return
	}
	_, _ = g.Apply(ctx, text, trigger, trigger, false)
}

// reloadRefused logs and counts a configuration refused before Reload.
func (g *Gateway) reloadRefused(trigger, outcome string, err error) {
	g.reloads.WithLabelValues(outcome).Inc()
	g.log.Warn("config_reload_refused", "trigger", trigger, "outcome", outcome, "error", err)
}
