package gateway

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
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

// WatchOptions say where a running gateway's configuration comes from,
// so that Watch can read it again.
type WatchOptions struct {
	// Path is the configuration file. A change to it (an editor's write
	// or rename, a Kubernetes ConfigMap's swap of its ..data link) reloads
	// once the file has been quiet for Debounce. Empty: no file watch.
	Path string
	// Load reads the configuration again, as the gateway was started with
	// it (command-line overrides included). Required.
	Load func() (*config.Config, error)
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
	if opts.Load == nil {
		return nil, errors.New("gateway: WatchOptions.Load is required")
	}
	if opts.Debounce <= 0 {
		opts.Debounce = 250 * time.Millisecond
	}
	var (
		fw   *fsnotify.Watcher
		name string
	)
	if opts.Path != "" {
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
			_, _ = g.ReloadFrom(ctx, "file", opts.Load)
		case <-hup:
			_, _ = g.ReloadFrom(ctx, "signal", opts.Load)
		}
	}
}

// ReloadFrom loads a configuration with load and puts it in force with
// Reload, logging and counting the outcome (see Watch); trigger says
// what asked for it ("file", "signal", or a caller's own word). It
// returns the outcome and Reload's (or load's) error.
func (g *Gateway) ReloadFrom(ctx context.Context, trigger string, load func() (*config.Config, error)) (string, error) {
	cfg, err := load()
	if err != nil {
		g.reloadRefused(trigger, ReloadInvalid, err)
		return ReloadInvalid, err
	}
	if reflect.DeepEqual(cfg, g.config()) {
		g.reloads.WithLabelValues(ReloadUnchanged).Inc()
		g.log.Info("config_unchanged", "trigger", trigger)
		return ReloadUnchanged, nil
	}
	err = g.Reload(ctx, cfg)
	outcome := reloadOutcome(err)
	if err != nil {
		g.log.Warn("config_reload_refused", "trigger", trigger, "outcome", outcome, "error", err)
	}
	return outcome, err // success: Reload logged config_reloaded
}

// reloadRefused logs and counts a configuration refused before Reload.
func (g *Gateway) reloadRefused(trigger, outcome string, err error) {
	g.reloads.WithLabelValues(outcome).Inc()
	g.log.Warn("config_reload_refused", "trigger", trigger, "outcome", outcome, "error", err)
}
