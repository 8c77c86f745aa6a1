package frontend

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgate/mcpgate/internal/catalog"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/pipeline"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// The route table is immutable: a swap (SwapRoutes) builds a new one and
// publishes it through one atomic pointer, which each request reads once.
// What a route learns and holds while it serves — its anonymous modern
// sessions, the creations in flight — is
// not in the table but in a routeState, kept by route name across swaps
// as long as the route keeps its upstream.
//
// A session holds the version of its route (configuration and compiled
// chains) it last served a client request on, and picks up the current
// version, found by name, at its next client request (onRoute): a swap
// applies from each session's next request, and requests in flight finish
// on the chain they started on.

// compile builds a route version's chain (both directions, the stages'
// state and observers) around the frontend's terminals.
func (f *Frontend) compile(name string, stages []pipeline.Stage) (*pipeline.Chain, error) {
	return pipeline.Build(name, f.toUpstream, f.toClient, stages)
}

// routeState is the runtime state of a route, shared by its versions.
type routeState struct {
	name string
	// upstream is the upstream this state's sessions were opened on: a
	// version with another upstream gets a state of its own.
	upstream upstream.Upstream

	// anon maps a client address to the modern session of its requests
	// that name no session; flights are the modern sessions being created,
	// by key or address (modernsession.go). mu guards both.
	mu      sync.Mutex
	anon    map[string]*gwSession
	flights map[string]*modernFlight

	// tools is what any session of the route last listed: where a
	// session's own catalog does not know a tool (a modern client's
	// session that has not listed yet), its Mcp-Param-* bindings come from
	// here.
	tools *catalog.Catalog

	// posts counts the requests being served on this state (every method
	// but GET, whose streams last as long as their session).
	posts atomic.Int64
	// retired is set when a swap takes the state out of service; its
	// sessions then end with reason once posts reaches zero, which closes
	// drained (retire).
	retired     atomic.Bool
	reason      session.Reason
	drained     chan struct{}
	drainedOnce sync.Once
}

func newRouteState(name string, up upstream.Upstream) *routeState {
	return &routeState{name: name, upstream: up, drained: make(chan struct{}), tools: catalog.New()}
}

// leave ends one request counted by Frontend.enter.
func (st *routeState) leave() {
	if st.posts.Add(-1) == 0 && st.retired.Load() {
		st.drainedOnce.Do(func() { close(st.drained) })
	}
}

// retire takes st out of service; its sessions end with reason.
func (st *routeState) retire(reason session.Reason) {
	st.reason = reason
	st.retired.Store(true)
	if st.posts.Load() == 0 {
		st.drainedOnce.Do(func() { close(st.drained) })
	}
}

// routeTable is one immutable version of the routes.
type routeTable struct {
	gen    uint64 // increases with every swap
	byPath map[string]*Route
	byName map[string]*Route
}

// routes is the table in force.
func (f *Frontend) routes() *routeTable { return f.table.Load() }

// enter finds the route at path and counts a request on its state, or
// returns nil. A state retired between the look-up and the count is left
// again and the path looked up in the table that retired it, so nothing
// is counted on a state whose retirement may already have seen it idle.
func (f *Frontend) enter(path string) *Route {
	for {
		rt := f.routes().byPath[path]
		if rt == nil {
			return nil
		}
		rt.state.posts.Add(1)
		if !rt.state.retired.Load() {
			return rt
		}
		rt.state.leave()
	}
}

// route is the version of its route the session serves on.
func (g *gwSession) route() *Route { return g.rv.Load() }

// onRoute reports whether the session belongs to route rt, compared by
// name, and makes rt the version it serves on if rt is newer. A session
// whose route state was retired (its route removed, or given another
// upstream) belongs to no route any more.
func (g *gwSession) onRoute(rt *Route) bool {
	for {
		cur := g.route()
		if cur.Name != rt.Name || cur.state.retired.Load() || rt.state.retired.Load() {
			return false
		}
		if rt.gen <= cur.gen || g.rv.CompareAndSwap(cur, rt) {
			return true
		}
	}
}

// buildTable copies routes into a new table of generation gen, with their
// chains compiled and their states attached: the state of the same name
// in states when its upstream is the same, else a new one.
func (f *Frontend) buildTable(routes []*Route, states map[string]*routeState, gen uint64) (*routeTable, error) {
	t := &routeTable{gen: gen, byPath: make(map[string]*Route, len(routes)), byName: make(map[string]*Route, len(routes))}
	var errs []error
	for _, in := range routes {
		if _, dup := t.byPath[in.Path]; dup {
			errs = append(errs, fmt.Errorf("frontend: duplicate route path %q", in.Path))
			continue
		}
		if _, dup := t.byName[in.Name]; dup {
			errs = append(errs, fmt.Errorf("frontend: duplicate route name %q", in.Name))
			continue
		}
		rt := *in
		rt.gen = gen
		if rt.RequestTimeout == 0 {
			rt.RequestTimeout = 5 * time.Minute
		}
		var err error
		if rt.chain, err = f.compile(rt.Name, rt.Stages); err != nil {
			errs = append(errs, fmt.Errorf("frontend: route %q: %w", rt.Name, err))
			continue
		}
		if st := states[rt.Name]; st != nil && st.upstream == rt.Upstream {
			rt.state = st
		} else {
			rt.state = newRouteState(rt.Name, rt.Upstream)
		}
		t.byPath[rt.Path] = &rt
		t.byName[rt.Name] = &rt
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return t, nil
}

// SwapRoutes replaces the route table with routes, atomically: each
// request sees the old table or the new one. A route keeps its runtime
// state and its sessions when the new table has a route of that name with
// the same Upstream; its sessions pick up the new version at their next
// request. A route that is gone, or whose Upstream is another, is retired:
// its path and its sessions no longer serve new requests (404), and
// Retirement.Finish ends its sessions once its requests in flight are
// done. An invalid table (duplicate paths or names, a chain that does not
// build) changes nothing.
func (f *Frontend) SwapRoutes(routes []*Route) (*Retirement, error) {
	f.swapMu.Lock()
	defer f.swapMu.Unlock()
	old := f.routes()
	states := map[string]*routeState{}
	for name, rt := range old.byName {
		states[name] = rt.state
	}
	t, err := f.buildTable(routes, states, old.gen+1)
	if err != nil {
		return nil, err
	}
	ret := &Retirement{f: f}
	for name, st := range states {
		rt := t.byName[name]
		switch {
		case rt == nil:
			st.retire(session.ReasonRouteRemoved)
		case rt.state != st:
			st.retire(session.ReasonRouteChanged)
		default:
			// Kept: its sessions move to the new version at their next
			// request; the old version's chain closes after them.
			f.supersede(old.byName[name])
			continue
		}
		ret.states = append(ret.states, st)
		ret.chains = append(ret.chains, old.byName[name].chain)
	}
	f.table.Store(t)
	slices.SortFunc(ret.states, func(a, b *routeState) int { return cmp.Compare(a.name, b.name) })
	return ret, nil
}

// Retirement is what a swap took out of service.
type Retirement struct {
	f      *Frontend
	states []*routeState
	// chains are the retired routes' chains, closed once their sessions
	// ended (pipeline.Stage.Close).
	chains []*pipeline.Chain
}

// Routes names the retired routes (removed, or given another upstream).
func (r *Retirement) Routes() []string {
	out := make([]string, len(r.states))
	for i, st := range r.states {
		out[i] = st.name
	}
	return out
}

// Upstreams are the upstreams the retired routes' sessions were opened
// on; once Finish has returned, nothing of this frontend uses them.
func (r *Retirement) Upstreams() []upstream.Upstream {
	out := make([]upstream.Upstream, 0, len(r.states))
	for _, st := range r.states {
		if st.upstream != nil {
			out = append(out, st.upstream)
		}
	}
	return out
}

// Finish waits for the requests in flight on the retired routes to end
// (at most until ctx ends), then ends their sessions — reason
// route_removed, or route_changed for a route that got another upstream —
// and returns once they are torn down, with how many ended.
func (r *Retirement) Finish(ctx context.Context) int {
	n := 0
	for _, st := range r.states {
		select {
		case <-st.drained:
		case <-ctx.Done():
			r.f.log.Warn("route_retired_in_flight", "route", st.name, "requests", st.posts.Load())
		}
		ended := r.f.opts.Sessions.EndMatching(context.WithoutCancel(ctx), func(s *session.Session) bool {
			g, ok := s.Value.(*gwSession)
			return ok && g.route().state == st
		}, st.reason)
		r.f.log.Info("route_retired", "route", st.name, "reason", string(st.reason), "sessions", ended)
		n += ended
	}
	for _, ch := range r.chains {
		if err := ch.Close(); err != nil {
			r.f.log.Warn("route_chain_close_failed", "route", ch.Route(), "error", err)
		}
	}
	return n
}

// Provisions are what the frontend gets once its gateway has opened the
// store, before it serves.
type Provisions struct {
	// Store persists legacy sessions so they survive a restart (and, when
	// shared, lets replicas serve each other's); nil keeps them in memory.
	Store store.Store
	// ClusterKeys turn on the internal hop between replicas (the first
	// signs, any verifies). It needs a Store that tracks owners; without
	// one, or without keys, there is no hop.
	ClusterKeys [][]byte
}

// ErrProvisioned is returned by a second Provision, or by one after the
// frontend served a request.
var ErrProvisioned = errors.New("frontend: already provisioned or serving")

// Provision hands the frontend what Provisions describes. It may be
// called once, before the first request.
func (f *Frontend) Provision(p Provisions) error {
	f.swapMu.Lock()
	defer f.swapMu.Unlock()
	if f.provisioned || f.served.Load() {
		return ErrProvisioned
	}
	f.provisioned = true
	f.useStore(p.Store)
	f.useCluster(p.ClusterKeys)
	return nil
}

// NotifyRoute sends the notifications named by methods (each without
// params, such as notifications/tools/list_changed) to every live session
// of the route named route, as if its server had sent them: through the
// server→client chain, to the client's stream (legacy: the GET stream, or
// the backlog until one opens; modern: the session's subscriptions/listen
// streams). It returns the number of sessions told. The gateway calls it
// when a reload changes what those sessions may see.
func (f *Frontend) NotifyRoute(route string, methods ...string) int {
	n := 0
	for _, s := range f.opts.Sessions.List() {
		g, ok := s.Value.(*gwSession)
		if !ok || g.route().Name != route {
			continue
		}
		for _, method := range methods {
			if g.info.Era == core.EraModern {
				// Only a listen stream that asked for it may carry it.
				g.notifyListeners(method)
				continue
			}
			m, err := core.Notification(method, nil)
			if err != nil {
				continue
			}
			m.Direction, m.Era, m.Session, m.Received = core.ServerToClient, g.info.Era, g.info, time.Now()
			g.Deliver(m)
		}
		n++
	}
	return n
}
