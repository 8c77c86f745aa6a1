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
	running bool     // between start and stop
	routes  []string // every route in force, checked or not
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
	// kick asks the running checker to check now; it closes the channel
	// it receives once that check is done.
	kick chan chan struct{}
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
	h.routes = h.routes[:0]
	want := map[string]*builtRoute{}
	for _, b := range set {
		h.routes = append(h.routes, b.cfg.Name)
		if b.cfg.Health != nil && b.checker != nil {
			want[b.cfg.Name] = b
		}
	}
	for name, rc := range h.checks {
		if b, ok := want[name]; ok && *b.cfg.Health == rc.cfg && b.checker == rc.checker {
			continue
		}
		// Not waited for: a check under way (a stdio process being
		// stopped) must not hold up the reload; it records nothing
		// once cancelled.
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

// stop ends the checks and waits for them (a stdio check's process is
// gone before the upstreams close), outside the lock so /readyz answers.
func (h *upstreamHealth) stop() {
	h.mu.Lock()
	h.running = false
	var done []chan struct{}
	for _, rc := range h.checks {
		if d := h.stopLocked(rc); d != nil {
			done = append(done, d)
		}
	}
	h.mu.Unlock()
	for _, d := range done {
		<-d
	}
}

func (h *upstreamHealth) startLocked(rc *routeCheck) {
	if rc.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	rc.cancel, rc.done = cancel, make(chan struct{})
	if rc.kick == nil {
		rc.kick = make(chan chan struct{})
	}
	go func() {
		defer close(rc.done)
		h.run(ctx, rc)
	}()
}

// stopLocked cancels rc's goroutine and returns what closes when it has
// returned; nil if it was not running.
func (h *upstreamHealth) stopLocked(rc *routeCheck) chan struct{} {
	if rc.cancel == nil {
		return nil
	}
	rc.cancel()
	rc.cancel = nil
	return rc.done
}

// states reports every route's state: up, or down when its checks say
// so; nil before the first sync.
func (h *upstreamHealth) states() map[string]string {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.routes) == 0 {
		return nil
	}
	out := make(map[string]string, len(h.routes))
	for _, name := range h.routes {
		out[name] = RouteUp
		if rc := h.checks[name]; rc != nil && rc.down.Load() {
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
		var kicked chan struct{}
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case kicked = <-rc.kick:
			timer.Stop()
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
		if kicked != nil {
			close(kicked)
		}
		timer.Reset(delay)
	}
}

// checkNow has every running check run once at once and waits for them,
// at most until ctx ends.
func (h *upstreamHealth) checkNow(ctx context.Context) {
	if h == nil {
		return
	}
	h.mu.Lock()
	var kicks []chan chan struct{}
	for _, rc := range h.checks {
		if rc.cancel != nil && rc.kick != nil {
			kicks = append(kicks, rc.kick)
		}
	}
	h.mu.Unlock()
	var waits []chan struct{}
	for _, k := range kicks {
		d := make(chan struct{})
		select {
		case k <- d:
			waits = append(waits, d)
		case <-ctx.Done():
			return
		}
	}
	for _, d := range waits {
		select {
		case <-d:
		case <-ctx.Done():
			return
		}
	}
}
