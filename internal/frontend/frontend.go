package frontend

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

var b64std = base64.StdEncoding

// Frontend serves the configured routes. Build it with New, then mount
// Handler for each listener.
type Frontend struct {
	opts Options
	log  *slog.Logger
	// table is the route table in force (routes.go), read once per
	// request; swapMu serializes swaps and provisioning.
	table       atomic.Pointer[routeTable]
	swapMu      sync.Mutex
	provisioned bool
	// served is set by the first request: provisioning comes before it.
	served atomic.Bool
	// historyBytes is the SSE history kept across all sessions.
	historyBytes atomic.Int64
	// persist writes sessions through to the store; nil without one.
	persist *persistence
	// hop forwards stdio sessions between replicas; nil outside a cluster.
	hop *hop
	// posts counts POST exchanges in progress (not the long-lived GET
	// streams), so shutdown knows when in-flight requests have drained.
	posts atomic.Int64
	// superseded are the versions of kept routes a swap replaced, whose
	// chains close once no session serves on them and their requests are
	// over (supersede.go); guarded by swapMu.
	superseded []supersededVersion
	sweeping   bool
	sweepStop  chan struct{}
	// sweepEvery is how often superseded versions are looked at.
	sweepEvery time.Duration
	// ended tells a legacy client why its session ended (ended.go).
	ended endedSessions
}

// InFlight is the number of POST exchanges in progress.
func (f *Frontend) InFlight() int64 { return f.posts.Load() }

// New builds the route table (see SwapRoutes). What exists only once the
// gateway runs (the store, the cluster) comes later, through Provision.
func New(opts Options, routes []*Route) (*Frontend, error) {
	opts.setDefaults()
	if opts.Sessions == nil {
		return nil, errors.New("frontend: Options.Sessions is required")
	}
	f := &Frontend{opts: opts, log: opts.Logger}
	t, err := f.buildTable(routes, nil, 1)
	if err != nil {
		return nil, err
	}
	f.table.Store(t)
	return f, nil
}

// Handler returns the HTTP handler for one listener.
func (f *Frontend) Handler(p ListenerPolicy) http.Handler {
	return &listenerHandler{f: f, p: p}
}

type listenerHandler struct {
	f *Frontend
	p ListenerPolicy
	// internal is the cluster hop's handler: requests other replicas
	// forwarded, never forwarded again.
	internal bool
}

func (h *listenerHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f := h.f
	if !f.served.Load() {
		f.served.Store(true) // provisioning is over (Provision)
	}
	defer func() {
		// A bug must cost one request a clear error, never the process or
		// a silently dropped connection.
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			f.log.Error("handler_panic", "panic", fmt.Sprint(v), "stack", string(debug.Stack()),
				"http_method", r.Method, "path", r.URL.Path)
			body := core.AppendErrorResponse(nil, "", core.NewError(core.CodeInternalError, "internal error"))
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write(body)
		}
	}()
	if !h.p.hostAllowed(r.Host) {
		f.reject(w, r, nil, core.NewError(core.CodeInvalidRequest, "forbidden: Host "+strconv.Quote(r.Host)+" is not allowed on this listener").WithStatus(http.StatusForbidden))
		return
	}
	if !h.p.originAllowed(r.Header.Get("Origin")) {
		f.reject(w, r, nil, core.NewError(core.CodeInvalidRequest, "forbidden: Origin "+strconv.Quote(r.Header.Get("Origin"))+" is not allowed").WithStatus(http.StatusForbidden))
		return
	}
	if addr := h.p.clientAddress(r); addr != r.RemoteAddr {
		r = r.WithContext(r.Context()) // a copy: the caller's request is not ours to change
		r.RemoteAddr = addr
	}
	// Identity before anything else is looked up: a session id is a
	// handle, never a credential. A CORS preflight carries no credentials
	// and reaches no session.
	if r.Method != http.MethodOptions {
		var e *core.Error
		if r, e = f.authenticate(r); e != nil {
			f.reject(w, r, nil, e)
			return
		}
	}
	// The table is read once: the whole request is served on this version
	// of its route. Requests other than GET streams are counted on the
	// route's state, so that a swap that retires it waits for them.
	var rt *Route
	if r.Method == http.MethodGet {
		rt = f.routes().byPath[r.URL.Path]
	} else if rt = f.enter(r.URL.Path); rt != nil {
		defer rt.state.leave()
	}
	if rt == nil {
		f.reject(w, r, nil, core.NewError(core.CodeInvalidRequest, "not found: no MCP endpoint at "+strconv.Quote(r.URL.Path)).WithStatus(http.StatusNotFound))
		return
	}
	if cors(w, r) {
		return
	}
	if rt.Caller {
		r = withCaller(r)
	}
	if !h.internal && f.forwardElsewhere(w, r, rt) {
		return
	}
	switch r.Method {
	case http.MethodPost:
		f.post(w, r, rt)
	case http.MethodGet:
		f.get(w, r, rt)
	case http.MethodDelete:
		f.delete(w, r, rt)
	default:
		e := core.NewError(core.CodeInvalidRequest, "method not allowed: use POST, GET or DELETE").WithStatus(http.StatusMethodNotAllowed)
		e.Header = http.Header{"Allow": {"GET, POST, DELETE, OPTIONS"}}
		f.reject(w, r, nil, e)
	}
}

// reject answers with a JSON-RPC error and the error's HTTP status, and
// logs it: every refusal is visible to the operator.
func (f *Frontend) reject(w http.ResponseWriter, r *http.Request, m *core.Message, e *core.Error) {
	var id core.ID
	if m != nil && m.Kind == core.KindRequest {
		id = m.ID
	}
	status := e.HTTPStatus()
	f.refused(r, nil, m, e)
	f.log.LogAttrs(r.Context(), slog.LevelInfo, "request_rejected",
		slog.Int("status", status), slog.Int("code", e.Code), slog.String("reason", e.Message),
		slog.String("http_method", r.Method), slog.String("path", r.URL.Path),
		slog.String("remote_addr", r.RemoteAddr))
	for k, v := range e.Header {
		w.Header()[k] = v
	}
	body := core.AppendErrorResponse(nil, id, e)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// readBody applies the Content-Type and size checks and reads the body.
func (f *Frontend) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *core.Error) {
	if !jsonContent(r.Header.Get("Content-Type")) {
		return nil, core.NewError(core.CodeInvalidRequest, "unsupported media type: Content-Type must be application/json").WithStatus(http.StatusUnsupportedMediaType)
	}
	if !accepts(r.Header.Values("Accept"), "application/json") || !accepts(r.Header.Values("Accept"), "text/event-stream") {
		return nil, core.NewError(core.CodeInvalidRequest, "not acceptable: Accept must list application/json and text/event-stream").WithStatus(http.StatusNotAcceptable)
	}
	tooLarge := func() *core.Error {
		return core.NewError(core.CodeInvalidRequest, "request body larger than "+strconv.FormatInt(f.opts.MaxBodyBytes, 10)+" bytes").WithStatus(http.StatusRequestEntityTooLarge)
	}
	if r.ContentLength > f.opts.MaxBodyBytes {
		return nil, tooLarge()
	}
	var body []byte
	if r.ContentLength > 0 {
		body = make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			return nil, core.NewError(core.CodeParseError, "parse error: could not read the request body").Wrap(err)
		}
	} else {
		var err error
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, f.opts.MaxBodyBytes))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, tooLarge()
			}
			return nil, core.NewError(core.CodeParseError, "parse error: could not read the request body").Wrap(err)
		}
	}
	if len(body) == 0 {
		return nil, core.NewError(core.CodeParseError, "parse error: empty body")
	}
	return body, nil
}

func (f *Frontend) post(w http.ResponseWriter, r *http.Request, rt *Route) {
	f.posts.Add(1)
	defer f.posts.Add(-1)
	body, e := f.readBody(w, r)
	if e != nil {
		f.reject(w, r, nil, e)
		return
	}
	hdrVersion := r.Header.Get("Mcp-Protocol-Version") // canonical: no key copy
	if core.IsBatch(body) {
		msgs, err := core.DecodeBatch(body)
		if err != nil {
			f.reject(w, r, nil, core.AsError(err))
			return
		}
		f.legacyBatch(w, r, rt, msgs, hdrVersion)
		return
	}
	m, err := core.Decode(body)
	if err != nil {
		f.reject(w, r, nil, core.AsError(err))
		return
	}
	m.Received = time.Now()
	m.Direction = core.ClientToServer
	if core.EraOf(hdrVersion) == core.EraModern || (m.MetaVersion != "" && core.EraOf(m.MetaVersion) != core.EraLegacy && m.Method != "initialize") {
		m.Era = core.EraModern
		f.modernPost(w, r, rt, m, hdrVersion)
		return
	}
	m.Era = core.EraLegacy
	m.Header = upstream.TraceHeaders(r.Header)
	f.legacyPost(w, r, rt, m, hdrVersion)
}

// toUpstream is the terminal of the client→server chain.
func (f *Frontend) toUpstream(ctx context.Context, m *core.Message) (resp *core.Message, err error) {
	t := targetOf(ctx)
	g := t.g
	conn, gen, err := g.ready(ctx)
	if err != nil {
		return nil, err
	}
	if m.Kind != core.KindRequest {
		if m.Method == "notifications/cancelled" {
			if id := cancelledID(m); id != "" {
				defer g.cancelCall(id)
			}
		}
		err := conn.Send(ctx, m)
		if errors.Is(err, upstream.ErrSessionLost) && g.canReestablish() && g.reestablish(ctx, gen) == nil {
			conn, _ = g.connection()
			err = conn.Send(ctx, m)
		}
		return nil, err
	}
	if m.Method == "initialize" && m.Era == core.EraLegacy {
		// What the chain let through (an interceptor may have rewritten
		// it) is what a re-established upstream session gets again and
		// what the store keeps.
		g.initRaw = m.Raw
	}
	st := t.st
	related := func(rm *core.Message) { g.fromUpstream(g.ctx, rm, st) }
	if st != nil && st.resumable && st.req == nil {
		ctx = upstream.WithRetryHint(ctx, st.retryHint) // a request's own context carries the hint
	}
	if m.Era == core.EraModern && g.sharesChannel(ctx) {
		var restore func(*core.Message) *core.Message
		m, related, restore = upstream.Isolate(m, related)
		defer func() { resp = restore(resp) }()
	}
	listing := m.Method == "tools/list"
	var catGen uint64
	if listing {
		catGen = g.catalog.Gen()
	}
	resp, err = conn.RoundTrip(ctx, m, related)
	if errors.Is(err, upstream.ErrSessionLost) && g.canReestablish() {
		if rerr := g.reestablish(ctx, gen); rerr != nil {
			return nil, err
		}
		if !g.safeToRetry(m) {
			return nil, core.NewError(core.CodeUpstreamError, "the upstream lost its session during this "+m.Method+
				"; mcpgate re-established it and your session continues, but the call may or may not have run and is not safe to repeat automatically").Wrap(err)
		}
		conn, _ = g.connection()
		resp, err = conn.RoundTrip(ctx, m, related)
	}
	if errors.Is(err, upstream.ErrResponseLost) && g.safeToRetry(m) {
		// The response was lost on the way (the Conn says the session
		// goes on): a request safe to repeat is sent once more, under an
		// id (and progress token) of its own — the lost one may still be
		// in flight upstream, which would refuse a duplicate id.
		g.log.Info("upstream_request_repeated", "method", m.Method, "error", err)
		conn, _ = g.connection()
		again, rel, restore := upstream.Isolate(m, related)
		resp, err = conn.RoundTrip(ctx, again, rel)
		resp = restore(resp)
	}
	if listing && err == nil && resp.Kind == core.KindResponse {
		// What the upstream listed, before any stage filters it on the way
		// back: the catalog knows every tool the server has.
		g.catalog.Observe(catGen, resp.Result)
		if rc := g.route().state.tools; rc != nil {
			rc.Observe(rc.Gen(), resp.Result)
		}
	}
	return resp, err
}

// toClient is the terminal of the server→client chain.
func (f *Frontend) toClient(ctx context.Context, m *core.Message) (*core.Message, error) {
	return targetOf(ctx).g.deliverToClient(ctx, m)
}

// callContext derives the context of a batch's requests, which share one
// stream: bounded by the route's request timeout and ended with the
// session. (A request on a response of its own is a request, request.go.)
func (g *gwSession) callContext(r *http.Request, st *stream) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(g.ctx, g.route().RequestTimeout)
	if g.route().Caller {
		if c := upstream.CallerOf(r.Context()); c != nil {
			ctx = upstream.WithCaller(ctx, c)
		}
	}
	return withTargetOf(ctx, target{g: g, st: st, caller: callerOf(r)}), cancel
}

// withCaller puts the caller of r in its context, for a route whose
// upstream sends the caller's own credentials (Route.Caller): the
// sessions it opens and the requests it sends upstream find it there.
func withCaller(r *http.Request) *http.Request {
	id := identityOf(r)
	c := &upstream.Caller{Principal: id.Principal, Tenant: id.Tenant, Token: id.Token, Header: r.Header}
	return r.WithContext(upstream.WithCaller(r.Context(), c))
}

// exchange runs one client request through the chain and writes its
// response to st. It returns when the response has been produced.
func (f *Frontend) exchange(ctx context.Context, g *gwSession, st *stream, m *core.Message) {
	m.Session = g.info
	resp, err := g.c2s(ctx, m)
	status := 0
	if err != nil {
		if m.Era == core.EraModern {
			g.cancelRetry(m) // refused on the way (an interceptor, the transport)
		}
		e := f.callError(ctx, g, m, err)
		status = e.HTTPStatus()
		if e.Status == 0 && !transportCode(e.Code) {
			status = http.StatusOK // a JSON-RPC error inside a working session
		}
		resp = core.ErrorResponse(m.ID, e)
		st.addHeaders(e.Header)
	} else if resp != nil {
		status = upstreamStatus(resp)
	}
	if resp == nil {
		resp = core.ErrorResponse(m.ID, core.NewError(core.CodeInternalError, "no response"))
	}
	st.finish(resp, status)
}

// transportCode reports codes whose HTTP status matters to the client's
// transport even inside a working session (it backs off on 429 and 503,
// starts over on 404), so they keep it in a plain JSON response.
func transportCode(code int) bool {
	switch code {
	case core.CodeRateLimited, core.CodeSessionCap, core.CodeSessionNotFound:
		return true
	}
	return false
}

// callError turns a failed round trip into what the client should see.
func (f *Frontend) callError(ctx context.Context, g *gwSession, m *core.Message, err error) *core.Error {
	var e *core.Error
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, upstream.ErrSessionLost) || errors.Is(err, upstream.ErrClosed):
		// The upstream side is gone: end the session so the client's next
		// request gets 404 and it starts a new one.
		reason := g.upstreamEnded(err)
		go func() { _ = f.opts.Sessions.End(context.Background(), g.info.ID, reason) }()
		if words, ok := upstream.ResourceLimit(err); ok {
			msg := "session ended (resource_limit): the upstream process was killed for a resource cap"
			if words != "" {
				msg += ": " + words
			}
			return core.NewError(core.CodeSessionNotFound, msg).WithStatus(http.StatusNotFound).
				WithData(map[string]any{"reason": string(session.ReasonResourceLimit)}).Wrap(err)
		}
		return core.NewError(core.CodeSessionNotFound, "session ended: the upstream server or its session is gone").WithStatus(http.StatusNotFound).Wrap(err)
	case g.ctx.Err() != nil:
		reason := "ended"
		if g.sess != nil {
			reason = string(g.sess.Reason())
		}
		return core.NewError(core.CodeSessionNotFound, "session ended ("+reason+") before the upstream answered").WithStatus(http.StatusNotFound).Wrap(err)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return core.NewError(core.CodeRequestTimeout, "request timed out after "+g.route().RequestTimeout.String()).Wrap(err)
	case errors.Is(ctx.Err(), context.Canceled):
		return core.NewError(core.CodeRequestTimeout, "request cancelled").Wrap(err)
	}
	g.log.Warn("upstream_error", "method", m.Method, "error", err)
	return core.NewError(core.CodeUpstreamError, "upstream unavailable").Wrap(err)
}
