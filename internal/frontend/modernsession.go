package frontend

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/store"
)

// How modern-era (2026-07-28) requests are grouped into gateway sessions:
//
//   - A request that names a session with the Mcpgate-Session header joins
//     it, on whichever replica it lands (a cluster looks the key up in the
//     shared store; the hop forwards it to the replica that holds it).
//   - A key signed with our id keys whose session is gone (a restart, an
//     idle timeout) is admitted again under the same key, once: every later
//     request with it finds that session, so a client that keeps echoing a
//     stale key costs one session, not one per request.
//   - A request without a key, or with a key we did not sign, joins the
//     route's session for its principal (an anonymous caller's: for its
//     client address). Its key is returned only on
//     the response to the request that created it; requests that joined it
//     without a key never learn it, and a server message reaches only the
//     stream of the request it belongs to (writeModern), so clients that
//     share a session never see each other's traffic.
//
// Creating a session (admission, possibly a Redis script; Upstream.Open,
// possibly a process spawn) runs once per key or address at a time, with
// concurrent requests for the same one waiting for it (a single flight);
// creations for different keys never wait for each other.

// modernFlight is one modern session being created; done closes when g
// or err is set.
type modernFlight struct {
	done chan struct{}
	g    *gwSession
	err  *core.Error
}

// flightTimeout bounds a session creation other requests may wait for,
// whatever becomes of the request that started it.
const flightTimeout = time.Minute

// modernSession finds or creates the session of a modern request. minted
// reports a session created by this request with a fresh key: only then
// is the key returned to the client.
func (f *Frontend) modernSession(r *http.Request, rt *Route, m *core.Message, version string) (g *gwSession, minted bool, e *core.Error) {
	who := identityOf(r)
	if g := f.retrySession(r, rt, m); g != nil {
		return g, false, nil
	}
	if key := r.Header.Get(SessionHeader); key != "" && f.opts.IDs.Verify(key) == nil {
		if g := f.liveModern(rt, key); g != nil {
			if !f.ownedBy(r, who, g.info) {
				return nil, false, hijackRefused()
			}
			return g, false, nil
		}
		fetched, err := f.fetchModern(r.Context(), r, rt, key)
		switch {
		case err != nil:
			return nil, false, core.AsError(err)
		case fetched != nil:
			return fetched, false, nil
		}
		// Only a key we signed is ours to admit again: unsigned ids cannot
		// tell a stale key from one the client made up.
		if f.opts.IDs != nil && !f.keyTaken(r.Context(), key) {
			g, _, e := f.modernFlightFor(r, rt, "key:"+key, func() *gwSession { return f.liveModern(rt, key) },
				func(ctx context.Context) (*gwSession, *core.Error) {
					return f.newModernSession(ctx, r, rt, version, "", key)
				})
			if e == nil && !f.ownedBy(r, who, g.info) {
				// Another principal presented the same stale key at
				// the same moment and was admitted under it first.
				return nil, false, hijackRefused()
			}
			return g, false, e
		}
	}
	// Requests without a key share a session per principal: an
	// authenticated one's wherever it connects from, an anonymous one's
	// per client address. Never one principal's session with another's.
	anon := anonKey(who, r.RemoteAddr)
	return f.modernFlightFor(r, rt, "anon:"+anon, func() *gwSession {
		if g := rt.state.anon[anon]; g != nil && g.ctx.Err() == nil && g.onRoute(rt) {
			return g
		}
		return nil
	}, func(ctx context.Context) (*gwSession, *core.Error) {
		g, e := f.newModernSession(ctx, r, rt, version, anon, "")
		if e == nil {
			rt.state.mu.Lock()
			if rt.state.anon == nil {
				rt.state.anon = map[string]*gwSession{}
			}
			rt.state.anon[anon] = g
			rt.state.mu.Unlock()
		}
		return g, e
	})
}

// anonKey names the keyless modern session of an identity: principal
// and tenant, and for an anonymous caller its client address (an
// authenticated principal is one client wherever it connects from; its
// requests through two proxies, or after a network change, stay in one
// session). The parts are NUL-separated (none of them can hold a NUL
// that would make two keys one: a principal that does is quoted).
func anonKey(who Identity, remote string) string {
	p, t := who.Principal, who.Tenant
	if strings.ContainsRune(p, 0) || strings.ContainsRune(t, 0) {
		p, t = strconv.Quote(p), strconv.Quote(t)
	}
	if !who.IsAnonymous() {
		return p + "\x00" + t
	}
	return p + "\x00" + t + "\x00" + clientAddr(remote)
}

// liveModern is the live modern session of rt with id key, or nil.
func (f *Frontend) liveModern(rt *Route, key string) *gwSession {
	s, err := f.opts.Sessions.Get(key)
	if err != nil {
		return nil
	}
	if g, ok := s.Value.(*gwSession); ok && g.info.Era == core.EraModern && g.ctx.Err() == nil && g.onRoute(rt) {
		return g
	}
	return nil
}

// keyTaken reports whether key names a session that exists but is not a
// modern session of this route (here, or in the shared store): it cannot
// be admitted again under that key.
func (f *Frontend) keyTaken(ctx context.Context, key string) bool {
	if _, err := f.opts.Sessions.Get(key); err == nil {
		return true
	}
	p := f.persist
	if p == nil || p.bc == nil {
		return false
	}
	_, err := p.st.Get(ctx, key)
	return err == nil
}

// modernFlightFor returns the session found by existing (called under
// rt.state.mu), or creates it with create, once for key: concurrent callers
// for the same key wait for that creation; other keys do not.
func (f *Frontend) modernFlightFor(r *http.Request, rt *Route, key string, existing func() *gwSession,
	create func(context.Context) (*gwSession, *core.Error)) (*gwSession, bool, *core.Error) {
	rt.state.mu.Lock()
	if g := existing(); g != nil {
		rt.state.mu.Unlock()
		return g, false, nil
	}
	fl := rt.state.flights[key]
	if fl != nil {
		rt.state.mu.Unlock()
		select {
		case <-fl.done:
			return fl.g, false, fl.err
		case <-r.Context().Done():
			return nil, false, core.NewError(core.CodeRequestTimeout, "request cancelled").Wrap(r.Context().Err())
		}
	}
	fl = &modernFlight{done: make(chan struct{})}
	if rt.state.flights == nil {
		rt.state.flights = map[string]*modernFlight{}
	}
	rt.state.flights[key] = fl
	rt.state.mu.Unlock()
	// Requests waiting for this creation do not depend on this client
	// staying connected.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), flightTimeout)
	defer cancel()
	fl.g, fl.err = create(ctx)
	rt.state.mu.Lock()
	delete(rt.state.flights, key)
	rt.state.mu.Unlock()
	close(fl.done)
	return fl.g, fl.err == nil, fl.err
}

// newModernSession admits and opens a modern session for the caller of
// r: with a fresh key, or under id when a stale key of ours is admitted
// again; anon is the keyless group it serves ("" for none).
func (f *Frontend) newModernSession(ctx context.Context, r *http.Request, rt *Route, version, anon, id string) (*gwSession, *core.Error) {
	o, e := f.openSession(ctx, &sessionSpec{
		route: rt, identity: identityOf(r), era: core.EraModern, version: version,
		remoteAddr: r.RemoteAddr, id: id, connect: true, anonKey: anon,
	})
	if e != nil {
		return nil, e
	}
	return o.publish(ctx)
}

// fetchModern adopts a modern session another replica created, from the
// shared store: its key works on every replica. It returns (nil, nil)
// when the store has no modern session of rt under key.
func (f *Frontend) fetchModern(ctx context.Context, r *http.Request, rt *Route, key string) (*gwSession, error) {
	p := f.persist
	if p == nil || p.bc == nil {
		return nil, nil
	}
	rec, err := p.st.Get(ctx, key)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) || f.opts.StoreFailOpen {
			return nil, nil
		}
		f.storeFailed(f.log, slog.LevelError, "get", err, "session", core.Fingerprint(key))
		return nil, storeUnavailable(err)
	}
	if rec.Era != core.EraModern || rec.Route != rt.Name || rec.Expired(time.Now()) {
		return nil, nil
	}
	who := identityOf(r)
	if !f.ownedBy(r, who, &core.SessionInfo{ID: rec.ID, Route: rec.Route, Principal: rec.Principal, Tenant: rec.Tenant}) {
		return nil, hijackRefused()
	}
	if f.hop != nil && rec.Owner != "" && rec.Owner != p.origin {
		// Its pending calls (and, for stdio, its process) live on the
		// owner; the hop forwards there and only hands over a session
		// whose owner is gone.
		e := core.NewError(core.CodeInternalError, "session held by another replica; retry shortly").WithStatus(http.StatusServiceUnavailable)
		e.Header = http.Header{"Retry-After": {"1"}}
		return nil, e
	}
	g, e := f.adoptModern(ctx, r, rt, rec)
	if e != nil {
		if g := f.liveModern(rt, key); g != nil && owns(who, g.info) {
			return g, nil // a concurrent request adopted it first
		}
		f.log.Warn("session_not_fetched", "session", core.Fingerprint(key), "error", e)
		return nil, e
	}
	f.opts.Sessions.Resumed(g.sess, "replica")
	return g, nil
}

// adoptModern brings a stored modern session here: outside the caps (the
// cluster counts it already), owned by the identity its record names, with
// its upstream side opened anew — a modern session carries no protocol
// state.
func (f *Frontend) adoptModern(ctx context.Context, r *http.Request, rt *Route, rec *store.Record) (*gwSession, *core.Error) {
	mode := recordKnown
	if f.hop != nil && rec.Owner == "" {
		mode = recordOwn // now owned here
	}
	o, e := f.openSession(ctx, &sessionSpec{
		route: rt, identity: recordIdentity(rec), era: core.EraModern, version: rec.ProtocolVersion,
		remoteAddr: r.RemoteAddr, id: rec.ID, restored: "replica", adopt: true, created: rec.Created,
		connect: true, record: mode,
	})
	if e != nil {
		return nil, e
	}
	return o.publish(ctx)
}

// writeModern delivers a server message of a modern session: only to the
// stream of the request it belongs to. The modern era has no stream for
// anything else (list changes come on a subscriptions/listen request's own
// stream), and clients without a key share their session: a message for a
// request whose stream is gone must not reach another client's request.
func (g *gwSession) writeModern(m *core.Message, st *stream) {
	if st != nil && st.place(m) == nil {
		return
	}
	g.log.Debug("server_message_dropped", "method", m.Method, "reason", "no stream of its request")
}

// modernKeyOf is the gateway session a modern request names: its
// Mcpgate-Session header, else the session an mcpgate requestState in
// body was issued to (an MRTR retry from a client that sends no key must
// reach the replica holding its pending call). The state is only read
// here, not trusted: the bridge verifies it where the call is.
func modernKeyOf(r *http.Request, body []byte) string {
	if key := r.Header.Get(SessionHeader); key != "" {
		return key
	}
	if len(body) == 0 || !bytes.Contains(body, []byte(`"mcpgate1.`)) {
		return ""
	}
	var env struct {
		Params json.RawMessage `json:"params"`
	}
	if json.Unmarshal(body, &env) != nil {
		return ""
	}
	return stateSession(env.Params)
}

// hopTarget names the session a request for the hop belongs to: its
// Mcp-Session-Id on a stdio route (a legacy session's process lives on
// one replica); for a modern request on any route, the session it names
// (modernKeyOf) — a modern session lives on the replica that created it,
// with its pending MRTR calls. The body of a modern POST is read to find a
// requestState and handed back; done reports a request already answered
// (its body was refused).
func (f *Frontend) hopTarget(w http.ResponseWriter, r *http.Request, rt *Route) (id string, body []byte, done bool) {
	if id := r.Header.Get("Mcp-Session-Id"); id != "" {
		if rt.Local {
			return id, nil, false
		}
		return "", nil, false
	}
	if core.EraOf(r.Header.Get("MCP-Protocol-Version")) != core.EraModern {
		return "", nil, false
	}
	if key := r.Header.Get(SessionHeader); key != "" || r.Method != http.MethodPost {
		return key, nil, false
	}
	body, e := f.readBody(w, r)
	if e != nil {
		f.reject(w, r, nil, e)
		return "", nil, true
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return modernKeyOf(r, body), body, false
}

// hopSession is the session key a hop signature covers.
func hopSession(r *http.Request) string {
	if id := r.Header.Get("Mcp-Session-Id"); id != "" {
		return id
	}
	return r.Header.Get(SessionHeader)
}

// pendingCanceller is implemented by connections that keep MRTR calls
// pending for a retry (the bridge's modern-over-legacy connection).
type pendingCanceller interface {
	CancelPending(requestState string) bool
}

// stateSession is the gateway session an mcpgate requestState in a
// request's params was issued to, read but not verified; "" for none.
func stateSession(params []byte) string {
	state := requestStateOf(params)
	rest, ok := strings.CutPrefix(state, "mcpgate1.")
	if !ok {
		return ""
	}
	claims, _, ok := strings.Cut(rest, ".")
	if !ok {
		return ""
	}
	raw, err := base64.RawURLEncoding.DecodeString(claims)
	if err != nil {
		return ""
	}
	var c struct {
		Session string `json:"s"`
	}
	if json.Unmarshal(raw, &c) != nil {
		return ""
	}
	return c.Session
}

// requestStateOf is params.requestState, "" when there is none.
func requestStateOf(params []byte) string {
	if len(params) == 0 || !bytes.Contains(params, []byte(`"requestState"`)) {
		return ""
	}
	var p struct {
		RequestState string `json:"requestState"`
	}
	if json.Unmarshal(params, &p) != nil {
		return ""
	}
	return p.RequestState
}

// retrySession is the live session of rt holding the call an MRTR retry
// continues, or nil: a retry is served by that session whatever key it
// came with (the bridge verifies the state there).
//
// A retry naming another principal's session is not served by it (nor can
// it cancel that session's call): it goes on as a request of its own,
// whose session refuses the state.
func (f *Frontend) retrySession(r *http.Request, rt *Route, m *core.Message) *gwSession {
	if m.Kind != core.KindRequest {
		return nil
	}
	if sid := stateSession(m.Params); sid != "" {
		if g := f.liveModern(rt, sid); g != nil && f.ownedBy(r, identityOf(r), g.info) {
			return g
		}
	}
	return nil
}

// cancelRetry abandons the pending call a refused MRTR retry would have
// continued, so that the server's call ends now rather than when the
// bridge stops waiting for the retry.
func (g *gwSession) cancelRetry(m *core.Message) {
	if g == nil || m.Kind != core.KindRequest {
		return
	}
	state := requestStateOf(m.Params)
	if state == "" {
		return
	}
	conn, _ := g.connection()
	if c, ok := conn.(pendingCanceller); ok && c.CancelPending(state) {
		g.log.Info("pending_call_cancelled", "method", m.Method, "reason", "retry_refused")
	}
}

// rejectModern refuses a modern request, and when it is an MRTR retry,
// ends the call it would have continued.
func (f *Frontend) rejectModern(w http.ResponseWriter, r *http.Request, rt *Route, g *gwSession, m *core.Message, e *core.Error) {
	if g == nil {
		g = f.retrySession(r, rt, m)
	}
	g.cancelRetry(m)
	f.reject(w, r, m, e)
}

// sharesChannel reports whether this session's modern requests share one
// upstream channel whose ids and progress tokens they could collide in: a
// stdio process that speaks 2026-07-28 itself. Over HTTP every request is
// an exchange of its own, and the bridge isolates what it sends a legacy
// server (see upstream/bridge), so only there is isolate needed.
func (g *gwSession) sharesChannel(ctx context.Context) bool {
	if !g.route().Local {
		return false
	}
	info, err := g.route().Upstream.Probe(ctx)
	return err == nil && info.Era == core.EraModern
}
