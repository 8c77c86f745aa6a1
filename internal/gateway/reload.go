package gateway

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/mcpgate/mcpgate/internal/auth"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/frontend"
	"github.com/mcpgate/mcpgate/internal/interceptors/quota"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/upstream"
	"github.com/mcpgate/mcpgate/internal/upstream/bridge"
	"github.com/mcpgate/mcpgate/internal/upstream/resilient"
	"github.com/mcpgate/mcpgate/internal/upstream/shared"
)

// A reload changes what can change while listeners serve: the routes (and
// their upstreams, chains, timeouts and caps) and the session manager's
// caps and default lifetimes. Everything else is fixed when the gateway
// starts; a reload that would change it is refused (RestartRequired).

// liveSet is what the last successful New or Reload put in force.
type liveSet struct {
	cfg    *config.Config
	routes routeSet
	// closed is set by shutdown: a reload then has nothing to change.
	closed bool
}

// builtRoute is one configured route with its upstream.
type builtRoute struct {
	cfg config.Route
	up  upstream.Upstream
	fr  *frontend.Route
	// quota is the route's quota stage (nil: no quota applies), which
	// reads a session's usage.
	quota *quota.Stage
	// checker checks the upstream's health (the upstream under the era
	// bridge); nil for an upstream that cannot be checked.
	checker upstream.Checker
}

// routeSet are the built routes, in configuration order.
type routeSet []*builtRoute

func (s routeSet) named(name string) *builtRoute {
	for _, b := range s {
		if b.cfg.Name == name {
			return b
		}
	}
	return nil
}

func (s routeSet) uses(up upstream.Upstream) bool {
	for _, b := range s {
		if b.up == up {
			return true
		}
	}
	return false
}

func (s routeSet) frontendRoutes() []*frontend.Route {
	out := make([]*frontend.Route, len(s))
	for i, b := range s {
		out[i] = b.fr
	}
	return out
}

func (s routeSet) close() {
	for _, b := range s {
		_ = b.up.Close()
	}
}

// sameUpstream reports whether two configurations of a route build the
// same upstream, which a reload then keeps with its sessions.
func sameUpstream(a, b config.Route) bool {
	return reflect.DeepEqual(a.Upstream, b.Upstream) && a.CacheHints == b.CacheHints
}

// buildRoutes builds the routes of cfg: a route of prev with the same name
// and upstream configuration keeps its upstream, the others get a new one
// (returned in fresh, which the caller closes if it does not use them).
func (g *Gateway) buildRoutes(cfg *config.Config, prev routeSet, authn *auth.Authenticator) (set routeSet, fresh []upstream.Upstream, errs []error) {
	for i, rc := range cfg.Routes {
		var up upstream.Upstream
		var checker upstream.Checker
		if p := prev.named(rc.Name); p != nil && sameUpstream(p.cfg, rc) {
			up, checker = p.up, p.checker
		} else {
			inner, err := g.newUpstream(rc, g.log, g.tap("upstream"))
			if err != nil {
				errs = append(errs, fmt.Errorf("routes[%d] (%s): %w", i, rc.Name, err))
				continue
			}
			g.procs.attach(inner, rc.Name)
			checker, _ = inner.(upstream.Checker)
			if rc.Upstream.Shared() {
				// Under the resilient wrapper: a repeat is one more
				// request of the session on the shared Conn.
				inner = shared.New(inner, shared.Options{Share: rc.Upstream.Share, MaxShared: rc.Upstream.MaxShared,
					Logger: g.log.With("component", "upstream", "route", rc.Name), Tap: g.tap("upstream")})
			}
			if o, ok := resilientOptions(rc, g.log, g.resilience); ok {
				// Below the bridge: its own requests (a legacy side's
				// initialize, its tools/list refresh) are guarded too, and
				// a repeat is in the upstream's era.
				inner = resilient.New(inner, o)
			}
			// Every route serves clients of both eras (unless client_era
			// pins one): the bridge translates when the upstream speaks
			// the other.
			up = bridge.New(inner, bridge.Options{Era: upstreamEra(rc.Upstream.Era), StateKey: stateKey(cfg.Sessions.IDKeys), Logger: g.log.With("component", "upstream", "route", rc.Name), Tap: g.tap("bridge"),
				CacheTTL: rc.CacheHints.TTL, CacheScope: rc.CacheHints.Scope})
			fresh = append(fresh, up)
		}
		env, rep := stageEnv(rc.Name, g.log, g.Metrics())
		stages, qs, err := g.stages(cfg, env, rep, authn)
		if err != nil {
			errs = append(errs, fmt.Errorf("routes[%d] (%s): %w", i, rc.Name, err))
			continue
		}
		set = append(set, &builtRoute{cfg: rc, up: up, quota: qs, checker: checker, fr: &frontend.Route{
			Name: rc.Name, Path: rc.Path, Clients: rc.ClientEra, Upstream: up,
			Stages:         stages,
			RequestTimeout: rc.RequestTimeout, IdleTimeout: rc.IdleTimeout, TTL: rc.TTL,
			Cap:        session.Cap{Max: rc.MaxSessions, Policy: session.Policy(rc.WhenFull)},
			RetryTools: rc.RetryTools, TrustAnnotations: rc.TrustAnnotations,
			Local:  rc.Upstream.Stdio != nil || rc.Upstream.Embedded,
			Caller: rc.Upstream.Credentials != nil,
		}})
	}
	if len(errs) > 0 {
		for _, u := range fresh {
			_ = u.Close()
		}
		return nil, nil, errs
	}
	return set, fresh, nil
}

// config is the configuration in force (the last one Reload accepted).
func (g *Gateway) config() *config.Config {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	return g.live.cfg
}

// RestartRequired is Reload's error for a configuration that changes
// settings a running gateway cannot change; nothing was changed.
type RestartRequired struct {
	// Paths name each such setting, as in the configuration file
	// ("listeners[0]", "store.kind", "sessions.id_keys").
	Paths []string
}

func (e *RestartRequired) Error() string {
	return "gateway: these settings take effect only after a restart: " + strings.Join(e.Paths, ", ")
}

// restartRequired lists the settings that differ between running and next
// and cannot change live: listeners, server, log, admin, store, cluster,
// and in sessions the id keys, rate limits and resumption budgets. Routes
// and the other session settings can.
func restartRequired(running, next *config.Config) []string {
	var paths []string
	if len(running.Listeners) != len(next.Listeners) {
		paths = append(paths, "listeners")
	} else {
		for i := range running.Listeners {
			if !reflect.DeepEqual(running.Listeners[i], next.Listeners[i]) {
				paths = append(paths, fmt.Sprintf("listeners[%d]", i))
			}
		}
	}
	paths = diffFields(paths, "server", running.Server, next.Server, nil)
	paths = diffFields(paths, "log", running.Log, next.Log, nil)
	paths = diffFields(paths, "admin", running.Admin, next.Admin, map[string]bool{"mcp": true})
	paths = diffFields(paths, "store", running.Store, next.Store, nil)
	paths = diffFields(paths, "cluster", running.Cluster, next.Cluster, nil)
	paths = diffFields(paths, "telemetry", running.Telemetry, next.Telemetry, nil) // one tracer for the gateway's life
	if !reflect.DeepEqual(running.Audit, next.Audit) {
		paths = append(paths, "audit") // one trail for the gateway's life: its chain and sinks
	}
	live := map[string]bool{"idle_timeout": true, "ttl": true, "max": true, "when_full": true,
		"per_principal": true, "per_tenant": true, "per_address": true}
	return diffFields(paths, "sessions", running.Sessions, next.Sessions, live)
}

// diffFields appends prefix.<yaml name> for each field of the structs a
// and b that differs, except those named in live.
func diffFields(paths []string, prefix string, a, b any, live map[string]bool) []string {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	for i := range va.NumField() {
		f := va.Type().Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		if live[name] || reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			continue
		}
		paths = append(paths, prefix+"."+name)
	}
	return paths
}

// errShutDown is Reload's error once the gateway has shut down.
var errShutDown = errors.New("gateway: shut down")

// Reload puts cfg in force without a restart. cfg is a configuration as
// config.Load returns it (defaults applied); it is validated first, and
// an invalid one returns every problem (*config.Error) with nothing
// changed. A change to a setting that cannot change live returns a
// *RestartRequired naming each, with nothing changed.
//
// Otherwise Reload builds what the new routes need (an upstream for each
// route that is new or whose upstream configuration changed; chains for
// all), swaps the route table atomically, and applies the session caps
// and default lifetimes (session.Manager.SetBounds: lowered caps refuse
// or evict new sessions, never existing ones). A route that keeps its
// name and upstream keeps its upstream and its sessions, which pick up
// the new version at their next request; requests in flight finish on
// the old one. A removed route's path answers 404 at once; its sessions
// (and those of a route whose upstream changed) end once their requests
// in flight have finished (at most server.shutdown_timeout), with reason
// route_removed (route_changed), and then their upstream is closed. That
// retirement continues after Reload returns; shutdown waits for it.
//
// Every call is counted in mcpgate_config_reloads_total by outcome.
func (g *Gateway) Reload(ctx context.Context, cfg *config.Config) (err error) {
	defer func() { g.reloads.WithLabelValues(reloadOutcome(err)).Inc() }()
	if err := cfg.Validate(); err != nil {
		return err
	}
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	old := g.live
	if old.closed {
		return errShutDown
	}
	paths := restartRequired(old.cfg, cfg)
	if !g.customAuth && auth.Configured(old.cfg) != auth.Configured(cfg) {
		paths = append(paths, "auth") // the frontend's authentication step is fixed when built
	}
	if len(paths) > 0 {
		return &RestartRequired{Paths: paths}
	}
	redaction, err := outputRedaction(cfg)
	if err != nil {
		return err
	}
	authn, err := g.newAuth(cfg)
	if err != nil {
		return err
	}
	set, fresh, errs := g.buildRoutes(cfg, old.routes, authn)
	if len(errs) > 0 {
		authn.Close()
		return errors.Join(errs...)
	}
	ret, err := g.front.SwapRoutes(set.frontendRoutes())
	if err != nil {
		authn.Close()
		for _, u := range fresh {
			_ = u.Close()
		}
		return err
	}
	g.authn.Swap(authn).Close()
	g.redaction.Set(redaction)
	g.sessions.SetBounds(bounds(cfg.Sessions))
	g.live = &liveSet{cfg: cfg, routes: set}
	g.health.upstreams.sync(set)
	var gone []upstream.Upstream
	for _, b := range old.routes {
		if !set.uses(b.up) {
			gone = append(gone, b.up)
		}
	}
	g.log.Info("config_reloaded", "routes", len(set), "new_upstreams", len(fresh), "retired", ret.Routes())
	g.notifyVisibleChanges(old.cfg, cfg, set)
	if len(gone) == 0 && len(ret.Routes()) == 0 {
		return nil
	}
	g.retiring.Add(1)
	go func() {
		defer g.retiring.Done()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Server.ShutdownTimeout)
		ret.Finish(rctx)
		cancel()
		for _, u := range gone {
			_ = u.Close()
		}
	}()
	return nil
}

// listChanged are the notifications that tell a client to list again.
var listChanged = []string{"notifications/tools/list_changed", "notifications/resources/list_changed", "notifications/prompts/list_changed"}

// notifyVisibleChanges tells the live sessions of every route kept by a
// reload whose policies changed that what they may see changed: the
// tools, resources and prompts a policy hides or shows (the next listing
// is filtered by the new policies, which the session's next request
// picks up).
func (g *Gateway) notifyVisibleChanges(prev, next *config.Config, set routeSet) {
	for _, b := range set {
		name := b.cfg.Name
		if prev.Routes == nil || !slices.ContainsFunc(prev.Routes, func(r config.Route) bool { return r.Name == name }) {
			continue
		}
		if reflect.DeepEqual(prev.RoutePolicies(name), next.RoutePolicies(name)) {
			continue
		}
		if n := g.front.NotifyRoute(name, listChanged...); n > 0 {
			g.log.Info("list_changed_sent", "route", name, "sessions", n, "why", "policies changed")
		}
	}
}
