package gateway

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/metrics"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// Route states in Readiness.Routes.
const (
	RouteUp   = "up"
	RouteDown = "down"
)

// maxBackoff bounds how far checks of a down upstream back off: at most
// this many intervals apart.
const maxBackoff = 8

// upstreamHealth runs the health checks of the routes that configure
// them (routes[].health), one goroutine per route, and knows each
// route's state. A route without checks counts as up.
type upstreamHealth struct {
	metrics *metrics.Upstreams
	log     *slog.Logger

	mu      sync.Mutex
	running bool // between start and stop
	checks  map[string]*routeCheck
}

// routeCheck is one route's checker.
type routeCheck struct {
	route   string
	cfg     config.Health
	checker upstream.Checker
	down    atomic.Bool
	cancel  context.CancelFunc
	done    chan struct{}
}

func newUpstreamHealth(m *metrics.Upstreams, log *slog.Logger) *upstreamHealth {
	return &upstreamHealth{metrics: m, log: log, checks: map[string]*routeCheck{}}
}

// sync makes the checks those of set: a route whose health block and
// upstream are unchanged keeps its checker and state; others start
// afresh (counted up until their checks say otherwise); routes gone or
// without checks stop. Before start it only remembers them.
func (h *upstreamHealth) sync(set routeSet) {
	h.mu.Lock()
	defer h.mu.Unlock()
	want := map[string]*builtRoute{}
	for _, b := range set {
		if b.cfg.Health != nil && b.checker != nil {
			want[b.cfg.Name] = b
		}
	}
	for name, rc := range h.checks {
		if b, ok := want[name]; ok && *b.cfg.Health == rc.cfg && b.checker == rc.checker {
			continue
		}
		h.stopLocked(rc)
		delete(h.checks, name)
		h.metrics.Forget(name)
	}
	for name, b := range want {
		if _, ok := h.checks[name]; ok {
			continue
		}
		rc := &routeCheck{route: name, cfg: *b.cfg.Health, checker: b.checker}
		h.checks[name] = rc
		h.metrics.Up(name, true)
		if h.running {
			h.startLocked(rc)
		}
	}
}

// start runs the checks; stop ends them and waits.
func (h *upstreamHealth) start() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.running = true
	for _, rc := range h.checks {
		h.startLocked(rc)
	}
}

func (h *upstreamHealth) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.running = false
	for _, rc := range h.checks {
		h.stopLocked(rc)
	}
}

func (h *upstreamHealth) startLocked(rc *routeCheck) {
	if rc.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	rc.cancel, rc.done = cancel, make(chan struct{})
	go func() {
		defer close(rc.done)
		h.run(ctx, rc)
	}()
}

func (h *upstreamHealth) stopLocked(rc *routeCheck) {
	if rc.cancel == nil {
		return
	}
	rc.cancel()
	<-rc.done
	rc.cancel = nil
}

// states reports every checked route's state.
func (h *upstreamHealth) states() map[string]string {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]string, len(h.checks))
	for name, rc := range h.checks {
		out[name] = RouteUp
		if rc.down.Load() {
			out[name] = RouteDown
		}
	}
	return out
}

// run checks at once, then every interval while up; while down, the
// interval doubles with each failed check, up to maxBackoff intervals.
// An up route turns down after failure_threshold failed checks in a row,
// a down one up after success_threshold answered checks in a row.
func (h *upstreamHealth) run(ctx context.Context, rc *routeCheck) {
	var fails, oks int
	delay := time.Duration(0)
	timer := time.NewTimer(delay)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		cctx, cancel := context.WithTimeout(ctx, rc.cfg.Timeout)
		start := time.Now()
		err := rc.checker.Check(cctx)
		took := time.Since(start)
		cancel()
		if ctx.Err() != nil {
			return // stopped mid-check: says nothing about the upstream
		}
		h.metrics.Checked(rc.route, took.Seconds())
		delay = rc.cfg.Interval
		if err != nil {
			fails, oks = fails+1, 0
			h.log.Debug("upstream_check_failed", "route", rc.route, "failures", fails, "error", err)
			if !rc.down.Load() && fails >= rc.cfg.FailureThreshold {
				rc.down.Store(true)
				h.metrics.Up(rc.route, false)
				h.log.Warn("upstream_down", "route", rc.route, "failures", fails, "error", err)
			}
			if rc.down.Load() {
				// Back off while down: 2, 4, ... maxBackoff intervals.
				n := min(fails-rc.cfg.FailureThreshold+1, 3)
				delay = min(rc.cfg.Interval<<n, rc.cfg.Interval*maxBackoff)
			}
		} else {
			fails, oks = 0, oks+1
			if rc.down.Load() && oks >= rc.cfg.SuccessThreshold {
				rc.down.Store(false)
				h.metrics.Up(rc.route, true)
				h.log.Info("upstream_up", "route", rc.route, "took", took)
			}
		}
		timer.Reset(delay)
	}
}
