package shared

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// vconn is one client session's Conn over a shared real Conn.
type vconn struct {
	u    *Upstream
	p    upstream.OpenParams
	sink upstream.Sink

	mu     sync.Mutex
	g      *group
	closed bool
	over   bool               // the real Conn ended
	level  int                // logging level the client asked for, -1 unset
	calls  map[core.ID]*vcall // in flight, by the client's id
}

var _ upstream.Conn = (*vconn)(nil)

// attached is v's group and its real Conn.
func (v *vconn) attached(ctx context.Context) (*group, upstream.Conn, error) {
	v.mu.Lock()
	g, closed, over := v.g, v.closed, v.over
	v.mu.Unlock()
	if closed || over {
		return nil, nil, upstream.ErrClosed
	}
	if g == nil {
		return nil, nil, core.NewError(core.CodeInvalidRequest, "invalid request: the session has not sent initialize")
	}
	select {
	case <-g.ready:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	if g.real == nil {
		return nil, nil, upstream.ErrClosed
	}
	return g, g.real, nil
}

// RoundTrip sends a client request over the shared Conn, or answers it
// here when the sharing makes that the session's own business.
func (v *vconn) RoundTrip(ctx context.Context, req *core.Message, related upstream.Related) (*core.Message, error) {
	if req.Kind != core.KindRequest {
		return nil, core.NewError(core.CodeInvalidRequest, "invalid request: RoundTrip needs a request, got a "+req.Kind.String())
	}
	if req.Method == "initialize" {
		return v.initialize(ctx, req, related)
	}
	g, real, err := v.attached(ctx)
	if err != nil {
		return nil, err
	}
	switch req.Method {
	case "logging/setLevel":
		return v.setLevel(ctx, g, real, req, related)
	case "resources/subscribe":
		return v.subscribe(ctx, g, real, req, related)
	case "resources/unsubscribe":
		return v.unsubscribe(ctx, g, real, req, related)
	}
	return v.forward(ctx, g, real, req, related)
}

func (v *vconn) initialize(ctx context.Context, req *core.Message, related upstream.Related) (*core.Message, error) {
	v.mu.Lock()
	g, closed := v.g, v.closed
	v.mu.Unlock()
	if closed {
		return nil, upstream.ErrClosed
	}
	if g != nil {
		return nil, core.NewError(core.CodeInvalidRequest, "invalid request: the session is initialized already")
	}
	fp, err := fingerprint(req.Params)
	if err != nil {
		return v.local(req, core.ErrorResponse(req.ID, core.NewError(core.CodeInvalidParams, "invalid params: initialize: "+err.Error()))), nil
	}
	return v.join(ctx, fp, req, related)
}

// local finishes a response the gateway makes for v.
func (v *vconn) local(req, resp *core.Message) *core.Message {
	resp.Direction, resp.Era, resp.Session, resp.Received = core.ServerToClient, v.p.Era, v.p.Session, time.Now()
	return resp
}

func (v *vconn) ok(req *core.Message) *core.Message {
	return v.local(req, core.ResultResponse(req.ID, []byte("{}")))
}

// forward sends req upstream with an id and progress token of its own.
func (v *vconn) forward(ctx context.Context, g *group, real upstream.Conn, req *core.Message, related upstream.Related) (*core.Message, error) {
	c := &vcall{v: v, id: req.ID}
	fwd, rel, restore := upstream.Isolate(req, func(m *core.Message) { v.related(g, c, m, related) })
	if fwd == req {
		return nil, core.NewError(core.CodeInvalidRequest, "invalid request: it cannot be given an id of its own on a shared upstream")
	}
	c.up = fwd.ID
	if len(req.ProgressToken) > 0 {
		c.token = bytes.Clone(req.ProgressToken)
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.cancel = cancel
	v.mu.Lock()
	if v.closed || v.over {
		v.mu.Unlock()
		return nil, upstream.ErrClosed
	}
	v.calls[req.ID] = c
	v.mu.Unlock()
	g.mu.Lock()
	g.calls[c.up] = c
	g.mu.Unlock()
	resp, err := real.RoundTrip(cctx, fwd, rel)
	g.mu.Lock()
	delete(g.calls, c.up)
	g.mu.Unlock()
	v.mu.Lock()
	if v.calls[req.ID] == c {
		delete(v.calls, req.ID)
	}
	v.mu.Unlock()
	if err != nil {
		return nil, err
	}
	resp = restore(resp)
	resp.Session = v.p.Session
	return resp, nil
}

// related handles what the real Conn hands to one of v's calls.
func (v *vconn) related(g *group, c *vcall, m *core.Message, related upstream.Related) {
	switch {
	case m.Kind == core.KindRequest:
		g.request(restoreToken(m, []string{"_meta", "progressToken"}, c), v, related)
		return
	case m.Method == "notifications/tools/list_changed", m.Method == "notifications/prompts/list_changed",
		m.Method == "notifications/resources/list_changed", m.Method == "notifications/resources/updated":
		if !hasSubscription(m) {
			// The session's own stream has no claim on them: a
			// stdio upstream gives what belongs to no request to the
			// one call in flight.
			g.notify(m, nil)
			return
		}
	case m.Method == "notifications/cancelled":
		var p struct {
			RequestID json.RawMessage `json:"requestId"`
		}
		_ = json.Unmarshal(m.Params, &p)
		if core.ID(p.RequestID) != c.up {
			g.notify(m, nil)
			return
		}
		m = replaceAt(m, []string{"requestId"}, json.RawMessage(c.id))
	}
	v.deliverTo(m, related)
}

// deliverTo hands m to v: to related when set, else to v's Sink.
func (v *vconn) deliverTo(m *core.Message, related upstream.Related) {
	v.mu.Lock()
	gone := v.closed || v.over
	level := v.level
	v.mu.Unlock()
	if gone {
		return
	}
	if m.Method == "notifications/message" && level >= 0 {
		var p struct {
			Level string `json:"level"`
		}
		_ = json.Unmarshal(m.Params, &p)
		if l := levelOf(p.Level); l >= 0 && l < level {
			return
		}
	}
	cp := *m
	cp.Session = v.p.Session
	if related != nil {
		related(&cp)
		return
	}
	if v.sink != nil {
		v.sink.Deliver(&cp)
	}
}

// ended tells v's session that the real Conn ended.
func (v *vconn) ended(err error) {
	v.mu.Lock()
	if v.closed || v.over {
		v.mu.Unlock()
		return
	}
	v.over = true
	v.mu.Unlock()
	if v.sink != nil {
		v.sink.Closed(err)
	}
}

// levels are the syslog severities of logging/setLevel, least severe
// first.
var levels = []string{"debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"}

func levelOf(s string) int {
	for i, l := range levels {
		if l == s {
			return i
		}
	}
	return -1
}

// setLevel records the session's level; the upstream hears of it only
// when it asks for more than the upstream sends already.
func (v *vconn) setLevel(ctx context.Context, g *group, real upstream.Conn, req *core.Message, related upstream.Related) (*core.Message, error) {
	var p struct {
		Level string `json:"level"`
	}
	_ = json.Unmarshal(req.Params, &p)
	lvl := levelOf(p.Level)
	if lvl < 0 {
		return v.forward(ctx, g, real, req, related) // the server says what is wrong
	}
	g.levelMu.Lock()
	defer g.levelMu.Unlock()
	g.mu.Lock()
	up := g.upLevel
	g.mu.Unlock()
	if up < 0 || lvl < up {
		resp, err := v.forward(ctx, g, real, req, related)
		if err != nil || resp.Kind != core.KindResponse {
			return resp, err
		}
		g.mu.Lock()
		g.upLevel = lvl
		g.mu.Unlock()
		v.mu.Lock()
		v.level = lvl
		v.mu.Unlock()
		return resp, nil
	}
	v.mu.Lock()
	v.level = lvl
	v.mu.Unlock()
	return v.ok(req), nil
}

// subscribe subscribes the upstream for the first subscriber of a uri.
// Subscriptions are changed one at a time, so that a second subscriber
// is answered only once the upstream said yes to the first.
func (v *vconn) subscribe(ctx context.Context, g *group, real upstream.Conn, req *core.Message, related upstream.Related) (*core.Message, error) {
	uri := req.Name
	g.subMu.Lock()
	defer g.subMu.Unlock()
	g.mu.Lock()
	set := g.subs[uri]
	if set == nil {
		set = map[*vconn]struct{}{}
		g.subs[uri] = set
	}
	first := len(set) == 0
	set[v] = struct{}{}
	g.mu.Unlock()
	if !first {
		return v.ok(req), nil
	}
	resp, err := v.forward(ctx, g, real, req, related)
	if err != nil || resp.Kind != core.KindResponse {
		g.mu.Lock()
		if s := g.subs[uri]; s != nil {
			delete(s, v)
			if len(s) == 0 {
				delete(g.subs, uri)
			}
		}
		g.mu.Unlock()
	}
	return resp, err
}

// unsubscribe unsubscribes the upstream when the last subscriber leaves.
func (v *vconn) unsubscribe(ctx context.Context, g *group, real upstream.Conn, req *core.Message, related upstream.Related) (*core.Message, error) {
	uri := req.Name
	g.subMu.Lock()
	defer g.subMu.Unlock()
	g.mu.Lock()
	set := g.subs[uri]
	_, had := set[v]
	delete(set, v)
	last := had && len(set) == 0
	if last {
		delete(g.subs, uri)
	}
	g.mu.Unlock()
	if !last {
		return v.ok(req), nil
	}
	return v.forward(ctx, g, real, req, related)
}

// Send forwards a client notification or response. Only the first
// notifications/initialized of a shared Conn goes upstream; a cancellation
// names the upstream's id; a response goes upstream only when it answers
// a request the server sent this session.
func (v *vconn) Send(ctx context.Context, m *core.Message) error {
	if m.Kind == core.KindRequest || m.Kind == core.KindInvalid {
		return core.NewError(core.CodeInvalidRequest, "invalid request: Send takes notifications and responses, got a "+m.Kind.String())
	}
	g, real, err := v.attached(ctx)
	if err != nil {
		return err
	}
	if m.Kind.IsResponse() {
		g.mu.Lock()
		o := g.serverReqs[m.ID]
		if o == v {
			delete(g.serverReqs, m.ID)
		}
		g.mu.Unlock()
		if o != v {
			v.u.log.Debug("shared_response_dropped", "id", string(m.ID), "reason", "answers no request sent to this session")
			return nil
		}
		return real.Send(ctx, m)
	}
	switch m.Method {
	case "notifications/initialized":
		g.mu.Lock()
		first := !g.initialized
		g.initialized = true
		g.mu.Unlock()
		if !first {
			return nil
		}
	case "notifications/cancelled":
		var p struct {
			RequestID json.RawMessage `json:"requestId"`
		}
		_ = json.Unmarshal(m.Params, &p)
		v.mu.Lock()
		c := v.calls[core.ID(p.RequestID)]
		v.mu.Unlock()
		if c == nil {
			return nil // not in flight (any more): nothing upstream to cancel
		}
		m = replaceAt(m, []string{"requestId"}, json.RawMessage(c.up))
	}
	return real.Send(ctx, m)
}

// Listen opens the real Conn's stream once for all its sessions.
func (v *vconn) Listen(ctx context.Context) error {
	g, real, err := v.attached(ctx)
	if err != nil {
		return err
	}
	g.mu.Lock()
	if g.listening {
		g.mu.Unlock()
		return nil
	}
	g.listening = true
	g.mu.Unlock()
	if err := real.Listen(ctx); err != nil {
		g.mu.Lock()
		g.listening = false
		g.mu.Unlock()
		return err
	}
	return nil
}

// UpstreamSession is the shared upstream session's id.
func (v *vconn) UpstreamSession() string {
	v.mu.Lock()
	g := v.g
	v.mu.Unlock()
	if g == nil {
		return ""
	}
	if c := g.conn(); c != nil {
		return c.UpstreamSession()
	}
	return ""
}

// Close takes the session off the shared Conn: its requests are
// abandoned, the server requests it was sent are refused, the resources
// only it subscribed are unsubscribed, and the last session out closes
// the real Conn.
func (v *vconn) Close(ctx context.Context) error {
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return nil
	}
	v.closed = true
	g := v.g
	var calls []*vcall
	for _, c := range v.calls {
		calls = append(calls, c)
	}
	v.mu.Unlock()
	for _, c := range calls {
		c.cancel()
	}
	if g == nil {
		return nil
	}
	unsub, orphans, last := g.leave(v)
	real := g.conn()
	if real == nil {
		return nil
	}
	if last {
		return real.Close(ctx)
	}
	for _, id := range orphans {
		g.answer(core.ErrorResponse(id, core.NewError(core.CodeInternalError, "mcpgate: the client session this request was sent to has ended")), v.p.Session)
	}
	for _, uri := range unsub {
		go g.unsubscribeUpstream(real, uri, v.p.Session)
	}
	return nil
}

// unsubscribeUpstream ends the upstream's subscription to uri, which no
// sharing session wants any more; s is the session that left.
func (g *group) unsubscribeUpstream(real upstream.Conn, uri string, s *core.SessionInfo) {
	g.subMu.Lock()
	defer g.subMu.Unlock()
	g.mu.Lock()
	again := len(g.subs[uri]) > 0 // subscribed again meanwhile: keep it
	g.mu.Unlock()
	if again {
		return
	}
	params, _ := json.Marshal(map[string]string{"uri": uri})
	raw := append([]byte(`{"jsonrpc":"2.0","id":0,"method":"resources/unsubscribe","params":`), params...)
	raw = append(raw, '}')
	req, err := core.Decode(raw)
	if err != nil {
		return
	}
	req.Direction, req.Era, req.Session = core.ClientToServer, g.initEra(), s
	fwd, _, _ := upstream.Isolate(req, func(*core.Message) {})
	if fwd == req {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), unsubscribeTimeout)
	defer cancel()
	g.u.o.Tap.Emit(ctx, s, fwd)
	resp, err := real.RoundTrip(ctx, fwd, nil)
	if err != nil {
		g.u.log.Debug("shared_unsubscribe_failed", "error", err)
		return
	}
	resp.Session = s
	g.u.o.Tap.Emit(ctx, s, resp)
}

// restoreToken puts c's own progress token back at path inside m's params
// where the upstream echoed the one the gateway gave.
func restoreToken(m *core.Message, path []string, c *vcall) *core.Message {
	if c == nil || c.token == nil {
		return m
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(m.Raw, &top) != nil {
		return m
	}
	got, ok := lookup(top["params"], path)
	if !ok || string(got) != string(c.up) {
		return m
	}
	return replaceAt(m, path, json.RawMessage(c.token))
}

func lookup(raw json.RawMessage, path []string) (json.RawMessage, bool) {
	for _, k := range path {
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil {
			return nil, false
		}
		var ok bool
		if raw, ok = obj[k]; !ok {
			return nil, false
		}
	}
	return raw, true
}

// replaceAt returns a copy of m whose params hold v at path (objects
// along it made as needed); m itself when it cannot be re-encoded.
func replaceAt(m *core.Message, path []string, val json.RawMessage) *core.Message {
	var top map[string]json.RawMessage
	if json.Unmarshal(m.Raw, &top) != nil {
		return m
	}
	params, err := set(top["params"], path, val)
	if err != nil {
		return m
	}
	top["params"] = params
	raw, err := json.Marshal(top)
	if err != nil {
		return m
	}
	cp := *m
	if cp.Replace(raw) != nil {
		return m
	}
	return &cp
}

func set(raw json.RawMessage, path []string, val json.RawMessage) (json.RawMessage, error) {
	obj := map[string]json.RawMessage{}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &obj); err != nil {
			return nil, err
		}
	}
	if len(path) == 1 {
		obj[path[0]] = val
	} else {
		inner, err := set(obj[path[0]], path[1:], val)
		if err != nil {
			return nil, err
		}
		obj[path[0]] = inner
	}
	return json.Marshal(obj)
}
