package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/auth"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/frontend"
	"github.com/mcpgate/mcpgate/internal/interceptors/quota"
	"github.com/mcpgate/mcpgate/internal/interceptors/sessiontools"
	"github.com/mcpgate/mcpgate/internal/logs"
	"github.com/mcpgate/mcpgate/internal/meter"
	"github.com/mcpgate/mcpgate/internal/metrics"
	"github.com/mcpgate/mcpgate/internal/pipeline"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/sessionid"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/bolt"
	"github.com/mcpgate/mcpgate/internal/store/memory"
	redisstore "github.com/mcpgate/mcpgate/internal/store/redis"
	"github.com/mcpgate/mcpgate/internal/telemetry"
	"github.com/mcpgate/mcpgate/internal/upstream"
	"github.com/mcpgate/mcpgate/internal/upstream/httpup"
	"github.com/mcpgate/mcpgate/internal/upstream/inproc"
	"github.com/mcpgate/mcpgate/internal/upstream/resilient"
	"github.com/mcpgate/mcpgate/internal/upstream/stdio"
)

// Options are what a configuration file cannot say.
type Options struct {
	// Logger. If nil, a discard logger is used.
	Logger *slog.Logger
	// SessionHooks subscribe to session lifecycle events.
	SessionHooks []session.Hooks
	// Observe, if set, sees every route's events besides messages:
	// refusals before the chain and the quota stage's decisions
	// (pipeline.Event). It must not block.
	Observe func(ctx context.Context, ev *pipeline.Event)
	// Metrics is the registry the gateway's metrics go to, one per
	// gateway. If nil, the gateway makes its own (see Gateway.Metrics).
	Metrics *metrics.Registry
	// Authenticate establishes the identity of every client request (see
	// frontend.Options.Authenticate), in place of the configuration's auth
	// blocks (whose scope rules and metadata still apply). If nil, the
	// configuration's auth decides (anonymous without any).
	Authenticate frontend.Authenticator
	// Source is where the configuration came from: its text is recorded
	// as the first version of the history, and texts applied later
	// (Watch, the admin server) are parsed as it says.
	Source ConfigSource
	// Stages, if set, gives more stages for a route's chain (a stage of
	// pipeline.Order the configuration does not build, such as an audit
	// stage of the embedding program), called each time the route's chain
	// is built.
	Stages func(route string) []pipeline.Stage
	// Embedded returns the go-sdk server of one session of a route whose
	// upstream is embedded (config.Upstream.Embedded): the library's
	// in-process upstream (upstream/inproc).
	Embedded func(ctx context.Context, s *core.SessionInfo) *mcp.Server
	// TraceExporter, if set, receives the gateway's spans in place of the
	// OTLP exporter telemetry.otlp describes (tests and embedders), each
	// as it ends.
	TraceExporter sdktrace.SpanExporter
}

// Gateway is a built, not yet running, mcpgate.
type Gateway struct {
	cfg      *config.Config
	log      *slog.Logger
	store    store.Store
	sessions *session.Manager
	front    *frontend.Frontend
	rates    *rateLimits
	// meters are the quotas' budgets of principals and tenants, kept
	// across reloads; in Redis once Run binds them to a shared store.
	meters     *quota.Meters
	quotaState *quotaState // saves meters to an embedded store
	// upHealth is, per route with session_tools, its upstream's health
	// as its sessions found it, kept across reloads.
	upHealthMu sync.Mutex
	upHealth   map[string]*sessiontools.Health
	procs      *procRecorder
	// resilience are the retry and breaker metrics every route's
	// resilient wrapper shares.
	resilience *resilient.Metrics

	// reloadMu serializes reloads; live is what they change (reload.go).
	// cfg stays the configuration the gateway was built with: what a
	// reload may change is read from live, the rest cannot differ.
	reloadMu sync.Mutex
	// reloads is mcpgate_config_reloads_total (watch.go).
	reloads *prometheus.CounterVec
	live    *liveSet
	// source and history are the configuration's origin and its applied
	// versions (control.go, history.go).
	source  ConfigSource
	history history
	// applied is the version in force on this replica (0: none recorded).
	applied atomic.Int64
	// retiring counts retirements of routes a reload took out, which
	// shutdown waits for before closing the remaining upstreams.
	retiring sync.WaitGroup

	mu        sync.Mutex
	listeners []net.Listener
	ready     chan struct{}
	readyOnce sync.Once

	health health
	// observed is the frontend the upstreams' taps report to, set once it
	// is built (an upstream may speak before that: its era probe).
	observed atomic.Pointer[frontend.Frontend]
	// authn is the authenticator in force (auth.go); nil without
	// credentials. customAuth: Options.Authenticate replaces it.
	authn      atomic.Pointer[auth.Authenticator]
	customAuth bool
	// extraStages is Options.Stages.
	extraStages func(route string) []pipeline.Stage
	// trail is the audit trail (audit.go); nil without an audit block.
	trail *audit.Trail
	// tracer makes the routes' spans (telemetry); nil when tracing is
	// off. It is built once: a reload does not change it.
	tracer *telemetry.Tracer
	// redaction cleans the log and the spans' texts of secrets; a reload
	// sets it anew.
	redaction *logs.Redaction
	// embedded makes the servers of embedded routes (Options.Embedded).
	embedded func(ctx context.Context, s *core.SessionInfo) *mcp.Server
}

// New builds everything the configuration describes without listening:
// it is the whole of `mcpgate validate`.
func New(cfg *config.Config, opts Options) (*Gateway, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// What the gateway logs, and the texts of its spans, are cleaned of
	// secrets (redaction.go): in the levels handler of a logger made by
	// package logs, by a handler of its own around any other.
	redaction, err := outputRedaction(cfg)
	if err != nil {
		return nil, err
	}
	red := new(logs.Redaction)
	if lv := logs.LevelsOf(log.Handler()); lv != nil {
		red = lv.Redaction()
	} else if log.Handler() != slog.DiscardHandler {
		log = slog.New(logs.RedactHandler(log.Handler(), red))
	}
	red.Set(redaction)
	g := &Gateway{cfg: cfg, log: log, redaction: red, ready: make(chan struct{}), extraStages: opts.Stages, embedded: opts.Embedded}
	if err := g.initHealth(opts.Metrics); err != nil {
		return nil, err
	}
	trail, err := newTrail(cfg, g, g.Metrics())
	if err != nil {
		return nil, err
	}
	g.trail = trail
	g.tracer, err = telemetry.New(context.Background(), cfg.Telemetry,
		telemetry.Options{Exporter: opts.TraceExporter, Sync: opts.TraceExporter != nil, Logger: log.With("component", "telemetry"), Redact: red.String})
	if err != nil {
		return nil, err
	}
	ss := cfg.Sessions
	g.rates = newRateLimits(cfg, log)
	g.meters = quota.NewMeters(cfg.Store.OnUnavailable == storeFailOpen, longestTTL(cfg)+time.Hour, log.With("component", "quota"))
	g.procs = newProcRecorder(log, g.health.upstreamMetrics)
	if g.resilience, err = resilient.NewMetrics(g.Metrics()); err != nil {
		g.closeTracer()
		return nil, err
	}
	g.live = &liveSet{cfg: cfg}
	authn, err := g.newAuth(cfg)
	if err != nil {
		g.closeTracer()
		return nil, err
	}
	g.authn.Store(authn)
	g.source = opts.Source
	if t := opts.Source.Text; t != nil {
		_, _ = g.history.record(context.Background(), ConfigVersion{Time: time.Now().UTC(), Who: "start", Source: "start",
			Text: string(config.RedactText(t, cfg.Secrets()))})
	}
	set, _, errs := g.buildRoutes(cfg, nil, authn)
	g.live.routes = set
	g.health.upstreams.sync(set)
	for i, l := range cfg.Listeners {
		if l.TLS != nil {
			if _, err := tls.LoadX509KeyPair(l.TLS.CertFile, l.TLS.KeyFile); err != nil {
				errs = append(errs, fmt.Errorf("listeners[%d].tls: %w", i, err))
			}
		}
	}
	if len(errs) > 0 {
		g.closeUpstreams()
		g.closeAuth()
		g.closeTracer()
		return nil, errors.Join(errs...)
	}
	ids, err := minter(ss.IDKeys)
	if err != nil {
		g.closeUpstreams()
		g.closeAuth()
		g.closeTracer()
		return nil, err
	}
	authenticate := opts.Authenticate
	g.customAuth = authenticate != nil
	if authenticate == nil && authn != nil {
		authenticate = g.authenticate
	}
	b := bounds(ss)
	traffic := g.health.traffic
	hooks := append(slices.Clone(opts.SessionHooks), traffic.Hooks())
	if trail != nil {
		hooks = append(hooks, trail.Hooks())
	}
	// Every refusal before a chain, whatever the route, is seen here once:
	// the session rejections are counted, and the trail records it; the
	// stages in each chain see the rest (decisions, originated).
	observe := func(ctx context.Context, ev *pipeline.Event) {
		if ev.Kind == pipeline.Refused {
			traffic.Refused(ctx, ev)
			if trail != nil {
				trail.Observe(ctx, ev)
			}
		}
		if opts.Observe != nil {
			opts.Observe(ctx, ev)
		}
	}
	g.sessions = session.NewManager(session.Options{
		Logger: log.With("component", "session"), Hooks: hooks,
		DefaultIdleTimeout: b.DefaultIdleTimeout, DefaultTTL: b.DefaultTTL,
		Global: b.Global, PerPrincipal: b.PerPrincipal, PerTenant: b.PerTenant, PerAddress: b.PerAddress,
	})
	front, err := frontend.New(frontend.Options{
		Logger: log.With("component", "frontend"), StoreErrors: g.health.storeMon.CountError, ForwardErrors: g.health.cluster.ForwardFailed, Sessions: g.sessions, MaxBodyBytes: int64(cfg.Server.MaxBodyBytes),
		KeepAlive: cfg.Server.KeepAlive, StreamAfter: cfg.Server.StreamAfter, WriteTimeout: cfg.Server.WriteTimeout,
		Creation:           g.rates.creationLimits(),
		ResumeSessionBytes: int64(ss.Resumption.SessionBytes), ResumeTotalBytes: int64(ss.Resumption.TotalBytes),
		IDs: ids, StoreFailOpen: cfg.Store.OnUnavailable == "fail-open",
		Authenticate: authenticate,
		Observe:      observe,
	}, set.frontendRoutes())
	if err != nil {
		g.Close()
		return nil, err
	}
	g.front = front
	g.observed.Store(front)
	return g, nil
}

// longestTTL is the longest a session of cfg may live.
func longestTTL(cfg *config.Config) time.Duration {
	ttl := cfg.Sessions.TTL
	for _, r := range cfg.Routes {
		ttl = max(ttl, r.TTL)
	}
	return ttl
}

// openStore opens the configured session store.
func openStore(c config.Store, log *slog.Logger) (store.Store, error) {
	switch c.Kind {
	case config.StoreMemory:
		return memory.New(), nil
	case config.StoreRedis:
		opts := redisstore.Options{FlushInterval: c.FlushInterval, Logger: log}
		if r := c.Redis; r != nil {
			opts.Addr, opts.Username, opts.Password, opts.DB, opts.Prefix = r.Addr, r.Username, r.Password.Reveal(), r.DB, r.Prefix
			if r.TLS {
				opts.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := redisstore.Open(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		return st, nil
	}
	path := filepath.Join(c.DataDir, "sessions.db")
	st, err := bolt.Open(path, bolt.Options{FlushInterval: c.FlushInterval, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return st, nil
}

// minter builds the session id signer; nil (plain ids) without keys.
func minter(keys []config.IDKey) (*sessionid.Minter, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	conv := make([]sessionid.Key, len(keys))
	for i, k := range keys {
		conv[i] = sessionid.Key{ID: k.ID, Secret: []byte(k.Secret.Reveal())}
	}
	m, err := sessionid.NewMinter(conv[0], conv[1:]...)
	if err != nil {
		return nil, fmt.Errorf("sessions.id_keys: %w", err)
	}
	return m, nil
}

func (g *Gateway) newUpstream(rc config.Route, log *slog.Logger, tap upstream.Tap) (upstream.Upstream, error) {
	log = log.With("component", "upstream")
	if rc.Upstream.Embedded {
		if g.embedded == nil {
			return nil, errors.New("upstream: an embedded route needs the embedding program's server")
		}
		if rc.Upstream.Credentials != nil {
			return nil, errors.New("upstream.credentials: an embedded server takes no upstream credentials")
		}
		return inproc.New(inproc.Options{Server: g.embedded, Tap: tap}, rc.Name, log)
	}
	cred, err := credentialSource(rc, log)
	if err != nil {
		return nil, fmt.Errorf("upstream.%w", err)
	}
	switch {
	case rc.Upstream.HTTP != nil:
		o := httpOptions(rc.Upstream.HTTP)
		o.Tap = tap
		if cred != nil {
			o.Credential = cred
		}
		return httpup.New(o, rc.Name, log)
	case rc.Upstream.Stdio != nil:
		o := stdioOptions(rc.Upstream.Stdio)
		o.Tap = tap
		if cred != nil {
			o.Credential = cred
		}
		if err := stdio.CheckSandbox(o.Sandbox); err != nil {
			return nil, fmt.Errorf("upstream.stdio.sandbox: %w", err)
		}
		return stdio.New(o, rc.Name, log), nil
	}
	return nil, errors.New("no upstream")
}

// Handler returns the handler of listener i, for tests and embedding.
func (g *Gateway) Handler(i int) http.Handler {
	l := g.cfg.Listeners[i]
	proxies := make([]netip.Prefix, 0, len(l.TrustedProxies))
	for _, tp := range l.TrustedProxies {
		if p, err := config.ParseTrustedProxy(tp); err == nil { // Validate refused the others
			proxies = append(proxies, p)
		}
	}
	return g.withMetadata(g.front.Handler(frontend.ListenerPolicy{
		Loopback: config.LoopbackAddress(l.Address), AllowedHosts: l.AllowedHosts, AllowedOrigins: l.AllowedOrigins,
		TrustedProxies: proxies,
	}))
}

// Sessions exposes the session manager (for hooks, tests, the control plane).
func (g *Gateway) Sessions() *session.Manager { return g.sessions }

// Addrs returns the bound listener addresses once Run is listening.
func (g *Gateway) Addrs() []net.Addr {
	<-g.ready
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]net.Addr, len(g.listeners))
	for i, l := range g.listeners {
		out[i] = l.Addr()
	}
	return out
}

// Run listens on every listener until ctx ends, then shuts down: stop
// accepting, drain in-flight requests within the shutdown timeout, end
// every session (stopping stdio processes), close upstreams.
func (g *Gateway) Run(ctx context.Context) error {
	servers, err := g.start(ctx, true)
	if err != nil {
		return err
	}
	<-ctx.Done()
	g.log.Info("shutting_down", "timeout", g.cfg.Server.ShutdownTimeout)
	g.shutdown(servers)
	return nil
}

// Embed starts what Run starts except the client listeners: the store,
// restored sessions, the admin listener and the cluster hop when
// configured. The embedding program serves Handler(0) itself. stop shuts
// down as Run does when its ctx ends (drain in-flight requests, end every
// session, close upstreams and the store); ctx bounds the gateway's
// background work and should outlive every request.
func (g *Gateway) Embed(ctx context.Context) (stop func(), err error) {
	servers, err := g.start(ctx, false)
	if err != nil {
		return nil, err
	}
	var once sync.Once
	return func() { once.Do(func() { g.shutdown(servers) }) }, nil
}

// start brings the gateway up (listening when listen is set) and returns
// the servers shutdown stops.
func (g *Gateway) start(ctx context.Context, listen bool) ([]*http.Server, error) {
	// The admin listener comes first: /healthz answers while the store
	// opens and sessions come back, and /readyz says what is not ready.
	if err := g.startAdmin(); err != nil {
		g.readyOnce.Do(func() { close(g.ready) })
		g.shutdown(nil)
		return nil, err
	}
	// The store is opened here, not in New, so that validate never takes
	// the data directory's lock from a running gateway.
	st, err := openStore(g.cfg.Store, g.log.With("component", "store"))
	if err != nil {
		g.readyOnce.Do(func() { close(g.ready) })
		g.shutdown(nil)
		return nil, err
	}
	g.store = st
	// The trail opens before any session comes back, so the restored
	// sessions' records are in it.
	if err := g.openTrail(); err != nil {
		g.readyOnce.Do(func() { close(g.ready) })
		g.shutdown(nil)
		return nil, err
	}
	g.reapLeftovers(ctx, st) // what a crashed gateway left running
	go g.authn.Load().Warm() // the issuers' key sets, before the first token needs them
	if err := g.provision(st); err != nil {
		g.readyOnce.Do(func() { close(g.ready) })
		g.shutdown(nil)
		return nil, err
	}
	// The configuration's history: with a shared store, the versions any
	// replica records are followed here, and a start with a file that
	// differs from the last version is one (the file wins).
	shared, err := g.history.bind(ctx, st)
	if err != nil {
		g.log.Warn("config_history_load_failed", "error", err)
	}
	if v, ok := g.history.current(); ok {
		g.applied.Store(int64(v.Version))
	}
	if shared {
		g.followConfig(ctx)
	}
	g.rates.bind(ctx, st, g.cfg.Store.FlushInterval)
	if rs, ok := st.(*redisstore.Store); ok {
		// Principal and tenant budgets live in Redis, shared by every
		// replica: one script call per reservation and per settle.
		g.meters.Bind(func(name string, spec meter.Spec) meter.Meter {
			return meter.NewRedis(ctx, rs.Scripter(), rs.KeyPrefix(), name, spec)
		})
	} else {
		g.quotaState = bindQuotaState(ctx, g.meters, st, g.cfg.Store.FlushInterval, g.log)
	}
	g.watchStore(st)
	go func() {
		if err := g.front.Subscribe(ctx); err != nil && ctx.Err() == nil {
			g.log.Error("store_subscribe_failed", "error", err)
		}
	}()
	// Sessions from before a restart come back before the first request.
	if n, err := g.front.Restore(ctx); err != nil {
		g.log.Error("sessions_not_restored", "error", err)
	} else if n > 0 {
		g.log.Info("sessions_restored", "count", n)
	}
	var servers []*http.Server
	hopSrv, err := g.startHop(ctx)
	if err != nil {
		g.readyOnce.Do(func() { close(g.ready) })
		g.shutdown(nil)
		return nil, err
	}
	if hopSrv != nil {
		servers = append(servers, hopSrv)
	}
	for i, lc := range g.cfg.Listeners {
		if !listen {
			break
		}
		ln, err := net.Listen("tcp", lc.Address)
		if err != nil {
			g.readyOnce.Do(func() { close(g.ready) })
			g.shutdown(servers)
			return nil, fmt.Errorf("listen %s: %w", lc.Address, err)
		}
		// Every client listener draws on one budget of connections: the
		// descriptors it protects are the process's.
		ln = g.health.clientConns.wrap(ln, lc.TLS == nil)
		g.mu.Lock()
		g.listeners = append(g.listeners, ln)
		g.mu.Unlock()
		srv := &http.Server{
			Handler:           g.Handler(i),
			ReadHeaderTimeout: g.cfg.Server.ReadHeaderTimeout,
			ReadTimeout:       g.cfg.Server.ReadTimeout,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
		}
		servers = append(servers, srv)
		scheme := "http"
		if lc.TLS != nil {
			scheme = "https"
		}
		g.log.Info("listening", "address", ln.Addr().String(), "scheme", scheme, "loopback", config.LoopbackAddress(lc.Address))
		go func() {
			var err error
			if lc.TLS != nil {
				err = srv.ServeTLS(ln, lc.TLS.CertFile, lc.TLS.KeyFile)
			} else {
				err = srv.Serve(frontend.JSONRefusals(ln)) // net/http's own refusals as JSON-RPC errors
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				g.log.Error("serve_failed", "address", ln.Addr().String(), "error", err)
			}
		}()
	}
	if listen {
		g.logConnectionBudget()
	}
	for _, rc := range g.config().Routes {
		g.log.Info("route", "name", rc.Name, "path", rc.Path, "upstream", rc.Upstream.Kind(), "era", rc.Upstream.Era)
	}
	g.health.upstreams.start()
	g.health.serving.Store(true)
	g.readyOnce.Do(func() { close(g.ready) })
	return servers, nil
}

func (g *Gateway) shutdown(servers []*http.Server) {
	g.health.serving.Store(false) // /readyz: 503 while draining
	g.health.upstreams.stop()
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.Server.ShutdownTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Go(func() {
			if err := s.Shutdown(ctx); err != nil {
				_ = s.Close()
			}
		})
	}
	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	// In-flight requests get up to half the budget to finish; then sessions
	// end, which closes the long-lived GET streams Shutdown would otherwise
	// wait for.
	deadline, _ := ctx.Deadline()
	half := time.Now().Add(time.Until(deadline) / 2)
	tick := time.NewTicker(10 * time.Millisecond)
	for g.front.InFlight() > 0 && time.Now().Before(half) {
		select {
		case <-drained:
		case <-tick.C:
		}
	}
	tick.Stop()
	g.sessions.Close(ctx)
	<-drained
	g.retiring.Wait() // routes a reload took out close their own upstreams
	g.front.CloseChains()
	g.rates.close()
	g.quotaState.close()
	g.closeUpstreams()
	g.closeAuth()
	g.closeStore()
	g.closeTrail()
	g.closeTracer()
	g.stopAdmin()
}

func (g *Gateway) closeStore() {
	g.stopStoreMonitor()
	if g.store != nil {
		if err := g.store.Close(); err != nil {
			g.log.Error("store_close_failed", "error", err)
		}
		g.store = nil
	}
}

// Close releases a gateway that was built but never run (validate).
func (g *Gateway) Close() {
	if g.sessions != nil {
		g.sessions.Close(context.Background())
	}
	if g.front != nil {
		g.front.CloseChains()
	}
	g.closeUpstreams()
	g.closeAuth()
	g.closeStore()
	g.closeTracer()
}

// closeTracer exports the spans still buffered and stops the tracer.
func (g *Gateway) closeTracer() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.tracer.Shutdown(ctx); err != nil {
		g.log.Warn("trace_shutdown_failed", "error", err)
	}
}

// closeUpstreams closes the upstreams of the routes in force.
func (g *Gateway) closeUpstreams() {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	if !g.live.closed {
		g.live.closed = true
		g.live.routes.close()
	}
}

// provision hands the frontend and the session manager what exists only
// once the store is open, before anything is served: one step, once.
func (g *Gateway) provision(st store.Store) error {
	fp := frontend.Provisions{Store: st}
	if g.cfg.Cluster.Listen != "" {
		fp.ClusterKeys = hopKeys(g.cfg.Sessions.IDKeys)
	}
	if err := g.front.Provision(fp); err != nil {
		return err
	}
	var sp session.Provisions
	if rs, ok := st.(*redisstore.Store); ok {
		sp.Admitter = sharedCaps{rs}
	}
	return g.sessions.Provision(sp)
}

// logConnectionBudget says how many client connections the gateway takes
// and warns when that leaves too few descriptors for everything else.
func (g *Gateway) logConnectionBudget() {
	maxConns := g.cfg.Server.MaxConnections
	limit, ok := config.FDLimit()
	if !ok {
		g.log.Info("connection_limit", "max_connections", maxConns)
		return
	}
	g.log.Info("connection_limit", "max_connections", maxConns, "admin_max_connections", config.AdminMaxConnections, "fd_limit", limit)
	if maxConns+config.AdminMaxConnections >= limit {
		g.log.Warn("connection_limit_above_fd_limit", "max_connections", maxConns, "fd_limit", limit)
	}
}

// bounds are the session manager's caps and default lifetimes from the
// configuration.
func bounds(ss config.Sessions) session.Bounds {
	return session.Bounds{
		DefaultIdleTimeout: ss.IdleTimeout, DefaultTTL: ss.TTL,
		Global:       session.Cap{Max: ss.Max, Policy: session.Policy(ss.WhenFull)},
		PerPrincipal: session.Cap{Max: ss.PerPrincipal.Max, Policy: session.Policy(ss.PerPrincipal.WhenFull)},
		PerTenant:    session.Cap{Max: ss.PerTenant.Max, Policy: session.Policy(ss.PerTenant.WhenFull)},
		PerAddress:   perAddressCap(ss.PerAddress),
	}
}

// perAddressCap is the manager's per-address cap from the configuration
// (nil, as from a Config built without defaults, is no cap).
func perAddressCap(c *config.Cap) session.Cap {
	if c == nil {
		return session.Cap{}
	}
	return session.Cap{Max: c.Max, Policy: session.Policy(c.WhenFull)}
}
