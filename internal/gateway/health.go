package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/metrics"
	"github.com/mcpgate/mcpgate/internal/store"
)

// health is the gateway's operational side: its metrics registry, the
// store monitor, readiness, and the admin listener that serves them.
type health struct {
	metrics  *metrics.Registry
	storeMon *metrics.StoreMonitor
	cluster  *metrics.ClusterMetrics
	// traffic is the session and request metrics (metrics.Traffic).
	traffic *metrics.Traffic
	// upstreamMetrics and upstreams: the routes' health checks
	// (upstreamhealth.go) and process counts.
	upstreamMetrics *metrics.Upstreams
	upstreams       *upstreamHealth
	// serving is true while every client listener accepts and the gateway
	// is not shutting down.
	serving atomic.Bool

	monCancel context.CancelFunc
	monDone   chan struct{}

	// admin and adminLn are set by Run (under Gateway.mu) when
	// admin.listen is configured.
	admin   *http.Server
	adminLn net.Listener

	// clientConns bounds every client listener together
	// (server.max_connections); adminConns the admin listener.
	clientConns, adminConns *connLimit

	// extra are handlers added with HandleAdmin (guarded by Gateway.mu).
	extra map[string]http.Handler
}

// adminShutdownTimeout bounds the admin server's drain: its requests are
// short, and the admin listener is the last thing to close.
const adminShutdownTimeout = 2 * time.Second

// initHealth makes the registry (reg, or a new one) and registers the
// store monitor's metrics in it; New calls it, so validate checks it too.
func (g *Gateway) initHealth(reg *metrics.Registry) error {
	if reg == nil {
		reg = metrics.New()
	}
	mon, err := metrics.NewStoreMonitor(reg, metrics.StoreMonitorOptions{Backend: g.cfg.Store.Kind, Logger: g.log.With("component", "store")})
	if err != nil {
		return fmt.Errorf("metrics: %w (one registry per gateway)", err)
	}
	conns, err := newConnMetrics(reg)
	if err != nil {
		return fmt.Errorf("metrics: %w (one registry per gateway)", err)
	}
	cl, err := metrics.NewClusterMetrics(reg)
	if err != nil {
		return fmt.Errorf("metrics: %w (one registry per gateway)", err)
	}
	reloads, err := reloadCounter(reg)
	if err != nil {
		return fmt.Errorf("metrics: %w (one registry per gateway)", err)
	}
	traffic, err := metrics.NewTraffic(reg)
	if err != nil {
		return fmt.Errorf("metrics: %w (one registry per gateway)", err)
	}
	g.health.metrics, g.health.storeMon, g.health.cluster, g.reloads = reg, mon, cl, reloads
	ups, err := metrics.NewUpstreams(reg)
	if err != nil {
		return fmt.Errorf("metrics: %w (one registry per gateway)", err)
	}
	g.health.traffic, g.health.upstreamMetrics = traffic, ups
	g.health.upstreams = newUpstreamHealth(ups, g.log.With("component", "health"))
	g.health.clientConns = newConnLimit("client", g.cfg.Server.MaxConnections, conns, g.log)
	g.health.adminConns = newConnLimit("admin", config.AdminMaxConnections, conns, g.log)
	return nil
}

// Metrics returns the gateway's registry: serve it elsewhere, or register
// an embedding program's own collectors in it.
func (g *Gateway) Metrics() *metrics.Registry { return g.health.metrics }

// AdminAddr returns the admin listener's bound address once Run is
// listening, or nil when there is none.
func (g *Gateway) AdminAddr() net.Addr {
	<-g.ready
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.health.adminLn == nil {
		return nil
	}
	return g.health.adminLn.Addr()
}

// watchStore starts the store monitor on st; stopStoreMonitor ends it.
func (g *Gateway) watchStore(st store.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	g.health.monCancel, g.health.monDone = cancel, done
	// Failures of the store's own background writes (the touch flush)
	// reach no caller: the store reports them to the same counter.
	if r, ok := st.(store.ErrorReporter); ok {
		r.ReportErrors(g.health.storeMon.CountError)
	}
	go func() {
		defer close(done)
		g.health.storeMon.Run(ctx, st)
	}()
}

// stopStoreMonitor stops the monitor before the store closes, so that
// closing is not reported as an outage.
func (g *Gateway) stopStoreMonitor() {
	if g.health.monCancel != nil {
		g.health.monCancel()
		<-g.health.monDone
		g.health.monCancel = nil
	}
}

// startAdmin binds admin.listen, if set, and serves the admin endpoints.
func (g *Gateway) startAdmin() error {
	addr := g.cfg.Admin.Listen
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("admin: listen %s: %w", addr, err)
	}
	ln = g.health.adminConns.wrap(ln, true)
	loopback := config.LoopbackAddress(addr)
	srv := &http.Server{
		Handler:           g.adminHandler(loopback),
		ReadHeaderTimeout: g.cfg.Server.ReadHeaderTimeout,
		ReadTimeout:       g.cfg.Server.ReadTimeout,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
	}
	g.mu.Lock()
	g.health.admin, g.health.adminLn = srv, ln
	g.mu.Unlock()
	g.log.Info("admin_listening", "address", ln.Addr().String(), "loopback", loopback)
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.log.Error("admin_serve_failed", "address", ln.Addr().String(), "error", err)
		}
	}()
	return nil
}

// stopAdmin closes the admin listener, letting requests in flight finish.
func (g *Gateway) stopAdmin() {
	g.mu.Lock()
	srv := g.health.admin
	g.health.admin = nil
	g.mu.Unlock()
	if srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		_ = srv.Close()
	}
}

// adminHandler serves /metrics, /healthz and /readyz. On a loopback
// listener only loopback Host names are accepted, so that a web page
// cannot read it through DNS rebinding.
func (g *Gateway) adminHandler(loopback bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", g.health.metrics.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeStatus(w, http.StatusOK, readiness{Status: "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		r := g.readiness()
		code := http.StatusOK
		if len(r.NotReady) > 0 {
			code = http.StatusServiceUnavailable
		}
		writeStatus(w, code, r)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		h := g.health.extra[r.URL.Path]
		g.mu.Unlock()
		switch {
		case h != nil:
			h.ServeHTTP(w, r)
		case r.URL.Path == "/metrics" || r.URL.Path == "/healthz" || r.URL.Path == "/readyz":
			w.Header().Set("Allow", "GET, HEAD") // what the mux says for a method its GET patterns lack
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		default:
			http.NotFound(w, r)
		}
	})
	if !loopback {
		return mux
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isLoopbackHost(r.Host) {
			http.Error(w, "host not allowed on a loopback admin listener", http.StatusForbidden)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// HandleAdmin serves h at path (exactly; every method) on the admin
// listener, beside /metrics, /healthz and /readyz and behind the same
// Host check, from now on, before or while the gateway runs; without an
// admin listener it serves nothing.
func (g *Gateway) HandleAdmin(path string, h http.Handler) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.health.extra == nil {
		g.health.extra = map[string]http.Handler{}
	}
	g.health.extra[path] = h
}

// Readiness is what /readyz answers: whether the gateway can serve, and
// what keeps it from serving or is degraded.
type Readiness = readiness

// Readiness reports the gateway's readiness now.
func (g *Gateway) Readiness() Readiness { return g.readiness() }

// readiness is the body of /healthz and /readyz.
type readiness struct {
	// Status is "ok" (healthz), "ready" or "not_ready".
	Status string `json:"status"`
	// NotReady names what keeps the gateway from serving: "listeners"
	// (starting or shutting down), "store" (unreachable, fail-closed).
	NotReady []string `json:"not_ready,omitempty"`
	// Degraded names what is down without stopping service: "store"
	// under store.on_unavailable: fail-open; "upstreams" while some
	// route's upstream is down but readiness does not require it.
	Degraded []string `json:"degraded,omitempty"`
	// Routes is each route's upstream state, "up" or "down" (its health
	// checks, routes[].health; a route without checks is "up"). With
	// admin.ready_requires: any (the default) the gateway is ready while
	// at least one route is up; with all, only while every route is.
	// Empty in /healthz.
	Routes map[string]string `json:"routes,omitempty"`
}

// RouteHealth is each route's upstream state ("up" or "down"), as in
// Readiness.Routes.
func (g *Gateway) RouteHealth() map[string]string { return g.health.upstreams.states() }

// CheckHealth runs every route's upstream health check once, now, waits
// for them (at most until ctx ends) and returns the readiness they leave.
func (g *Gateway) CheckHealth(ctx context.Context) Readiness {
	g.health.upstreams.checkNow(ctx)
	return g.readiness()
}

func (g *Gateway) readiness() readiness {
	var r readiness
	if !g.health.serving.Load() {
		r.NotReady = append(r.NotReady, "listeners")
	}
	r.Routes = g.RouteHealth()
	up := 0
	for _, s := range r.Routes {
		if s == RouteUp {
			up++
		}
	}
	switch {
	case up == len(r.Routes):
	case up == 0 || g.cfg.Admin.ReadyRequires == config.ReadyRequiresAll:
		r.NotReady = append(r.NotReady, "upstreams")
	default:
		r.Degraded = append(r.Degraded, "upstreams")
	}
	if !g.health.storeMon.Up() {
		if g.cfg.Store.OnUnavailable == "fail-open" {
			r.Degraded = append(r.Degraded, "store")
		} else {
			r.NotReady = append(r.NotReady, "store")
		}
	}
	r.Status = "ready"
	if len(r.NotReady) > 0 {
		r.Status = "not_ready"
	}
	return r
}

func writeStatus(w http.ResponseWriter, code int, body readiness) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}

// isLoopbackHost reports whether a Host header names this machine by a
// loopback name or address.
func isLoopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
