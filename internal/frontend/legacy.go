package frontend

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/pipeline"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/sessionid"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// lookupLegacy finds the session named by Mcp-Session-Id.
func (f *Frontend) lookupLegacy(r *http.Request, rt *Route) (*gwSession, *core.Error) {
	id := r.Header.Get("Mcp-Session-Id")
	if id == "" {
		return nil, core.NewError(core.CodeInvalidRequest, "bad request: Mcp-Session-Id header is required (send initialize first)").WithStatus(http.StatusBadRequest)
	}
	if err := f.opts.IDs.Verify(id); err != nil {
		if errors.Is(err, sessionid.ErrMalformed) {
			return nil, core.NewError(core.CodeInvalidRequest, "bad request: malformed Mcp-Session-Id").WithStatus(http.StatusBadRequest)
		}
		// Signed with a key we do not have, or forged: no such session.
		f.log.Info("session_id_refused", "reason", err.Error(), "remote_addr", r.RemoteAddr)
		return nil, core.NewError(core.CodeSessionNotFound, "session not found: send initialize to start a new one").WithStatus(http.StatusNotFound)
	}
	who := identityOf(r)
	var g *gwSession
	if s, err := f.opts.Sessions.Get(id); err == nil {
		// Ownership first: another principal's request learns nothing,
		// and costs the store nothing.
		if g, _ = s.Value.(*gwSession); g != nil && !f.ownedBy(r, who, g.info) {
			return nil, hijackRefused()
		}
		if g != nil && f.endedElsewhere(r.Context(), g) {
			g = nil
		}
	} else {
		var err error
		if g, err = f.fetch(r.Context(), r, who, id); err != nil {
			if errors.Is(err, pipeline.ErrHijack) {
				return nil, hijackRefused()
			}
			if errors.Is(err, errSessionElsewhere) {
				e := core.NewError(core.CodeInternalError, "session is moving between gateway replicas; retry shortly").WithStatus(http.StatusServiceUnavailable)
				e.Header = http.Header{"Retry-After": {"1"}}
				return nil, e
			}
			return nil, storeUnavailable(err)
		}
	}
	if g == nil {
		return nil, f.ended.notFound(id, who)
	}
	if g.info.Era != core.EraLegacy || !g.onRoute(rt) {
		return nil, core.NewError(core.CodeSessionNotFound, "session not found on this endpoint").WithStatus(http.StatusNotFound)
	}
	return g, nil
}

// legacySession applies the version header rule, then finds the session.
func (f *Frontend) legacySession(r *http.Request, rt *Route, hdrVersion string) (*gwSession, *core.Error) {
	if _, e := checkLegacyVersion(hdrVersion); e != nil {
		return nil, e
	}
	return f.lookupLegacy(r, rt)
}

// checkLegacyVersion applies the MCP-Protocol-Version header rule: absent
// means 2025-03-26; anything but a known legacy revision is a 400.
func checkLegacyVersion(h string) (string, *core.Error) {
	if h == "" {
		return core.DefaultLegacyVersion, nil
	}
	if core.EraOf(h) != core.EraLegacy {
		return "", core.NewError(core.CodeInvalidRequest, "bad request: unsupported MCP-Protocol-Version "+strconv.Quote(h)+"; supported: "+strings.Join(core.LegacyVersions, ", ")+", "+strings.Join(core.ModernVersions, ", ")).
			WithStatus(http.StatusBadRequest).WithData(map[string]any{"supported": append(slices.Clone(core.ModernVersions), core.LegacyVersions...), "requested": h})
	}
	return h, nil
}

func (f *Frontend) legacyPost(w http.ResponseWriter, r *http.Request, rt *Route, m *core.Message, hdrVersion string) {
	if m.Method == "initialize" && m.Kind == core.KindRequest {
		f.initialize(w, r, rt, m)
		return
	}
	g, e := f.legacySession(r, rt, hdrVersion)
	if e != nil {
		f.reject(w, r, m, e)
		return
	}
	defer g.sess.Release(g.sess.Acquire())
	f.persist.touch(g)
	switch m.Kind {
	case core.KindRequest:
		f.legacyRequest(w, r, g, m)
	case core.KindNotification:
		f.notify(w, r, g, m)
	default:
		f.clientResponse(g, m)
		w.WriteHeader(http.StatusAccepted)
	}
}

// notify forwards a client notification and answers 202.
func (f *Frontend) notify(w http.ResponseWriter, r *http.Request, g *gwSession, m *core.Message) {
	m.Session = g.info
	ctx, cancel := context.WithTimeout(withTargetOf(g.ctx, target{g: g, caller: callerOf(r)}), 30*time.Second)
	defer cancel()
	if _, err := g.c2s(ctx, m); err != nil {
		e := f.callError(ctx, g, m, err)
		if e.Status == 0 {
			e.Status = http.StatusBadGateway
		}
		if m.Method == "notifications/initialized" && e.HTTPStatus() >= http.StatusInternalServerError {
			// The upstream (or this gateway: out of descriptors, say)
			// could not complete the handshake: end the half-made session
			// rather than leave it holding a place and an upstream side.
			_ = f.opts.Sessions.End(context.WithoutCancel(r.Context()), g.info.ID, session.ReasonInitFailed)
		}
		f.reject(w, r, m, e)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// clientResponse hands the client's answer to a server request back.
func (f *Frontend) clientResponse(g *gwSession, m *core.Message) {
	m.Session = g.info
	if g.resolve(m) {
		return
	}
	if f.persist.answerElsewhere(g, m) {
		return
	}
	// Not one mcpgate is waiting for: pass it on through the chain; the
	// upstream decides.
	ctx, cancel := context.WithTimeout(withTarget(g.ctx, g, nil), 10*time.Second)
	defer cancel()
	if _, err := g.c2s(ctx, m); err != nil {
		g.log.Warn("upstream_send_failed", "kind", m.Kind.String(), "error", err)
	}
}

// legacyRequest runs one request whose response goes on this POST.
func (f *Frontend) legacyRequest(w http.ResponseWriter, r *http.Request, g *gwSession, m *core.Message) {
	req := g.newRequest(w, r, m.ID, g.nextStreamID(), core.SupportsPriming(g.info.ProtocolVersion), g.route().RequestTimeout, false)
	if err := g.startRequest(req, m.ID, true); err != nil {
		f.reject(w, r, m, core.AsError(err))
		return
	}
	st := &req.st
	g.addStream(st)
	f.exchange(req, g, st, m)
	g.endRequest(req)
	g.forgetStream(st)
	f.waitReleased(r, st)
	req.runAfter()
}

// waitReleased keeps the handler alive until the stream is done with the
// ResponseWriter, or the client has gone.
func (f *Frontend) waitReleased(r *http.Request, st *stream) {
	// Most answers are written by now: asking the request's context for
	// its Done channel first would make one (net/http's is lazy).
	select {
	case <-st.releasedCh():
		return
	default:
	}
	select {
	case <-st.releasedCh():
	case <-r.Context().Done():
		st.abandon()
	}
}

// initialize creates a session: open the upstream side, forward the
// client's initialize, publish the session when the upstream accepts.
func (f *Frontend) initialize(w http.ResponseWriter, r *http.Request, rt *Route, m *core.Message) {
	var params struct {
		ProtocolVersion string `json:"protocolVersion"`
		ClientInfo      struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"clientInfo"`
	}
	if m.Params == nil || json.Unmarshal(m.Params, &params) != nil || params.ProtocolVersion == "" {
		f.reject(w, r, m, core.NewError(core.CodeInvalidParams, "invalid params: initialize needs params.protocolVersion"))
		return
	}
	if rt.Clients == EraModern {
		f.reject(w, r, m, crossEraInitError(params.ProtocolVersion, core.ModernVersions))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), rt.RequestTimeout)
	defer cancel()
	o, e := f.openSession(ctx, &sessionSpec{
		route: rt, identity: identityOf(r), era: core.EraLegacy, version: params.ProtocolVersion,
		remoteAddr: r.RemoteAddr, clientName: params.ClientInfo.Name, clientVersion: params.ClientInfo.Version,
		initRaw: m.Raw, connect: true,
	})
	if e != nil {
		f.reject(w, r, m, e)
		return
	}
	g, info := o.g, o.g.info
	m.Session = info
	w.Header().Set("Mcp-Session-Id", info.ID)
	st := newStream(w, &f.opts, g.nextStreamID(), false)
	resp, err := g.c2s(withTarget(ctx, g, st), m)
	var fail *core.Error
	switch {
	case err != nil:
		if !errors.As(err, &fail) {
			fail = core.NewError(core.CodeUpstreamError, "upstream unavailable: initialize failed").WithStatus(http.StatusBadGateway).Wrap(err)
		}
		f.log.Info("initialize_failed", "route", rt.Name, "error", err)
	case resp == nil:
		fail = core.NewError(core.CodeUpstreamError, "upstream unavailable: initialize failed").WithStatus(http.StatusBadGateway).Wrap(errors.New("no answer to initialize"))
		f.log.Info("initialize_failed", "route", rt.Name, "error", "no answer to initialize")
	case resp.Kind == core.KindResponse:
		var result struct {
			ProtocolVersion string `json:"protocolVersion"`
		}
		_ = json.Unmarshal(resp.Result, &result)
		if core.EraOf(result.ProtocolVersion) != core.EraLegacy {
			fail = core.NewError(core.CodeUpstreamError, "upstream answered initialize with protocol version "+strconv.Quote(result.ProtocolVersion)+", which is not a legacy revision")
			f.log.Info("initialize_failed", "route", rt.Name, "error", fail.Message)
			break
		}
		info.ProtocolVersion = result.ProtocolVersion
		if _, perr := o.publish(context.WithoutCancel(r.Context())); perr != nil {
			w.Header().Del("Mcp-Session-Id")
			st.addHeaders(perr.Header)
			st.finish(core.ErrorResponse(m.ID, perr), perr.HTTPStatus())
			f.waitReleased(r, st)
			return
		}
		st.finish(resp, http.StatusOK)
		f.waitReleased(r, st)
		return
	}
	// Failed, or the upstream refused (its own answer goes back as it
	// is): nothing is published; tear the upstream side down.
	o.abandon(context.WithoutCancel(r.Context()))
	w.Header().Del("Mcp-Session-Id")
	if fail == nil {
		st.finish(resp, http.StatusOK)
	} else {
		st.addHeaders(fail.Header)
		st.finish(core.ErrorResponse(m.ID, fail), fail.HTTPStatus())
	}
	f.waitReleased(r, st)
}

// crossEraInitError answers a legacy client on a route that serves only
// modern clients (client_era: modern).
func crossEraInitError(requested string, upstreamVersions []string) *core.Error {
	return core.NewError(core.CodeInvalidParams,
		"Unsupported protocol version: the client requested "+requested+" (legacy era, with initialize) but this route serves only "+
			strings.Join(upstreamVersions, ", ")+" (modern era, client_era: modern)").
		WithStatus(http.StatusBadRequest).
		WithData(map[string]any{"supported": upstreamVersions, "requested": requested})
}

func (f *Frontend) legacyBatch(w http.ResponseWriter, r *http.Request, rt *Route, msgs []*core.Message, hdrVersion string) {
	version, e := checkLegacyVersion(hdrVersion)
	if e != nil {
		f.reject(w, r, nil, e)
		return
	}
	for _, m := range msgs {
		if m.Method == "initialize" {
			f.reject(w, r, m, core.NewError(core.CodeInvalidRequest, "invalid request: initialize must not be part of a batch"))
			return
		}
	}
	g, e := f.lookupLegacy(r, rt)
	if e != nil {
		f.reject(w, r, nil, e)
		return
	}
	if !core.SupportsBatch(version) || !core.SupportsBatch(g.info.ProtocolVersion) {
		f.reject(w, r, nil, core.NewError(core.CodeInvalidRequest, "invalid request: JSON-RPC batches are not supported in protocol version "+g.info.ProtocolVersion))
		return
	}
	defer g.sess.Release(g.sess.Acquire())
	var requests []*core.Message
	for _, m := range msgs {
		m.Received, m.Direction, m.Era = time.Now(), core.ClientToServer, core.EraLegacy
		m.Header = upstream.TraceHeaders(r.Header)
		switch m.Kind {
		case core.KindRequest:
			requests = append(requests, m)
		case core.KindNotification:
			m.Session = g.info
			ctx, cancel := context.WithTimeout(withTargetOf(g.ctx, target{g: g, caller: callerOf(r)}), 30*time.Second)
			if _, err := g.c2s(ctx, m); err != nil {
				g.log.Warn("batch_notification_failed", "method", m.Method, "error", err)
			}
			cancel()
		default:
			f.clientResponse(g, m)
		}
	}
	if len(requests) == 0 {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	// Each request's response is its own event on one SSE stream.
	st := newStream(w, &f.opts, g.nextStreamID(), core.SupportsPriming(g.info.ProtocolVersion))
	st.mu.Lock()
	st.startLocked()
	st.mu.Unlock()
	g.addStream(st)
	ctx, cancel := g.callContext(r, st)
	defer cancel()
	var wg sync.WaitGroup
	for _, m := range requests {
		if err := g.startCall(m.ID, &call{st: st, cancel: cancel}); err != nil {
			_ = st.send(core.ErrorResponse(m.ID, core.AsError(err)))
			continue
		}
		wg.Go(func() {
			defer g.endCall(m.ID)
			m.Session = g.info
			resp, err := g.c2s(ctx, m)
			if err != nil {
				resp = core.ErrorResponse(m.ID, f.callError(ctx, g, m, err))
			}
			if resp != nil {
				_ = st.send(resp)
			}
		})
	}
	wg.Wait()
	st.close()
	g.forgetStream(st)
	f.waitReleased(r, st)
}

// get opens the session's stream for server-initiated messages, or
// resumes a stream with Last-Event-ID.
func (f *Frontend) get(w http.ResponseWriter, r *http.Request, rt *Route) {
	if r.Header.Get("Mcp-Session-Id") == "" && f.modernOnly(r.Context(), rt) {
		e := core.NewError(core.CodeInvalidRequest, "method not allowed: this endpoint's upstream speaks 2026-07-28, which has no GET stream").WithStatus(http.StatusMethodNotAllowed)
		e.Header = http.Header{"Allow": {"POST"}}
		f.reject(w, r, nil, e)
		return
	}
	if !accepts(r.Header.Values("Accept"), "text/event-stream") {
		f.reject(w, r, nil, core.NewError(core.CodeInvalidRequest, "not acceptable: Accept must list text/event-stream").WithStatus(http.StatusNotAcceptable))
		return
	}
	g, e := f.legacySession(r, rt, r.Header.Get("MCP-Protocol-Version"))
	if e != nil {
		f.reject(w, r, nil, e)
		return
	}
	defer g.sess.Release(g.sess.Acquire())
	// A session kept alive by its GET stream alone must not look idle to
	// the store after a restart.
	f.persist.touch(g)
	defer f.persist.touch(g)
	if last := r.Header.Get("Last-Event-ID"); last != "" {
		streamID, seqStr, ok := strings.Cut(last, "_")
		seq, err := strconv.Atoi(seqStr)
		if !ok || err != nil || seq < 0 {
			f.reject(w, r, nil, core.NewError(core.CodeInvalidRequest, "bad request: malformed Last-Event-ID").WithStatus(http.StatusBadRequest))
			return
		}
		if st := g.stream(streamID); st != nil && streamID != "0" {
			released, ok := st.attach(w, seq)
			if !ok {
				f.reject(w, r, nil, core.NewError(core.CodeInvalidRequest, "cannot resume: events after "+last+" were discarded (history bounds); the request's outcome is unknown to this stream").WithStatus(http.StatusGone))
				return
			}
			f.opts.Sessions.Resumed(g.sess, "stream")
			select {
			case <-released:
			case <-r.Context().Done():
				st.abandon()
			}
			if st.done() {
				g.dropStream(st)
			}
			return
		}
		if streamID != "0" {
			// An unknown or finished request stream: nothing to replay.
			f.reject(w, r, nil, core.NewError(core.CodeInvalidRequest, "cannot resume: the stream of "+last+" is finished or unknown").WithStatus(http.StatusGone))
			return
		}
		if st := g.stream("0"); st != nil {
			if released, ok := st.attach(w, seq); ok {
				f.opts.Sessions.Resumed(g.sess, "stream")
				g.setStandalone(st)
				g.listen()
				g.waitStandalone(r, st, released)
				return
			}
		}
	}
	st := newStream(w, &f.opts, "0", core.SupportsPriming(g.info.ProtocolVersion))
	st.mu.Lock()
	st.startLocked()
	st.mu.Unlock()
	g.setStandalone(st)
	g.listen()
	g.waitStandalone(r, st, st.releasedCh())
}

func (g *gwSession) waitStandalone(r *http.Request, st *stream, released <-chan struct{}) {
	st.armKeepAlive(g.f.opts.KeepAlive)
	// A session held by its GET stream alone is active for as long as the
	// stream lasts: its record must not lapse in the store meanwhile (a
	// replica that no longer finds it ends it, see endedElsewhere).
	var held <-chan time.Time
	if g.f.persist.kept(g) {
		t := time.NewTicker(heldTouchEvery(g.route().IdleTimeout))
		defer t.Stop()
		held = t.C
	}
wait:
	for {
		select {
		case <-released:
			break wait
		case <-r.Context().Done():
			st.abandon()
			break wait
		case <-g.ctx.Done():
			st.close()
			return
		case <-held:
			g.f.persist.touch(g)
		}
	}
	// The client is gone (it left, or a write failed): what the server
	// sends from now on waits in the bounded backlog.
	g.clearStandalone(st)
}

// heldTouchEvery is how often a session held open by its GET stream
// records activity: a quarter of its idle timeout, between a second and
// five minutes (five minutes without an idle timeout).
func heldTouchEvery(idle time.Duration) time.Duration {
	if idle <= 0 {
		return 5 * time.Minute
	}
	return min(max(idle/4, time.Second), 5*time.Minute)
}

// delete ends a legacy session.
func (f *Frontend) delete(w http.ResponseWriter, r *http.Request, rt *Route) {
	if r.Header.Get("Mcp-Session-Id") == "" && f.modernOnly(r.Context(), rt) {
		e := core.NewError(core.CodeInvalidRequest, "method not allowed: this endpoint's upstream speaks 2026-07-28, which has no sessions to delete").WithStatus(http.StatusMethodNotAllowed)
		e.Header = http.Header{"Allow": {"POST"}}
		f.reject(w, r, nil, e)
		return
	}
	g, e := f.lookupLegacy(r, rt)
	if e != nil {
		f.reject(w, r, nil, e)
		return
	}
	if err := f.opts.Sessions.End(r.Context(), g.info.ID, session.ReasonDeleted); err != nil {
		f.reject(w, r, nil, core.NewError(core.CodeSessionNotFound, "session not found").WithStatus(http.StatusNotFound))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// modernOnly reports whether the route serves only modern clients (so
// legacy GET/DELETE get 405, as a modern server answers). Whatever the
// upstream speaks, the bridge serves legacy clients otherwise.
func (f *Frontend) modernOnly(_ context.Context, rt *Route) bool {
	return rt.Clients == EraModern
}

// cancelledID reads params.requestId of notifications/cancelled.
func cancelledID(m *core.Message) core.ID {
	var p struct {
		RequestID json.RawMessage `json:"requestId"`
	}
	if json.Unmarshal(m.Params, &p) != nil || len(p.RequestID) == 0 {
		return ""
	}
	return core.ID(p.RequestID)
}
