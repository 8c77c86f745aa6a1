package frontend

import (
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/mcpgate/mcpgate/internal/core"
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
		f.rejectModern(w, r, rt, nil, m, e)
		return
	}
	version := m.MetaVersion
	if version == "" {
		version = hdrVersion
	}
	if rt.Clients == EraLegacy {
		f.rejectModern(w, r, rt, nil, m, legacyOnlyError(rt))
		return
	}
	// A modern upstream decides which modern versions it serves; a legacy
	// one is bridged, and mcpgate serves every modern version it knows.
	supported := core.ModernVersions
	info, err := rt.Upstream.Probe(r.Context())
	if err != nil {
		f.rejectModern(w, r, rt, nil, m, core.NewError(core.CodeUpstreamError, "upstream unavailable").WithStatus(http.StatusBadGateway).Wrap(err))
		return
	}
	if info.Era == core.EraModern && len(info.ModernVersions) > 0 {
		supported = info.ModernVersions
	}
	if !slices.Contains(supported, version) {
		f.rejectModern(w, r, rt, nil, m, core.NewError(core.CodeUnsupportedProtocolVersion, "Unsupported protocol version "+strconv.Quote(version)+"; supported: "+strings.Join(supported, ", ")).
			WithStatus(http.StatusBadRequest).WithData(map[string]any{"supported": supported, "requested": version}))
		return
	}
	if e := checkModernRequest(m); e != nil {
		f.rejectModern(w, r, rt, nil, m, e)
		return
	}
	g, minted, e := f.modernSession(r, rt, m, version)
	if e != nil {
		f.rejectModern(w, r, rt, nil, m, e)
		return
	}
	if minted {
		// Only the request that created the session learns its key:
		// clients that joined it without a key never see it.
		w.Header().Set(SessionHeader, g.info.ID)
	}
	if e := checkParamHeaders(g.catalog, g.route().state.tools, r.Header, m); e != nil {
		f.rejectModern(w, r, rt, g, m, e)
		return
	}
	defer g.sess.Release(g.sess.Acquire())
	f.persist.touch(g)
	m.Header = upstream.ForwardHeaders(nil, r.Header)
	if m.Kind == core.KindNotification {
		f.notify(w, r, g, m)
		return
	}
	timeout := g.route().RequestTimeout
	if m.Method == "subscriptions/listen" {
		timeout = 0 // a stream of notifications, for as long as the client listens
	}
	// Ended with the client's HTTP request too: a modern request has no
	// other way to be cancelled.
	req := g.newRequest(w, r, m.ID, "", false, timeout, true)
	_ = g.startRequest(req, m.ID, false) // not in the in-flight table: never refused
	if m.Method == "subscriptions/listen" {
		g.listenStarted(m, &req.st)
		defer g.listenEnded(m.ID)
	}
	f.exchange(req, g, &req.st, m)
	g.endRequest(req)
	f.waitReleased(r, &req.st)
	req.runAfter()
}

// legacyOnlyError is not a modern-era error on purpose: a dual-era client
// that reads it falls back to initialize, which this route serves.
func legacyOnlyError(rt *Route) *core.Error {
	return core.NewError(core.CodeInvalidRequest, "bad request: route "+strconv.Quote(rt.Name)+" serves protocol versions "+
		strings.Join(core.LegacyVersions, ", ")+" (legacy era, client_era: legacy): send initialize").
		WithStatus(http.StatusBadRequest)
}

// clientAddr is the host part of a remote address.
func clientAddr(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
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
