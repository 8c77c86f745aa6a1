package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/internal/core"
)

// Order lists every known stage, the one nearest the client first. Stages
// added by later capabilities take their place here, not in init side
// effects. A client message meets them in this order on its way to the
// server (and its response in the reverse order on the way back); a server
// message meets them in the reverse order on its way to the client (and the
// client's answer to a server request in this order on the way back). So
// the stage nearest the client is the same in both directions:
//
//	tracing  – OpenTelemetry: the server span of each client request,
//	           outermost so that it spans every stage's work, and the
//	           events of the decisions made inside it (internal/telemetry)
//	audit    – the audit trail: sees the client's raw request coming in and
//	           what the client really gets going out (after policy
//	           redaction), and every refusal made by the stages inside it
//	logging  – structured log of each exchange
//	metrics  – request counts and durations by method and outcome, and
//	           the decisions of the stages inside it, counted
//	auth     – per-message authorisation (scopes per method and tool); the
//	           caller's identity is known before the chain runs
//	session_tools – mcpgate's tools and resources inside the session
//	           (routes[].session_tools): outside limits, so that a session
//	           out of budget can still read its status and end itself, and
//	           its own tools spend none of the budgets they report; its
//	           self-imposed tool denials are answered here, before any
//	           budget counts the call, and the limits it lowered are
//	           enforced by the limits stage it sits on; the lists it merges
//	           ours into are the ones policy already filtered
//	limits   – quotas and rate limits
//	policy   – allowlists, schema validation, redaction: nearest the server
//	           of the stages that change messages, so it rewrites what goes
//	           up and redacts what comes back before any other stage sees
//	           it
//	upstream_health – records whether the upstream answered each request
//	           (routes with session_tools, for mcpgate://health): innermost,
//	           so that an answer made by a stage is not taken for the
//	           upstream's; it reads no contents
//	tracing_upstream – the client span of each request sent to the
//	           upstream, whose trace context replaces the client's in
//	           what goes up: innermost, next to the upstream call
var Order = []string{"tracing", "audit", "logging", "metrics", "auth", "session_tools", "limits", "policy", "upstream_health", "tracing_upstream"}

// Env is what the gateway builds a route's stages with.
type Env struct {
	// Route is the route's name.
	Route string
	// Logger carries the route's name.
	Logger *slog.Logger
	// Metrics is the gateway's registry (never the process-wide default).
	// A chain is rebuilt on every reload, so a stage registers its
	// collectors once per gateway, labelled by route, and takes the
	// existing one from prometheus.AlreadyRegisteredError on a rebuild.
	Metrics prometheus.Registerer
	// Report hands an event a stage raises about a message passing the
	// chain (a Decided event: a policy or quota decision) to the
	// observers of the chain's stages, in Order: the audit trail sees the
	// decision and what was behind it. Never nil in an Env the gateway
	// builds (a Reporter's Report); nil in a zero Env, so a stage built
	// without the gateway checks before calling. It runs on the calling
	// goroutine and must not block; observers must not keep ev.
	Report func(ctx context.Context, ev *Event)
}

// Reporter is the Report of one chain's Env: the gateway makes it before
// it builds the chain's stages, and binds it to them once their list is
// known (Bind), so that what a stage reports reaches the observers of the
// same chain, this route's version, whatever the order the stages were
// built in. Report before Bind drops the event.
type Reporter struct {
	route     string
	observers atomic.Pointer[[]func(context.Context, *Event)]
}

// NewReporter makes the Reporter of one route's chain.
func NewReporter(route string) *Reporter { return &Reporter{route: route} }

// Bind sets the observers: those of stages, in Order.
func (r *Reporter) Bind(stages []Stage) {
	sorted := slices.Clone(stages)
	slices.SortStableFunc(sorted, func(a, b Stage) int {
		return slices.Index(Order, a.Name) - slices.Index(Order, b.Name)
	})
	var obs []func(context.Context, *Event)
	for _, s := range sorted {
		if s.Observe != nil {
			obs = append(obs, s.Observe)
		}
	}
	r.observers.Store(&obs)
}

// Report hands ev to the bound observers, with its Route and Time filled
// in when unset; with none it costs one atomic load.
func (r *Reporter) Report(ctx context.Context, ev *Event) {
	obs := r.observers.Load()
	if obs == nil || len(*obs) == 0 {
		return
	}
	if ev.Route == "" {
		ev.Route = r.route
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	for _, o := range *obs {
		o(ctx, ev)
	}
}

// Stage is one named step of the chain. Every field but Name is optional;
// a stage with no interceptor and no observer is left out and costs nothing.
type Stage struct {
	Name string
	// ClientToServer intercepts what the client sends: its requests (and
	// their responses on the way back), its notifications, and its answers
	// to server requests that nobody at the gateway is waiting for.
	ClientToServer core.Interceptor
	// ServerToClient intercepts what the server sends outside responses:
	// notifications, progress, server requests (and the client's answer on
	// the way back). It runs on the session's dispatcher, never on the
	// upstream's reader: it must not block on I/O; a slow one delays only
	// its own session's later server messages. Budget: well under a
	// millisecond per message.
	ServerToClient core.Interceptor
	// Interceptor serves both directions when the direction-specific
	// field is nil (a stage whose code reads m.Direction itself).
	Interceptor core.Interceptor

	// Session, if set, makes the stage's state for one session: called
	// before the session's first message passes this chain (a new, restored
	// or adopted session, or a session moving to this chain after a
	// reload). prev is the state the session held under a stage of the same
	// name in the chain it used before, nil if none: a stage keeps its
	// counters across a reload by taking it over. Interceptors read the
	// state with StateOf.
	Session func(info *core.SessionInfo, prev any) any
	// End, if set, gets a session's state back when the session ends, or
	// when it moves to a chain without this stage. reason is the session's
	// end reason ("moved" for a move).
	End func(info *core.SessionInfo, state any, reason string)
	// Observe, if set, sees the route's events that are not messages
	// passing the chain: refusals made before it, and traffic the gateway
	// makes itself. It runs on the goroutine that raised the event and
	// must not block.
	Observe func(ctx context.Context, ev *Event)
	// Close, if set, runs once when the chain is retired: after a reload
	// replaced it and it fell out of use (a removed route's once its
	// sessions ended; a kept route's old version once no session serves on
	// it and its request timeout has passed since the swap), or at
	// shutdown.
	Close func() error
	// Bind, if set, is given the chain the stage is built into, before any
	// message passes: a stage that decides on messages reports Decision
	// events to the chain's observers with Chain.Observe.
	Bind func(c *Chain)
}

func (s *Stage) c2s() core.Interceptor {
	if s.ClientToServer != nil {
		return s.ClientToServer
	}
	return s.Interceptor
}

func (s *Stage) s2c() core.Interceptor {
	if s.ServerToClient != nil {
		return s.ServerToClient
	}
	return s.Interceptor
}

func (s *Stage) empty() bool {
	return s.c2s() == nil && s.s2c() == nil && s.Observe == nil && s.Session == nil && s.End == nil && s.Close == nil
}

// Chain is one route's compiled chain: the client→server handler, the
// server→client handler, the stages' observers, their per-session state and
// their cleanup. It is immutable once built; a reload builds a new one.
type Chain struct {
	route     string
	stages    []Stage // in Order, empty ones left out
	c2s, s2c  core.Handler
	observers []func(context.Context, *Event)
	stateful  bool // some stage has Session or End
	closeOnce sync.Once
	closeErr  error
}

// Build compiles a chain for the route: toServer is the terminal of the
// client→server direction (the upstream connection), toClient that of the
// server→client direction (the client's stream). Stages are sorted by
// their place in Order; an unknown or repeated name is an error, so a typo
// cannot silently move a stage.
func Build(route string, toServer, toClient core.Handler, stages []Stage) (*Chain, error) {
	seen := map[string]bool{}
	for _, s := range stages {
		if !slices.Contains(Order, s.Name) {
			return nil, fmt.Errorf("pipeline: unknown stage %q (known: %v)", s.Name, Order)
		}
		if seen[s.Name] {
			return nil, fmt.Errorf("pipeline: stage %q given twice", s.Name)
		}
		seen[s.Name] = true
	}
	sorted := slices.DeleteFunc(slices.Clone(stages), func(s Stage) bool { return s.empty() })
	slices.SortStableFunc(sorted, func(a, b Stage) int {
		return slices.Index(Order, a.Name) - slices.Index(Order, b.Name)
	})
	c := &Chain{route: route, stages: sorted, c2s: toServer, s2c: toClient}
	// Client→server: the first stage in Order is outermost.
	for i := len(sorted) - 1; i >= 0; i-- {
		if ic := sorted[i].c2s(); ic != nil {
			c.c2s = ic(c.c2s)
		}
	}
	// Server→client: the last stage in Order is outermost (nearest the
	// server), so the first is nearest the client in both directions.
	for i := range sorted {
		if ic := sorted[i].s2c(); ic != nil {
			c.s2c = ic(c.s2c)
		}
	}
	for _, s := range sorted {
		if s.Observe != nil {
			c.observers = append(c.observers, s.Observe)
		}
		c.stateful = c.stateful || s.Session != nil || s.End != nil
	}
	for _, s := range sorted {
		if s.Bind != nil {
			s.Bind(c)
		}
	}
	return c, nil
}

// Route is the name of the route the chain serves.
func (c *Chain) Route() string { return c.route }

// Stages names the chain's stages in order.
func (c *Chain) Stages() []string {
	names := make([]string, len(c.stages))
	for i, s := range c.stages {
		names[i] = s.Name
	}
	return names
}

// ClientToServer runs a client message through the chain to the server.
func (c *Chain) ClientToServer(ctx context.Context, m *core.Message) (*core.Message, error) {
	return c.c2s(ctx, m)
}

// ServerToClient runs a server message through the chain to the client.
func (c *Chain) ServerToClient(ctx context.Context, m *core.Message) (*core.Message, error) {
	return c.s2c(ctx, m)
}

// Observing reports whether any stage observes events, so that a caller
// can skip building one nobody sees.
func (c *Chain) Observing() bool { return len(c.observers) > 0 }

// Observe hands an event to every stage that observes, in Order.
func (c *Chain) Observe(ctx context.Context, ev *Event) {
	if ev.Route == "" {
		ev.Route = c.route
	}
	for _, o := range c.observers {
		o(ctx, ev)
	}
}

// Enter makes sure the session's stage state belongs to this chain: it is
// called before each message of the session passes the chain, and costs one
// atomic load when nothing changed. A session entering from another chain
// (a reload) hands each stage's state to the new stage of the same name,
// and ends what the new chain has no stage for.
func (c *Chain) Enter(info *core.SessionInfo) {
	h := info.Stages
	if h == nil {
		return
	}
	cur := h.Load()
	if cur != nil && cur.Owner == c {
		return
	}
	if cur == nil && !c.stateful {
		return
	}
	h.Lock()
	defer h.Unlock()
	cur = h.Load()
	if h.Ended() || (cur != nil && cur.Owner == c) {
		return
	}
	next := &core.StageState{Owner: c}
	var taken []string
	for _, s := range c.stages {
		if s.Session == nil {
			continue
		}
		var prev any
		if cur != nil {
			var ok bool
			if prev, ok = cur.Get(s.Name); ok {
				taken = append(taken, s.Name)
			}
		}
		next.Names = append(next.Names, s.Name)
		next.Values = append(next.Values, s.Session(info, prev))
	}
	h.Store(next)
	if cur != nil {
		if old, ok := cur.Owner.(*Chain); ok {
			old.end(info, cur, taken, "moved")
		}
	}
}

// Leave ends the session's stage state: the session has ended for good.
// Later calls of Enter for it do nothing.
func (c *Chain) Leave(info *core.SessionInfo, reason string) {
	h := info.Stages
	if h == nil {
		return
	}
	h.Lock()
	defer h.Unlock()
	cur := h.Load()
	h.End()
	if cur == nil {
		return
	}
	if owner, ok := cur.Owner.(*Chain); ok {
		owner.end(info, cur, nil, reason)
	}
}

// end gives each of st's values to the End of the stage that made it,
// except those another chain took over (taken); a stage with End but no
// Session is told too, with a nil state.
func (c *Chain) end(info *core.SessionInfo, st *core.StageState, taken []string, reason string) {
	for _, s := range c.stages {
		if s.End == nil || slices.Contains(taken, s.Name) {
			continue
		}
		v, _ := st.Get(s.Name)
		s.End(info, v, reason)
	}
}

// Close retires the chain: each stage's Close runs once, in Order, and
// their errors are joined. Call it when no message can pass any more.
func (c *Chain) Close() error {
	c.closeOnce.Do(func() {
		var errs []error
		for _, s := range c.stages {
			if s.Close != nil {
				if err := s.Close(); err != nil {
					errs = append(errs, fmt.Errorf("stage %s: %w", s.Name, err))
				}
			}
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

// StateOf returns the state the named stage keeps for m's session (see
// Stage.Session); nil when there is none.
func StateOf(m *core.Message, stage string) any {
	if m.Session == nil || m.Session.Stages == nil {
		return nil
	}
	st := m.Session.Stages.Load()
	if st == nil {
		return nil
	}
	v, _ := st.Get(stage)
	return v
}
