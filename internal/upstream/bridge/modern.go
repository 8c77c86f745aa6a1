package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// A modern client of a legacy server.
//
// mcpgate holds a legacy upstream session (a "side") for the client's
// modern session, initialized with the capabilities and client info the
// client's requests carry in _meta; a request declaring other capabilities
// gets a side of its own, initialized with those (sides are kept per set
// of the capabilities a legacy server can observe, at most maxSides).
//
// A legacy server asks the client things (sampling, elicitation, roots)
// with requests of its own while a call is in flight. A modern client
// cannot receive those: the call's response becomes an input_required
// result holding them, with a requestState mcpgate signs (session,
// principal, method, name, expiry). The upstream call stays pending; the
// client's retry carries inputResponses, which go upstream as the answers,
// and the retry then waits for the same call: its result, or the next
// round of questions.

const (
	// maxSides bounds the legacy sessions kept for one modern session.
	maxSides = 4
	// sideReplaceWindow: past maxSides, an idle side is replaced by one
	// for a new capability set at most maxSides times per window; then
	// the new set is refused.
	sideReplaceWindow = time.Minute
	// pendingTTL bounds how long a call waits for the client's retry
	// after an input_required result.
	pendingTTL = 5 * time.Minute
	// discoverTTL is the caching hint on a translated discover result.
	discoverTTL = 5 * time.Minute
)

// modernMethods are the requests a 2026-07-28 client may send. Anything
// else — methods the era removed (initialize, ping, logging/setLevel,
// resources/subscribe), unknown ones — gets -32601 (HTTP 404) from the
// bridge, as from a modern server, rather than reach the legacy server,
// which would serve the removed ones and may answer unknown ones with a
// bare HTTP error.
var modernMethods = []string{
	"server/discover", "subscriptions/listen",
	"tools/list", "tools/call", "prompts/list", "prompts/get",
	"resources/list", "resources/read", "resources/templates/list", "completion/complete",
}

// modernError is an error answer to a modern client: its HTTP status is
// the one the 2026-07-28 transport gives the code.
func modernError(id core.ID, code int, msg string) *core.Message {
	m := errorResponse(id, code, msg)
	m.Era = core.EraModern
	return m
}

// cacheableMethods are the requests whose 2026-07-28 results carry the
// caching hints ttlMs and cacheScope (CacheableResult in the schema).
var cacheableMethods = []string{"tools/list", "prompts/list", "resources/list", "resources/templates/list", "resources/read"}

// mrtrMethods are the requests that may answer input_required.
var mrtrMethods = []string{"tools/call", "prompts/get", "resources/read"}

type modernOverLegacy struct {
	u    *Upstream
	p    upstream.OpenParams
	log  *slog.Logger
	life context.Context
	kill context.CancelFunc

	mu    sync.Mutex
	sides []*side // most recently used last
	// replaced are the times sides were replaced past maxSides, within
	// the last sideReplaceWindow.
	replaced []time.Time
	calls    map[string]*pendingCall
	subs     map[*subscription]struct{}
	closed   bool
	seq      atomic.Uint64
}

// side is one legacy upstream session.
type side struct {
	m     *modernOverLegacy
	caps  string // canonical client capabilities it was initialized with
	ready chan struct{}
	err   error // set before ready closes
	conn  upstream.Conn
	// init is the upstream's InitializeResult.
	init object
	dead atomic.Bool
	// busy counts what keeps the side in use: calls upstream (pending
	// input_required ones included) and subscriptions.
	busy atomic.Int32

	mu        sync.Mutex
	logLevel  string
	resources map[string]int // resources/subscribe reference counts
	listening bool
}

// pendingCall is an upstream call that asked the client something and is
// waiting for the client's retry.
type pendingCall struct {
	key    string
	method string
	name   string
	side   *side
	cancel context.CancelFunc
	done   chan *core.Message // the final response (or an error response)
	// err, set before done receives, is a failure the frontend handles
	// itself (a lost response).
	err    error
	inputs chan *core.Message // server requests of the call

	mu          sync.Mutex
	related     upstream.Related   // the waiting client request's
	outstanding map[string]core.ID // input key → upstream request id
	asked       map[string][]byte  // input key → the request, for repeats
	timer       *time.Timer
}

func newModernOverLegacy(_ context.Context, u *Upstream, p upstream.OpenParams, _ upstream.Sink) (upstream.Conn, error) {
	life, kill := context.WithCancel(context.Background())
	log := u.opts.Logger
	if p.Session != nil {
		log = log.With("session", p.Session.LogID(), "principal", p.Session.Principal)
	}
	return &modernOverLegacy{
		u: u, p: p, log: log, life: life, kill: kill,
		calls: map[string]*pendingCall{}, subs: map[*subscription]struct{}{},
	}, nil
}

func (c *modernOverLegacy) UpstreamSession() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := len(c.sides); n > 0 && c.sides[n-1].conn != nil {
		return c.sides[n-1].conn.UpstreamSession()
	}
	return ""
}

// Listen does nothing: modern clients have no GET stream; they listen
// with subscriptions/listen.
func (c *modernOverLegacy) Listen(context.Context) error { return nil }

func (c *modernOverLegacy) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	sides := c.sides
	c.sides = nil
	calls := make([]*pendingCall, 0, len(c.calls))
	for _, call := range c.calls {
		calls = append(calls, call)
	}
	c.mu.Unlock()
	for _, call := range calls {
		c.abandon(call, "the session ended")
	}
	c.kill()
	var errs []error
	for _, s := range sides {
		<-s.ready
		if s.conn != nil {
			errs = append(errs, s.conn.Close(ctx))
		}
	}
	return errors.Join(errs...)
}

// Send forwards a client notification to the newest legacy session,
// without the modern-only _meta.
func (c *modernOverLegacy) Send(ctx context.Context, m *core.Message) error {
	if m.Kind != core.KindNotification {
		return errors.New("bridge: a modern client sends no responses")
	}
	if m.Method == "notifications/cancelled" {
		// It names the client's id, not the one the call has upstream;
		// cancelling the request's context (the frontend does, as when
		// the client closes the stream) cancels the call under its own.
		return nil
	}
	c.mu.Lock()
	var s *side
	if n := len(c.sides); n > 0 {
		s = c.sides[n-1]
	}
	c.mu.Unlock()
	if s == nil {
		return nil // nothing upstream yet to tell
	}
	<-s.ready
	if s.err != nil {
		return s.err
	}
	out, err := withParams(m, stripModernMeta)
	if err != nil {
		return err
	}
	return s.conn.Send(ctx, out)
}

func stripModernMeta(params object) error {
	meta := params.sub("_meta")
	for _, k := range modernMetaKeys {
		delete(meta, k)
	}
	if len(meta) == 0 {
		delete(params, "_meta")
	} else {
		params.set("_meta", meta)
	}
	return nil
}

// observableCaps is the part of a modern client's capabilities a legacy
// server can observe and act on — sampling, elicitation and roots, with
// their flags — in canonical form (sorted keys, flag values reduced to
// what they mean). Sides are keyed on it: capabilities the server would
// ignore (experimental keys, unknown flags) neither open another upstream
// session nor reach the server.
func observableCaps(raw json.RawMessage) string {
	var caps map[string]json.RawMessage
	if len(raw) == 0 || json.Unmarshal(raw, &caps) != nil {
		return "{}"
	}
	out := map[string]map[string]any{}
	keep := func(name string, flags ...string) {
		v, ok := caps[name]
		if !ok || string(v) == "null" {
			return
		}
		var sub map[string]json.RawMessage
		_ = json.Unmarshal(v, &sub)
		o := map[string]any{}
		for _, f := range flags {
			fv, ok := sub[f]
			switch {
			case !ok || string(fv) == "null" || string(fv) == "false":
			case f == "listChanged":
				if string(fv) == "true" {
					o[f] = true
				}
			default:
				o[f] = struct{}{}
			}
		}
		out[name] = o
	}
	keep("sampling", "context", "tools")
	keep("elicitation", "form", "url")
	keep("roots", "listChanged")
	b, _ := json.Marshal(out)
	return string(b)
}

// errTooManySides refuses a request whose capability set would open one
// legacy session more than a modern session may hold.
func errTooManySides() *core.Error {
	return core.NewError(core.CodeInvalidRequest, "this session already holds "+strconv.Itoa(maxSides)+
		" upstream sessions, one per distinct set of sampling, elicitation and roots capabilities, the most one session may "+
		"(and has replaced idle ones "+strconv.Itoa(maxSides)+" times in the last "+sideReplaceWindow.String()+"); "+
		"send requests with a capability set already in use, or use another session").WithStatus(http.StatusBadRequest)
}

// sideFor returns the legacy session for the client capabilities in meta,
// initializing one if there is none. A session holds at most maxSides;
// past that the least recently used idle side (nothing in flight, no
// subscription) makes room, at most maxSides times per
// sideReplaceWindow — clients of one address that share the session may
// differ in capabilities, but one rotating them must not open an upstream
// session (for stdio, a process) per request — and otherwise the new set
// is refused.
func (c *modernOverLegacy) sideFor(ctx context.Context, meta object) (*side, error) {
	caps := observableCaps(meta[metaClientCaps])
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, upstream.ErrClosed
	}
	var dead []*side
	c.sides = slices.DeleteFunc(c.sides, func(s *side) bool {
		if s.dead.Load() {
			dead = append(dead, s)
			return true
		}
		return false
	})
	for _, s := range dead {
		go func() {
			c.abandonSide(s, "the upstream session ended")
			s.close()
		}()
	}
	for i, s := range c.sides {
		if s.caps == caps {
			c.sides = append(slices.Delete(c.sides, i, i+1), s)
			s.busy.Add(1) // the caller's hold, released by RoundTrip
			c.mu.Unlock()
			select {
			case <-s.ready:
			case <-ctx.Done():
				s.busy.Add(-1)
				return nil, ctx.Err()
			}
			return s, s.err
		}
	}
	var evicted *side
	if len(c.sides) >= maxSides {
		now := time.Now()
		c.replaced = slices.DeleteFunc(c.replaced, func(at time.Time) bool { return now.Sub(at) >= sideReplaceWindow })
		i := slices.IndexFunc(c.sides, (*side).idle)
		if i < 0 || len(c.replaced) >= maxSides {
			c.mu.Unlock()
			c.log.Warn("bridge_capability_sets_exhausted", "max", maxSides)
			return nil, errTooManySides()
		}
		evicted = c.sides[i]
		c.sides = slices.Delete(c.sides, i, i+1)
		c.replaced = append(c.replaced, now)
	}
	s := &side{m: c, caps: caps, ready: make(chan struct{}), resources: map[string]int{}}
	s.busy.Add(1) // the caller's hold
	c.sides = append(c.sides, s)
	c.mu.Unlock()
	if evicted != nil {
		go evicted.close()
	}
	s.err = s.open(ctx, meta)
	if s.err != nil {
		c.mu.Lock()
		if i := slices.Index(c.sides, s); i >= 0 {
			c.sides = slices.Delete(c.sides, i, i+1)
		}
		c.mu.Unlock()
	}
	close(s.ready)
	return s, s.err
}

// open starts the legacy session: initialize with the client's
// capabilities and info, then notifications/initialized.
func (s *side) open(ctx context.Context, meta object) error {
	c := s.m
	ctx = context.WithoutCancel(ctx) // one client's abandoned request must not break the session for others
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := c.u.inner.Open(ctx, upstream.OpenParams{Session: c.p.Session, Era: core.EraLegacy, Catalog: c.p.Catalog}, sideSink{s})
	if err != nil {
		return err
	}
	params := object{}
	params.set("protocolVersion", core.LatestLegacyVersion)
	params.set("capabilities", json.RawMessage(s.caps))
	info := meta[metaClientInfo]
	if len(info) == 0 {
		info = json.RawMessage(`{"name":"mcpgate-bridge","version":"1"}`)
	}
	params.set("clientInfo", info)
	init, err := buildRequest(core.ID(`"mcpgate-init"`), "initialize", params)
	if err == nil {
		var resp *core.Message
		if resp, err = c.u.ownTrip(ctx, c.p.Session, conn, init, nil); err == nil {
			switch {
			case resp.Kind == core.KindError:
				err = fmt.Errorf("the legacy server refused initialize: %s", resp.Error)
			default:
				s.init, err = parseObject(resp.Result)
			}
		}
	}
	if err == nil && core.EraOf(s.init.str("protocolVersion")) != core.EraLegacy {
		err = fmt.Errorf("the server answered initialize with protocol version %q", s.init.str("protocolVersion"))
	}
	if err == nil {
		var n *core.Message
		if n, err = core.Notification("notifications/initialized", nil); err == nil {
			err = c.u.ownSend(ctx, c.p.Session, conn, n)
		}
	}
	if err != nil {
		_ = conn.Close(ctx)
		c.log.Warn("bridge_initialize_failed", "error", err)
		if errors.Is(err, upstream.ErrCredential) {
			return core.AsError(err) // the caller's own credential: its error says which
		}
		return core.NewError(core.CodeUpstreamError, "upstream unavailable: the legacy server did not start a session").Wrap(err)
	}
	s.conn = conn
	return nil
}

// idle reports whether nothing uses the side: it is open, with no call
// upstream and no subscription.
func (s *side) idle() bool {
	select {
	case <-s.ready:
	default:
		return false
	}
	return s.busy.Load() == 0
}

func (s *side) close() {
	<-s.ready
	if s.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.conn.Close(ctx)
	}
}

// serverCap reports whether the server declared capability path (e.g.
// "logging", "resources.subscribe", "tools.listChanged").
func (s *side) serverCap(name, sub string) bool {
	caps := s.init.sub("capabilities")
	v, ok := caps[name]
	if !ok || string(v) == "null" {
		return false
	}
	if sub == "" {
		return true
	}
	var b bool
	return json.Unmarshal(caps.sub(name)[sub], &b) == nil && b
}

// sideSink receives what the legacy server sends outside a call.
type sideSink struct{ s *side }

func (k sideSink) Deliver(m *core.Message) {
	s := k.s
	if m.Kind == core.KindRequest {
		// A modern client can only be asked within a call.
		go s.refuse(m, "the client speaks protocol version 2026-07-28 and can be asked only within a call (tools/call, prompts/get, resources/read)")
		return
	}
	if m.Kind == core.KindNotification {
		s.m.publish(s, m)
	}
}

func (k sideSink) Closed(err error) {
	k.s.dead.Store(true)
	k.s.m.log.Info("bridge_upstream_session_ended", "error", err)
}

// refuse answers a server request the client cannot be asked.
func (s *side) refuse(m *core.Message, why string) {
	ctx, cancel := context.WithTimeout(s.m.life, 10*time.Second)
	defer cancel()
	s.m.u.consumed(ctx, s.m.p.Session, m)
	if err := s.m.u.ownSend(ctx, s.m.p.Session, s.conn, errorResponse(m.ID, core.CodeMethodNotFound, why)); err != nil {
		s.m.log.Warn("bridge_refuse_failed", "method", m.Method, "error", err)
	}
}

// RoundTrip serves one modern request from the legacy server.
func (c *modernOverLegacy) RoundTrip(ctx context.Context, req *core.Message, related upstream.Related) (*core.Message, error) {
	if req.Kind != core.KindRequest {
		return nil, errors.New("bridge: RoundTrip takes a request; use Send")
	}
	if !slices.Contains(modernMethods, req.Method) {
		return modernError(req.ID, core.CodeMethodNotFound, "Method not found: "+req.Method+" does not exist in protocol version 2026-07-28"), nil
	}
	params, err := parseObject(req.Params)
	if err != nil {
		return modernError(req.ID, core.CodeInvalidParams, "invalid params: not an object"), nil
	}
	meta := params.sub("_meta")
	for _, k := range []string{metaProtocolVersion, metaClientCaps} {
		if _, ok := meta[k]; !ok {
			return modernError(req.ID, core.CodeInvalidParams, "invalid params: _meta[\""+k+"\"] is required"), nil
		}
	}
	if state := params.str("requestState"); strings.HasPrefix(state, statePrefix) {
		return c.resume(ctx, req, params, state, related)
	}
	// A requestState that is not mcpgate's is the server's own: a legacy
	// server that speaks MRTR itself answered input_required (see final);
	// the retry goes to it as it is.
	s, err := c.sideFor(ctx, meta)
	if s != nil {
		defer s.busy.Add(-1) // sideFor's hold: the side is not replaced under this request
	}
	if err != nil {
		return nil, err
	}
	switch req.Method {
	case "server/discover":
		return c.discover(req, s)
	case "subscriptions/listen":
		return c.listen(ctx, req, params, s, related)
	}
	if err := s.applyLogLevel(ctx, meta.str(metaLogLevel)); err != nil {
		return nil, err
	}
	fwd, token, err := c.upstreamRequest(req)
	if err != nil {
		return nil, err
	}
	call := c.start(s, req, fwd, token, related)
	return c.wait(ctx, call, req, related)
}

// upstreamRequest is req as the legacy session receives it: without the
// modern _meta, under an id and a progress token of the bridge's own
// (token is the client's, if it gave one). A modern session's requests are
// independent — clients that share the session each count their ids from
// 1 and may all name their progress "1" — while one legacy session needs
// both unique among its requests in flight: a repeated id is refused, and
// progress would reach only one of the calls that share a token.
func (c *modernOverLegacy) upstreamRequest(req *core.Message) (fwd *core.Message, token json.RawMessage, err error) {
	params, err := parseObject(req.Params)
	if err != nil {
		return nil, nil, err
	}
	if err := stripModernMeta(params); err != nil {
		return nil, nil, err
	}
	n := strconv.FormatUint(c.seq.Add(1), 10)
	if meta := params.sub("_meta"); meta["progressToken"] != nil {
		token = meta["progressToken"]
		meta.set("progressToken", "mcpgate-p"+n)
		params.set("_meta", meta)
	}
	fwd, err = buildRequest(core.ID(`"mcpgate-r`+n+`"`), req.Method, params)
	if err != nil {
		return nil, nil, err
	}
	fwd.Direction, fwd.Era, fwd.Session, fwd.Header, fwd.Received = req.Direction, req.Era, req.Session, req.Header, req.Received
	return fwd, token, nil
}

// clientProgress gives a progress notification of the call back the
// client's own token.
func clientProgress(m *core.Message, token json.RawMessage) *core.Message {
	if m.Method != "notifications/progress" || token == nil {
		return m
	}
	out, err := withParams(m, func(p object) error {
		p.set("progressToken", token)
		return nil
	})
	if err != nil {
		return m
	}
	return out
}

// discover answers server/discover from the InitializeResult.
func (c *modernOverLegacy) discover(req *core.Message, s *side) (*core.Message, error) {
	res := object{}
	res.set("resultType", resultComplete)
	res.set("supportedVersions", core.ModernVersions)
	caps := s.init.sub("capabilities")
	res.set("capabilities", caps)
	meta := object{}
	if info, ok := s.init["serverInfo"]; ok {
		meta.set(metaServerInfo, info)
	}
	res.set("_meta", meta)
	if instr, ok := s.init["instructions"]; ok {
		res.set("instructions", instr)
	}
	// The capabilities come from this side's InitializeResult, which does
	// not change while it lives.
	res.set("ttlMs", max(discoverTTL, c.u.opts.CacheTTL).Milliseconds())
	res.set("cacheScope", c.u.opts.CacheScope)
	return core.ResultResponse(req.ID, res.encode()), nil
}

// applyLogLevel sends logging/setLevel when a request asks for a level
// the legacy session does not have yet.
func (s *side) applyLogLevel(ctx context.Context, level string) error {
	if level == "" || !s.serverCap("logging", "") {
		return nil
	}
	s.mu.Lock()
	same := s.logLevel == level
	s.mu.Unlock()
	if same {
		return nil
	}
	p := object{}
	p.set("level", level)
	m, err := buildRequest(core.ID(`"mcpgate-log-`+strconv.FormatUint(s.m.seq.Add(1), 10)+`"`), "logging/setLevel", p)
	if err != nil {
		return err
	}
	resp, err := s.m.u.ownTrip(ctx, s.m.p.Session, s.conn, m, nil)
	if err != nil {
		return err
	}
	if resp.Kind == core.KindResponse {
		s.mu.Lock()
		s.logLevel = level
		s.mu.Unlock()
	}
	return nil
}

// start sends fwd upstream on its own goroutine: the call may outlive the
// client request that started it (input_required), so it is bound to the
// Conn's life, not to that request.
func (c *modernOverLegacy) start(s *side, req, fwd *core.Message, token json.RawMessage, related upstream.Related) *pendingCall {
	ctx, cancel := context.WithCancel(c.life)
	call := &pendingCall{
		key: strconv.FormatUint(c.seq.Add(1), 10), method: req.Method, name: req.Name, side: s, cancel: cancel,
		done: make(chan *core.Message, 1), inputs: make(chan *core.Message, 16),
		outstanding: map[string]core.ID{}, asked: map[string][]byte{},
		// Set before the call starts: the server may report progress
		// before wait runs.
		related: related,
	}
	mrtr := slices.Contains(mrtrMethods, req.Method)
	s.busy.Add(1)
	go func() {
		defer s.busy.Add(-1)
		defer cancel()
		resp, err := s.conn.RoundTrip(ctx, fwd, func(m *core.Message) {
			if m.Kind == core.KindRequest {
				if !mrtr {
					go s.refuse(m, "the client speaks protocol version 2026-07-28 and can be asked only within tools/call, prompts/get or resources/read")
					return
				}
				select {
				case call.inputs <- m:
				default: // never block the upstream's stream
					go s.refuse(m, "too many questions open at once for one call")
				}
				return
			}
			call.mu.Lock()
			rel := call.related
			call.mu.Unlock()
			if rel != nil {
				rel(clientProgress(m, token))
			}
		})
		if errors.Is(err, upstream.ErrSessionLost) {
			// The legacy server forgot the session (it restarted): the
			// next request opens a new side, and the frontend repeats
			// this one there if it is safe to.
			s.dead.Store(true)
			call.err = &core.Error{Code: core.CodeUpstreamError,
				Message: "the upstream server lost its session during this " + req.Method + "; mcpgate opens a new one for the next request, but this call may or may not have run",
				Err:     fmt.Errorf("%w: %w", upstream.ErrResponseLost, err)}
		}
		if err != nil {
			e := core.AsError(err)
			if errors.Is(err, context.Canceled) {
				e = core.NewError(core.CodeRequestTimeout, "the call was cancelled")
			}
			resp = core.ErrorResponse(fwd.ID, e)
		}
		call.done <- resp
	}()
	return call
}

// wait waits for the call's result, or for questions the server asks the
// client, which end this client request with input_required.
func (c *modernOverLegacy) wait(ctx context.Context, call *pendingCall, req *core.Message, related upstream.Related) (*core.Message, error) {
	call.mu.Lock()
	call.related = related
	if call.timer != nil {
		call.timer.Stop()
	}
	call.mu.Unlock()
	select {
	case resp := <-call.done:
		c.forget(call)
		if call.err != nil {
			return nil, call.err
		}
		return c.final(resp, req), nil
	case in := <-call.inputs:
		return c.inputRequired(ctx, call, req, in, related)
	case <-ctx.Done():
		// The client gave up on this request: so does mcpgate.
		c.abandon(call, "the client cancelled the request")
		return nil, ctx.Err()
	}
}

// inputRequired turns the server's questions into an input_required
// result. Questions that arrive together go in one round.
func (c *modernOverLegacy) inputRequired(ctx context.Context, call *pendingCall, req, first *core.Message, related upstream.Related) (*core.Message, error) {
	batch := []*core.Message{first}
	deadline := time.After(20 * time.Millisecond)
collect:
	for {
		select {
		case m := <-call.inputs:
			batch = append(batch, m)
		case <-deadline:
			break collect
		}
	}
	caps, _ := parseObject([]byte(call.side.caps))
	inputs := object{}
	call.mu.Lock()
	call.related = nil
	for _, m := range batch {
		if !clientCan(caps, m.Method) {
			go call.side.refuse(m, "the client did not declare the capability for "+m.Method)
			continue
		}
		key := "q" + strconv.FormatUint(c.seq.Add(1), 10)
		call.outstanding[key] = m.ID
		q := object{}
		q.set("method", m.Method)
		if m.Params != nil {
			q.set("params", json.RawMessage(m.Params))
		}
		call.asked[key] = q.encode()
	}
	for k, q := range call.asked {
		if _, open := call.outstanding[k]; open {
			inputs.set(k, json.RawMessage(q))
		}
	}
	if len(inputs) == 0 {
		// Everything asked was refused: keep waiting for the result.
		call.mu.Unlock()
		return c.wait(ctx, call, req, related)
	}
	c.armTimer(call)
	call.mu.Unlock()
	return c.ask(call, req, inputs), nil
}

// ask ends the client's request with the questions in inputs: the call
// waits for the retry, whose requestState names it.
func (c *modernOverLegacy) ask(call *pendingCall, req *core.Message, inputs object) *core.Message {
	c.mu.Lock()
	c.calls[call.key] = call
	c.mu.Unlock()
	res := object{}
	res.set("resultType", resultInputRequired)
	res.set("inputRequests", inputs)
	res.set("requestState", sealState(c.u.opts.StateKey, stateClaims{
		Session: c.sessionID(), Principal: c.principal(), Method: call.method, Name: call.name,
		Pending: call.key, Round: c.seq.Add(1), Expires: time.Now().Add(pendingTTL).Unix(),
	}))
	return core.ResultResponse(req.ID, res.encode())
}

// clientCan reports whether the client declared the capability a server
// request needs.
func clientCan(caps object, method string) bool {
	need := map[string]string{"sampling/createMessage": "sampling", "elicitation/create": "elicitation", "roots/list": "roots"}[method]
	if need == "" {
		return false
	}
	v, ok := caps[need]
	return ok && string(v) != "null"
}

// resume continues a call with the client's answers.
func (c *modernOverLegacy) resume(ctx context.Context, req *core.Message, params object, state string, related upstream.Related) (*core.Message, error) {
	claims, err := openState(c.u.opts.StateKey, state, time.Now())
	switch {
	case err != nil:
	case claims.Principal != c.principal() || claims.Method != req.Method || claims.Name != req.Name:
		err = errBadState
	case claims.Session != c.sessionID():
		// Genuine, but issued to another gateway session: the call it
		// continues waits there (with several replicas, on the one that
		// issued it).
		err = errors.New("requestState was issued to another gateway session; the retry must reach the session (and gateway replica) that issued it")
	}
	if err != nil {
		if errors.Is(err, errBadState) {
			// A genuine state of this session retried with another method
			// or name ends its call: the client will not continue it.
			c.CancelPending(state)
		}
		return modernError(req.ID, core.CodeInvalidParams, "invalid params: "+err.Error()), nil
	}
	c.mu.Lock()
	call := c.calls[claims.Pending]
	delete(c.calls, claims.Pending) // one retry continues a call
	c.mu.Unlock()
	if call == nil {
		return modernError(req.ID, core.CodeInvalidParams, "invalid params: requestState refers to a call that has ended; send the request again without it"), nil
	}
	answers := params.sub("inputResponses")
	call.mu.Lock()
	type answer struct {
		id     core.ID
		result json.RawMessage
	}
	var send []answer
	for key, id := range call.outstanding {
		if a, ok := answers[key]; ok {
			send = append(send, answer{id, a})
			delete(call.outstanding, key)
		}
	}
	open := len(call.outstanding)
	call.mu.Unlock()
	for _, a := range send {
		if err := c.u.ownSend(ctx, c.p.Session, call.side.conn, core.ResultResponse(a.id, a.result)); err != nil {
			call.cancel()
			return nil, err
		}
	}
	if open > 0 {
		// Not everything was answered: ask again for what is missing.
		return c.askAgain(call, req)
	}
	return c.wait(ctx, call, req, related)
}

// CancelPending abandons the call a requestState of this session (and
// principal) continues: the client's retry with it was refused (by the
// gateway before it got here, or by resume), so the server's call must not
// wait out pendingTTL for a retry that is not coming. It reports whether a
// call was abandoned.
func (c *modernOverLegacy) CancelPending(state string) bool {
	claims, err := openState(c.u.opts.StateKey, state, time.Now())
	if err != nil || claims.Session != c.sessionID() || claims.Principal != c.principal() {
		return false
	}
	c.mu.Lock()
	call := c.calls[claims.Pending]
	c.mu.Unlock()
	if call == nil {
		return false
	}
	c.abandon(call, "the client's retry was refused")
	return true
}

// askAgain repeats the questions still open.
func (c *modernOverLegacy) askAgain(call *pendingCall, req *core.Message) (*core.Message, error) {
	call.mu.Lock()
	c.armTimer(call)
	inputs := object{}
	for k := range call.outstanding {
		inputs.set(k, json.RawMessage(call.asked[k]))
	}
	call.mu.Unlock()
	return c.ask(call, req, inputs), nil
}

// armTimer ends a call whose client does not come back with a retry
// within pendingTTL. The caller holds call.mu.
func (c *modernOverLegacy) armTimer(call *pendingCall) {
	if call.timer != nil {
		call.timer.Stop()
	}
	call.timer = time.AfterFunc(pendingTTL, func() {
		c.abandon(call, "the client did not come back with the answers in time")
	})
}

// abandonSide abandons the pending calls of one legacy session.
func (c *modernOverLegacy) abandonSide(s *side, why string) {
	c.mu.Lock()
	var calls []*pendingCall
	for _, call := range c.calls {
		if call.side == s {
			calls = append(calls, call)
		}
	}
	c.mu.Unlock()
	for _, call := range calls {
		c.abandon(call, why)
	}
}

// abandon ends a call the client will not continue: the server's open
// questions get an error answer (a server waiting for them would otherwise
// wait for ever), then the call is cancelled.
func (c *modernOverLegacy) abandon(call *pendingCall, why string) {
	c.forget(call)
	call.mu.Lock()
	open := make([]core.ID, 0, len(call.outstanding))
	for k, id := range call.outstanding {
		open = append(open, id)
		delete(call.outstanding, k)
	}
	call.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, id := range open {
		_ = c.u.ownSend(ctx, c.p.Session, call.side.conn, errorResponse(id, core.CodeInternalError, why))
	}
	call.cancel()
}

func (c *modernOverLegacy) forget(call *pendingCall) {
	call.mu.Lock()
	if call.timer != nil {
		call.timer.Stop()
	}
	call.mu.Unlock()
	c.mu.Lock()
	delete(c.calls, call.key)
	c.mu.Unlock()
}

// final translates the legacy server's response for a modern client:
// resultType on results, the modern code for a missing resource.
func (c *modernOverLegacy) final(resp *core.Message, req *core.Message) *core.Message {
	resp = asResponse(resp, req.ID)
	switch resp.Kind {
	case core.KindResponse:
		out, err := withResult(resp, func(r object) error {
			if _, ok := r["resultType"]; ok {
				return nil
			}
			// A legacy server that itself speaks MRTR (go-sdk serves
			// input requests it cannot fulfil over the session this way)
			// answers with inputRequests or requestState: to a modern
			// client that is input_required.
			_, in := r["inputRequests"]
			_, st := r["requestState"]
			if in || st {
				r.set("resultType", resultInputRequired)
				delete(r, "content")
				return nil // an input_required result is never cached
			}
			r.set("resultType", resultComplete)
			if slices.Contains(cacheableMethods, req.Method) {
				c.fillCacheHints(r)
			}
			return nil
		})
		if err == nil {
			return out
		}
	case core.KindError:
		resp.Era = core.EraModern // HTTP status by the modern transport's rules
		if resp.ErrorCode() == codeLegacyResourceNotFound {
			var e struct {
				Message string          `json:"message"`
				Data    json.RawMessage `json:"data,omitempty"`
			}
			_ = json.Unmarshal(resp.Error, &e)
			ce := core.NewError(core.CodeInvalidParams, e.Message)
			if len(e.Data) > 0 {
				ce = ce.WithData(e.Data)
			}
			out := core.ErrorResponse(req.ID, ce)
			out.Status, out.Era = resp.Status, core.EraModern
			return out
		}
	}
	return resp
}

// fillCacheHints gives a cacheable result the hints 2026-07-28 requires
// where the legacy server gave none: the route's (by default ttlMs 0,
// cacheScope private: never cached across authorization contexts).
func (c *modernOverLegacy) fillCacheHints(r object) {
	if _, ok := r["ttlMs"]; !ok {
		r.set("ttlMs", c.u.opts.CacheTTL.Milliseconds())
	}
	if _, ok := r["cacheScope"]; !ok {
		r.set("cacheScope", c.u.opts.CacheScope)
	}
}

// codeLegacyResourceNotFound is the legacy era's code for a resource that
// does not exist; 2026-07-28 uses -32602.
const codeLegacyResourceNotFound = -32002

func (c *modernOverLegacy) sessionID() string {
	if c.p.Session == nil {
		return ""
	}
	return c.p.Session.ID
}

func (c *modernOverLegacy) principal() string {
	if c.p.Session == nil {
		return ""
	}
	return c.p.Session.Principal
}

// subscription is an open subscriptions/listen stream.
type subscription struct {
	id      core.ID
	side    *side
	related upstream.Related
	tools   bool
	prompts bool
	lists   bool
	uris    map[string]bool
}

// listen serves subscriptions/listen from the legacy session's GET stream
// and resources/subscribe, until the client closes the stream.
func (c *modernOverLegacy) listen(ctx context.Context, req *core.Message, params object, s *side, related upstream.Related) (*core.Message, error) {
	var want struct {
		ToolsListChanged      bool     `json:"toolsListChanged"`
		PromptsListChanged    bool     `json:"promptsListChanged"`
		ResourcesListChanged  bool     `json:"resourcesListChanged"`
		ResourceSubscriptions []string `json:"resourceSubscriptions"`
	}
	if n, ok := params["notifications"]; ok {
		if err := json.Unmarshal(n, &want); err != nil {
			return modernError(req.ID, core.CodeInvalidParams, "invalid params: notifications: "+err.Error()), nil
		}
	}
	sub := &subscription{id: req.ID, side: s, related: related, uris: map[string]bool{},
		tools:   want.ToolsListChanged && s.serverCap("tools", "listChanged"),
		prompts: want.PromptsListChanged && s.serverCap("prompts", "listChanged"),
		lists:   want.ResourcesListChanged && s.serverCap("resources", "listChanged"),
	}
	agreed := object{}
	if sub.tools {
		agreed.set("toolsListChanged", true)
	}
	if sub.prompts {
		agreed.set("promptsListChanged", true)
	}
	if sub.lists {
		agreed.set("resourcesListChanged", true)
	}
	if len(want.ResourceSubscriptions) > 0 && s.serverCap("resources", "subscribe") {
		var ok []string
		for _, uri := range want.ResourceSubscriptions {
			if err := s.subscribe(ctx, uri); err != nil {
				c.log.Warn("bridge_subscribe_failed", "uri", uri, "error", err)
				continue
			}
			sub.uris[uri] = true
			ok = append(ok, uri)
		}
		defer func() {
			for _, uri := range ok {
				s.unsubscribe(uri)
			}
		}()
		if len(ok) > 0 {
			agreed.set("resourceSubscriptions", ok)
		}
	}
	s.listenOnce()
	c.mu.Lock()
	c.subs[sub] = struct{}{}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.subs, sub)
		c.mu.Unlock()
	}()
	ackParams := object{}
	ackParams.set("_meta", object{metaSubscriptionID: json.RawMessage(req.ID)})
	ackParams.set("notifications", agreed)
	if ack, err := buildNotification("notifications/subscriptions/acknowledged", ackParams); err == nil {
		related(ack)
	}
	select {
	case <-ctx.Done():
	case <-c.life.Done():
	}
	res := object{}
	res.set("resultType", resultComplete)
	res.set("_meta", object{metaSubscriptionID: json.RawMessage(req.ID)})
	return core.ResultResponse(req.ID, res.encode()), nil
}

// publish hands a server notification to the subscriptions that asked
// for it, tagged with each one's id.
func (c *modernOverLegacy) publish(s *side, m *core.Message) {
	c.mu.Lock()
	var targets []*subscription
	for sub := range c.subs {
		if sub.side == s && sub.wants(m) {
			targets = append(targets, sub)
		}
	}
	c.mu.Unlock()
	for _, sub := range targets {
		out, err := withParams(m, func(p object) error {
			meta := p.sub("_meta")
			meta.set(metaSubscriptionID, json.RawMessage(sub.id))
			p.set("_meta", meta)
			return nil
		})
		if err == nil {
			sub.related(out)
		}
	}
}

func (sub *subscription) wants(m *core.Message) bool {
	switch m.Method {
	case "notifications/tools/list_changed":
		return sub.tools
	case "notifications/prompts/list_changed":
		return sub.prompts
	case "notifications/resources/list_changed":
		return sub.lists
	case "notifications/resources/updated":
		return sub.uris[m.Name] || sub.uris[uriOf(m)]
	}
	return false
}

func uriOf(m *core.Message) string {
	p, err := parseObject(m.Params)
	if err != nil {
		return ""
	}
	return p.str("uri")
}

// listenOnce opens the legacy session's GET stream, once.
func (s *side) listenOnce() {
	s.mu.Lock()
	if s.listening {
		s.mu.Unlock()
		return
	}
	s.listening = true
	s.mu.Unlock()
	go func() {
		if err := s.conn.Listen(s.m.life); err != nil && !errors.Is(err, context.Canceled) {
			s.m.log.Warn("bridge_listen_failed", "error", err)
		}
	}()
}

// subscribe sends resources/subscribe for the first subscription of uri.
func (s *side) subscribe(ctx context.Context, uri string) error {
	s.mu.Lock()
	s.resources[uri]++
	first := s.resources[uri] == 1
	s.mu.Unlock()
	if !first {
		return nil
	}
	err := s.resourceCall(ctx, "resources/subscribe", uri)
	if err != nil {
		s.mu.Lock()
		s.resources[uri]--
		s.mu.Unlock()
	}
	return err
}

// unsubscribe sends resources/unsubscribe after the last subscription of
// uri ends.
func (s *side) unsubscribe(uri string) {
	s.mu.Lock()
	s.resources[uri]--
	last := s.resources[uri] <= 0
	if last {
		delete(s.resources, uri)
	}
	s.mu.Unlock()
	if !last || s.m.life.Err() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(s.m.life, 10*time.Second)
	defer cancel()
	if err := s.resourceCall(ctx, "resources/unsubscribe", uri); err != nil {
		s.m.log.Debug("bridge_unsubscribe_failed", "uri", uri, "error", err)
	}
}

func (s *side) resourceCall(ctx context.Context, method, uri string) error {
	p := object{}
	p.set("uri", uri)
	m, err := buildRequest(core.ID(`"mcpgate-sub-`+strconv.FormatUint(s.m.seq.Add(1), 10)+`"`), method, p)
	if err != nil {
		return err
	}
	resp, err := s.m.u.ownTrip(ctx, s.m.p.Session, s.conn, m, nil)
	if err != nil {
		return err
	}
	if resp.Kind == core.KindError {
		return fmt.Errorf("%s refused: %s", method, resp.Error)
	}
	return nil
}
