package frontend

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// nameHeaderMethods are the methods whose params.name/uri is mirrored in
// Mcp-Name.
func needsNameHeader(method string) bool {
	return method == "tools/call" || method == "resources/read" || method == "prompts/get"
}

func headerMismatch(msg string) *core.Error {
	return core.NewError(core.CodeHeaderMismatch, "Header mismatch: "+msg).WithStatus(http.StatusBadRequest)
}

// validateModernHeaders checks the request metadata headers against the
// body, as an intermediary that processes the body must.
func validateModernHeaders(r *http.Request, m *core.Message, hdrVersion string) *core.Error {
	if m.Kind != core.KindRequest && m.Kind != core.KindNotification {
		return core.NewError(core.CodeInvalidRequest, "invalid request: clients send no responses in protocol version 2026-07-28").WithStatus(http.StatusBadRequest)
	}
	if hdrVersion == "" {
		return headerMismatch("MCP-Protocol-Version header is required")
	}
	if m.MetaVersion != "" && hdrVersion != m.MetaVersion {
		return headerMismatch("MCP-Protocol-Version header value " + strconv.Quote(hdrVersion) + " does not match body value " + strconv.Quote(m.MetaVersion))
	}
	if m.Kind != core.KindRequest {
		return nil
	}
	method, ok := r.Header["Mcp-Method"]
	if !ok || len(method) != 1 {
		return headerMismatch("Mcp-Method header is required (exactly once)")
	}
	if strings.TrimSpace(method[0]) != m.Method {
		return headerMismatch("Mcp-Method header value " + strconv.Quote(method[0]) + " does not match body value " + strconv.Quote(m.Method))
	}
	if needsNameHeader(m.Method) {
		raw, ok := r.Header["Mcp-Name"]
		if !ok || len(raw) != 1 {
			if m.Name == "" {
				return nil // no name in the body either: the upstream reports invalid params
			}
			return headerMismatch("Mcp-Name header is required for " + m.Method)
		}
		name, ok := decodeHeaderValue(raw[0])
		if !ok {
			return headerMismatch("Mcp-Name header has an invalid base64 value")
		}
		if name != m.Name {
			return headerMismatch("Mcp-Name header value " + strconv.Quote(raw[0]) + " does not match body value " + strconv.Quote(m.Name))
		}
	}
	return nil
}

func (f *Frontend) modernPost(w http.ResponseWriter, r *http.Request, rt *Route, m *core.Message, hdrVersion string) {
	if e := validateModernHeaders(r, m, hdrVersion); e != nil {
		f.reject(w, r, m, e)
		return
	}
	version := m.MetaVersion
	if version == "" {
		version = hdrVersion
	}
	supported := core.ModernVersions
	switch rt.Era {
	case EraLegacy:
		f.reject(w, r, m, legacyOnlyError(rt))
		return
	case EraAuto:
		info, err := rt.Upstream.Probe(r.Context())
		if err != nil {
			f.reject(w, r, m, core.NewError(core.CodeUpstreamError, "upstream unavailable").WithStatus(http.StatusBadGateway).Wrap(err))
			return
		}
		if info.Era != core.EraModern {
			f.reject(w, r, m, legacyOnlyError(rt))
			return
		}
		if len(info.ModernVersions) > 0 {
			supported = info.ModernVersions
		}
	}
	if !slices.Contains(supported, version) {
		f.reject(w, r, m, core.NewError(core.CodeUnsupportedProtocolVersion, "Unsupported protocol version "+strconv.Quote(version)+"; supported: "+strings.Join(supported, ", ")).
			WithStatus(http.StatusBadRequest).WithData(map[string]any{"supported": supported, "requested": version}))
		return
	}
	g, e := f.modernSession(r, rt, version)
	if e != nil {
		f.reject(w, r, m, e)
		return
	}
	w.Header().Set(SessionHeader, g.info.ID)
	defer g.sess.Release(g.sess.Acquire())
	m.Header = upstream.ForwardHeaders(nil, r.Header)
	if m.Kind == core.KindNotification {
		f.notify(w, r, g, m)
		return
	}
	st := newStream(w, &f.opts, "", false)
	ctx, cancel := g.callContext(r, st, true)
	defer cancel()
	st.armKeepAlive(f.opts.StreamAfter)
	f.exchange(ctx, g, st, m)
	f.waitReleased(r, st)
}

// legacyOnlyError is not a modern-era error on purpose: a dual-era client
// that reads it falls back to initialize, which this route serves.
func legacyOnlyError(rt *Route) *core.Error {
	return core.NewError(core.CodeInvalidRequest, "bad request: route "+strconv.Quote(rt.Name)+" serves protocol versions "+
		strings.Join(core.LegacyVersions, ", ")+" (legacy era): send initialize; its upstream does not speak "+core.Version20260728).
		WithStatus(http.StatusBadRequest)
}

// modernSession finds the session named by the Mcpgate-Session header, or
// creates one.
//
// Most modern clients never echo the key, so a session created for a
// request without one stays "unadopted" until a request names it; a route
// keeps only its newest unadopted sessions (see Route.unadopted) so keyless
// traffic cannot pile up sessions (or, for stdio, processes).
func (f *Frontend) modernSession(r *http.Request, rt *Route, version string) (*gwSession, *core.Error) {
	if key := r.Header.Get(SessionHeader); key != "" && session.ValidID(key) {
		if s, err := f.opts.Sessions.Get(key); err == nil {
			if g, ok := s.Value.(*gwSession); ok && g.route == rt && g.info.Era == core.EraModern {
				g.adopted.Store(true)
				return g, nil
			}
		}
	}
	info := &core.SessionInfo{
		ID: session.NewID(), Route: rt.Name, Era: core.EraModern, ProtocolVersion: version,
		Principal: "anonymous", RemoteAddr: r.RemoteAddr,
	}
	g := newGWSession(f, rt, info)
	conn, err := rt.Upstream.Open(r.Context(), upstream.OpenParams{Session: info, Era: core.EraModern}, g)
	if err != nil {
		g.cancel()
		return nil, core.NewError(core.CodeUpstreamError, "upstream unavailable: could not open a connection").WithStatus(http.StatusBadGateway).Wrap(err)
	}
	g.conn = conn
	s, err := f.opts.Sessions.Create(info, session.Limits{IdleTimeout: rt.IdleTimeout}, g.teardown, g)
	if err != nil {
		g.teardown(r.Context(), session.ReasonInitFailed)
		return nil, core.AsError(err).WithStatus(http.StatusServiceUnavailable)
	}
	g.sess = s
	if evict := rt.addUnadopted(g); evict != nil {
		go func() { _ = f.opts.Sessions.End(context.Background(), evict.info.ID, session.ReasonUnadopted) }()
	}
	return g, nil
}

// addUnadopted records a new keyless session and returns the oldest one
// that must go to keep the route within its bound, if any.
func (rt *Route) addUnadopted(g *gwSession) *gwSession {
	rt.unadoptedMu.Lock()
	defer rt.unadoptedMu.Unlock()
	limit := rt.UnadoptedLimit
	if limit <= 0 {
		limit = 1024
	}
	rt.unadopted = append(rt.unadopted, g)
	for len(rt.unadopted) > limit {
		old := rt.unadopted[0]
		rt.unadopted = rt.unadopted[1:]
		if !old.adopted.Load() && old.ctx.Err() == nil {
			return old
		}
	}
	return nil
}

// upstreamStatus is the HTTP status to answer with for a response: the
// upstream's own for an HTTP upstream; for a modern-era error from an
// upstream without HTTP statuses (stdio), the status the 2026-07-28
// transport assigns to its code.
func upstreamStatus(m *core.Message) int {
	if m.Kind != core.KindError {
		return http.StatusOK
	}
	if m.Status >= 400 {
		return m.Status
	}
	if m.Era == core.EraModern {
		switch m.ErrorCode() {
		case core.CodeMethodNotFound:
			return http.StatusNotFound
		case core.CodeInvalidParams, core.CodeHeaderMismatch, core.CodeMissingRequiredCapability, core.CodeUnsupportedProtocolVersion:
			return http.StatusBadRequest
		}
	}
	return http.StatusOK
}
