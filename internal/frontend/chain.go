package frontend

import (
	"context"
	"net/http"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/pipeline"
)

// The one-pass rule: every message that crosses the gateway passes its
// route's chain exactly once. A client's requests, notifications and
// answers nobody waits for go through c2s; a server's notifications and
// requests (with the client's answer on the way back) through s2c; what the
// gateway says itself, and what it refuses before the chain, reaches the
// chain's observers as events (observeOriginated, refused).

// c2s runs a client message through the session's chain towards the
// server. The session's stage state is made (or moved to a new chain) first.
func (g *gwSession) c2s(ctx context.Context, m *core.Message) (*core.Message, error) {
	ch := g.route().chain
	ch.Enter(g.info)
	return ch.ClientToServer(ctx, m)
}

// s2c runs a server message through the session's chain towards the client.
func (g *gwSession) s2c(ctx context.Context, m *core.Message) (*core.Message, error) {
	ch := g.route().chain
	ch.Enter(g.info)
	return ch.ServerToClient(ctx, m)
}

// leaveChain ends the session's stage state; the session is over.
func (g *gwSession) leaveChain(reason string) {
	g.route().chain.Leave(g.info, reason)
}

// originated tells the session's chain of a message the gateway made
// itself (see pipeline.Originated).
func (g *gwSession) originated(ctx context.Context, m *core.Message, origin string) {
	if ch := g.route().chain; ch.Observing() {
		ch.Observe(ctx, &pipeline.Event{Kind: pipeline.Originated, Time: time.Now(), Session: g.info, Message: m, Origin: origin})
	}
}

// Originated reports a message an upstream part of the gateway (the era
// bridge, an HTTP upstream) made on its own for session s, to the chain of
// the session's route; it is the upstream.Tap the gateway installs.
func (f *Frontend) Originated(ctx context.Context, s *core.SessionInfo, m *core.Message, origin string) {
	if s == nil {
		return
	}
	if rt := f.routeNamed(s.Route); rt != nil && rt.chain.Observing() {
		rt.chain.Observe(ctx, &pipeline.Event{Kind: pipeline.Originated, Time: time.Now(), Session: s, Message: m, Origin: origin})
	}
}

// Observe reports an event of session s (a stage's decision, see
// pipeline.Decision) to the chain of the session's route and to the
// gateway-wide observer (Options.Observe).
func (f *Frontend) Observe(ctx context.Context, s *core.SessionInfo, ev *pipeline.Event) {
	if s == nil {
		return
	}
	ev.Session = s
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	if ev.Principal == "" {
		ev.Principal = s.Principal
	}
	if rt := f.routeNamed(s.Route); rt != nil && rt.chain.Observing() {
		rt.chain.Observe(ctx, ev)
	}
	if f.opts.Observe != nil {
		if ev.Route == "" {
			ev.Route = s.Route
		}
		f.opts.Observe(ctx, ev)
	}
}

// refused tells the observers of a refusal made before the chain: the
// gateway-wide observer (Options.Observe) and the chain of the route the
// request was for, if any. g is the session the request named, when known.
func (f *Frontend) refused(r *http.Request, g *gwSession, m *core.Message, e *core.Error) {
	rt := f.routes().byPath[r.URL.Path]
	if f.opts.Observe == nil && (rt == nil || !rt.chain.Observing()) {
		return
	}
	ev := &pipeline.Event{
		Kind: pipeline.Refused, Time: time.Now(), Message: m, Err: e, Check: pipeline.CheckOf(e),
		HTTPMethod: r.Method, Path: r.URL.Path, RemoteAddr: r.RemoteAddr, Principal: identityOf(r).Principal,
	}
	if g != nil {
		ev.Session = g.info
		ev.Principal = g.info.Principal
	}
	if rt != nil {
		ev.Route = rt.Name
	}
	if f.opts.Observe != nil {
		f.opts.Observe(r.Context(), ev)
	}
	if rt != nil && rt.chain.Observing() {
		rt.chain.Observe(r.Context(), ev)
	}
}
