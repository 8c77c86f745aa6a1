package shared

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// Options configure an Upstream.
type Options struct {
	// Share is the scope whose sessions share: "principal", "tenant" or
	// "route" (anything else is "route").
	Share string
	// MaxShared is how many client sessions one real Conn serves. If
	// zero, 32.
	MaxShared int
	// Logger; if nil, a discard logger is used.
	Logger *slog.Logger
	// Tap sees what this package sends the server on its own: the one
	// notifications/initialized of a shared Conn, the unsubscribe of a
	// resource its last subscriber left, and the answers it gives server
	// requests (a ping, one that belongs to no session). Nil: off.
	Tap upstream.Tap
}

// unsubscribeTimeout bounds the unsubscribe sent when a session leaves.
const unsubscribeTimeout = 5 * time.Second

// Upstream shares the real upstream's Conns among client sessions.
type Upstream struct {
	inner upstream.Upstream
	o     Options
	log   *slog.Logger

	mu     sync.Mutex
	pools  map[string][]*group
	closed bool
}

// New wraps inner.
func New(inner upstream.Upstream, o Options) *Upstream {
	if o.MaxShared <= 0 {
		o.MaxShared = 32
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Upstream{inner: inner, o: o, log: log, pools: map[string][]*group{}}
}

// Inner is the wrapped upstream.
func (u *Upstream) Inner() upstream.Upstream { return u.inner }

// Probed passes on the inner upstream's Probed (stdio has it: a probe
// costs a process), so that the era bridge above sees through the wrapper.
func (u *Upstream) Probed() (upstream.Info, bool) {
	if pc, ok := u.inner.(interface{ Probed() (upstream.Info, bool) }); ok {
		return pc.Probed()
	}
	return upstream.Info{}, true
}

// Probe asks the real upstream.
func (u *Upstream) Probe(ctx context.Context) (upstream.Info, error) { return u.inner.Probe(ctx) }

// Shared reports how many real Conns are open and how many client
// sessions they serve, for tests and metrics.
func (u *Upstream) Shared() (conns, sessions int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, gs := range u.pools {
		for _, g := range gs {
			conns++
			sessions += g.n
		}
	}
	return conns, sessions
}

// Open returns a virtual Conn for one gateway session. A legacy session
// joins a real Conn with its initialize; a modern one joins now.
func (u *Upstream) Open(ctx context.Context, p upstream.OpenParams, sink upstream.Sink) (upstream.Conn, error) {
	u.mu.Lock()
	closed := u.closed
	u.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("shared: open: %w", upstream.ErrClosed)
	}
	v := &vconn{u: u, p: p, sink: sink, level: -1, calls: map[core.ID]*vcall{}}
	if p.Era == core.EraModern {
		if _, err := v.join(ctx, "modern", nil, nil); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// Close closes the real Conns still open, then the real upstream.
func (u *Upstream) Close() error {
	u.mu.Lock()
	u.closed = true
	var gs []*group
	for _, p := range u.pools {
		gs = append(gs, p...)
	}
	u.pools = map[string][]*group{}
	u.mu.Unlock()
	for _, g := range gs {
		if c := g.conn(); c != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = c.Close(ctx)
			cancel()
		}
	}
	return u.inner.Close()
}

// scope is the part of a session's share key its scope gives.
func (u *Upstream) scope(s *core.SessionInfo) string {
	if s == nil {
		return ""
	}
	switch u.o.Share {
	case "principal":
		return "p:" + core.PrincipalKey(s.Tenant, s.Principal)
	case "tenant":
		return "t:" + s.Tenant
	}
	return ""
}

// fingerprint is what sessions sharing a legacy real Conn agree on: the
// protocol version and the capabilities of their initialize.
func fingerprint(params []byte) (string, error) {
	var p struct {
		ProtocolVersion string          `json:"protocolVersion"`
		Capabilities    json.RawMessage `json:"capabilities"`
	}
	if err := json.Unmarshal(params, &p); err != nil {
		return "", err
	}
	var caps any
	if len(p.Capabilities) > 0 {
		if err := json.Unmarshal(p.Capabilities, &caps); err != nil {
			return "", err
		}
	}
	canon, err := json.Marshal(caps) // maps marshal with sorted keys
	if err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write([]byte(p.ProtocolVersion))
	h.Write([]byte{0})
	h.Write(canon)
	return hex.EncodeToString(h.Sum(nil)[:12]), nil
}

// join puts v on a real Conn of key (its scope and fp), opening one when
// none has room. init is the legacy initialize that opens a new one.
// It returns the initialize response for v (nil for modern).
func (v *vconn) join(ctx context.Context, fp string, init *core.Message, related upstream.Related) (*core.Message, error) {
	u := v.u
	key := v.p.Era.String() + "\x00" + u.scope(v.p.Session) + "\x00" + fp
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return nil, upstream.ErrClosed
	}
	var g *group
	for _, c := range u.pools[key] {
		if !c.dead && c.n < u.o.MaxShared {
			g = c
			break
		}
	}
	leader := g == nil
	if leader {
		g = &group{u: u, key: key, ready: make(chan struct{}), members: map[*vconn]struct{}{},
			calls: map[core.ID]*vcall{}, serverReqs: map[core.ID]*vconn{}, subs: map[string]map[*vconn]struct{}{}, upLevel: -1}
		u.pools[key] = append(u.pools[key], g)
	}
	g.n++
	g.members[v] = struct{}{}
	u.mu.Unlock()

	v.mu.Lock()
	v.g = g
	v.mu.Unlock()
	if leader {
		return g.open(ctx, v, init, related)
	}
	select {
	case <-g.ready:
	case <-ctx.Done():
		v.detach()
		return nil, ctx.Err()
	}
	if g.err != nil {
		v.detach()
		return nil, g.err
	}
	if init == nil {
		return nil, nil
	}
	if g.initResp.Kind != core.KindResponse {
		v.detach()
		return core.ErrorResponse(init.ID, core.NewError(core.CodeUpstreamError, "upstream refused the initialize")), nil
	}
	resp := core.ResultResponse(init.ID, g.initResp.Result)
	resp.Direction, resp.Era, resp.Session, resp.Received = core.ServerToClient, g.initResp.Era, v.p.Session, time.Now()
	return resp, nil
}

// detach takes v off its group after a failed join, so that it may try
// again.
func (v *vconn) detach() {
	v.mu.Lock()
	g := v.g
	v.g = nil
	v.mu.Unlock()
	if g != nil {
		g.leave(v)
	}
}

// vcall is one of a session's requests on the real Conn.
type vcall struct {
	v      *vconn
	id     core.ID // the client's
	up     core.ID // the upstream's (also its progress token)
	token  []byte  // the client's progress token, nil for none
	cancel context.CancelFunc
}

// group is one real Conn and the sessions sharing it.
type group struct {
	u   *Upstream
	key string

	ready    chan struct{} // closed when real and initResp (or err) are set
	real     upstream.Conn
	initResp *core.Message
	err      error

	levelMu sync.Mutex // orders logging/setLevel upstream
	subMu   sync.Mutex // orders resources/subscribe and unsubscribe upstream

	mu          sync.Mutex
	n           int
	dead        bool
	members     map[*vconn]struct{}
	calls       map[core.ID]*vcall // by the upstream id (which is also its progress token)
	serverReqs  map[core.ID]*vconn // the server's pending requests, by id
	subs        map[string]map[*vconn]struct{}
	upLevel     int // the upstream's logging level, -1 unset
	initialized bool
	listening   bool
}

func (g *group) conn() upstream.Conn {
	select {
	case <-g.ready:
		return g.real
	default:
		return nil
	}
}

// open opens the real Conn (and initializes it with the leader's
// initialize).
func (g *group) open(ctx context.Context, v *vconn, init *core.Message, related upstream.Related) (*core.Message, error) {
	fail := func(err error) (*core.Message, error) {
		g.err = err
		g.kill()
		close(g.ready)
		v.detach()
		return nil, err
	}
	real, err := g.u.inner.Open(ctx, upstream.OpenParams{Session: v.p.Session, Era: v.p.Era}, groupSink{g})
	if err != nil {
		return fail(err)
	}
	g.real = real
	if init == nil {
		close(g.ready)
		return nil, nil
	}
	resp, err := v.forward(ctx, g, real, init, related)
	if err != nil {
		_ = real.Close(context.WithoutCancel(ctx))
		return fail(err)
	}
	g.initResp = resp
	if resp.Kind != core.KindResponse {
		_ = real.Close(context.WithoutCancel(ctx))
		g.err = errors.New("shared: upstream refused the initialize")
		g.kill()
		close(g.ready)
		v.detach()
		return resp, nil
	}
	// The shared Conn is initialized once, here, before any sharer's
	// request can reach it; the clients' own notifications/initialized
	// are swallowed.
	g.mu.Lock()
	g.initialized = true
	g.mu.Unlock()
	if n, err := core.Notification("notifications/initialized", nil); err == nil {
		n.Direction, n.Era, n.Session = core.ClientToServer, resp.Era, v.p.Session
		g.u.o.Tap.Emit(ctx, v.p.Session, n)
		if err := real.Send(ctx, n); err != nil {
			_ = real.Close(context.WithoutCancel(ctx))
			return fail(err)
		}
	}
	close(g.ready)
	g.u.mu.Lock()
	gone := g.n == 0 // the leader left while the Conn opened
	g.u.mu.Unlock()
	if gone {
		_ = real.Close(context.WithoutCancel(ctx))
	}
	return resp, nil
}

// kill takes g out of the pool: no session joins it any more.
func (g *group) kill() {
	u := g.u
	u.mu.Lock()
	g.dead = true
	gs := u.pools[g.key]
	for i, c := range gs {
		if c == g {
			gs = append(gs[:i:i], gs[i+1:]...)
			break
		}
	}
	if len(gs) == 0 {
		delete(u.pools, g.key)
	} else {
		u.pools[g.key] = gs
	}
	u.mu.Unlock()
}

// leave takes v off g; the last one out closes the real Conn. It returns
// the subscriptions v held alone (to unsubscribe upstream) and the server
// requests it left unanswered.
func (g *group) leave(v *vconn) (unsub []string, orphans []core.ID, last bool) {
	u := g.u
	u.mu.Lock()
	if _, ok := g.members[v]; !ok {
		u.mu.Unlock()
		return nil, nil, false
	}
	delete(g.members, v)
	g.n--
	last = g.n == 0
	if last {
		g.dead = true
	}
	u.mu.Unlock()
	if last {
		g.kill()
	}
	g.mu.Lock()
	for uri, set := range g.subs {
		if _, ok := set[v]; ok {
			delete(set, v)
			if len(set) == 0 {
				delete(g.subs, uri)
				unsub = append(unsub, uri)
			}
		}
	}
	for id, o := range g.serverReqs {
		if o == v {
			delete(g.serverReqs, id)
			orphans = append(orphans, id)
		}
	}
	g.mu.Unlock()
	return unsub, orphans, last
}

// membersList is a snapshot of g's sessions.
func (g *group) membersList() []*vconn {
	g.u.mu.Lock()
	defer g.u.mu.Unlock()
	out := make([]*vconn, 0, len(g.members))
	for v := range g.members {
		out = append(out, v)
	}
	return out
}

// groupSink receives what the real Conn sends outside its requests.
type groupSink struct{ g *group }

func (s groupSink) Closed(err error) {
	g := s.g
	g.kill()
	for _, v := range g.membersList() {
		v.ended(err)
	}
}

func (s groupSink) Deliver(m *core.Message) { s.g.deliver(m, nil) }

// deliver routes a server message; via is the session whose call it came
// with (nil: none).
func (g *group) deliver(m *core.Message, via *vconn) {
	switch m.Kind {
	case core.KindNotification:
		g.notify(m, via)
	case core.KindRequest:
		g.request(m, via, nil)
	default:
		g.u.log.Debug("shared_unmatched_response", "id", string(m.ID))
	}
}

func (g *group) notify(m *core.Message, via *vconn) {
	switch m.Method {
	case "notifications/progress":
		if c := g.call(core.ID(m.ProgressToken)); c != nil {
			c.v.deliverTo(restoreToken(m, []string{"progressToken"}, c), nil)
		}
		return
	case "notifications/tools/list_changed", "notifications/prompts/list_changed", "notifications/resources/list_changed":
		if via == nil || !hasSubscription(m) {
			for _, v := range g.membersList() {
				v.deliverTo(m, nil)
			}
			return
		}
	case "notifications/resources/updated":
		if via == nil || !hasSubscription(m) {
			var p struct {
				URI string `json:"uri"`
			}
			_ = json.Unmarshal(m.Params, &p)
			g.mu.Lock()
			var to []*vconn
			for v := range g.subs[p.URI] {
				to = append(to, v)
			}
			g.mu.Unlock()
			for _, v := range to {
				v.deliverTo(m, nil)
			}
			return
		}
	case "notifications/cancelled":
		// The server gives up one of its requests: to the session it
		// was sent to.
		if via == nil {
			var p struct {
				RequestID json.RawMessage `json:"requestId"`
			}
			_ = json.Unmarshal(m.Params, &p)
			g.mu.Lock()
			o := g.serverReqs[core.ID(p.RequestID)]
			delete(g.serverReqs, core.ID(p.RequestID))
			g.mu.Unlock()
			if o != nil {
				o.deliverTo(m, nil)
			}
			return
		}
	}
	if via != nil {
		via.deliverTo(m, nil)
		return
	}
	if o, c := g.owner(m); o != nil {
		o.deliverTo(restoreToken(m, []string{"_meta", "progressToken"}, c), nil)
		return
	}
	g.u.log.Debug("shared_notification_dropped", "method", m.Method, "reason", "belongs to no one session")
}

// request routes a server request.
func (g *group) request(m *core.Message, via *vconn, related upstream.Related) {
	if m.Method == "ping" && via == nil {
		g.answer(core.ResultResponse(m.ID, []byte("{}")), nil)
		return
	}
	o, c := via, (*vcall)(nil)
	if o == nil {
		o, c = g.owner(m)
	}
	if o == nil {
		g.u.log.Debug("shared_request_refused", "method", m.Method, "reason", "belongs to no one session")
		g.answer(core.ErrorResponse(m.ID, core.NewError(core.CodeInternalError,
			"mcpgate: this upstream is shared by several client sessions and the request names none of their requests")), nil)
		return
	}
	g.mu.Lock()
	g.serverReqs[m.ID] = o
	g.mu.Unlock()
	if c != nil {
		m = restoreToken(m, []string{"_meta", "progressToken"}, c)
	}
	o.deliverTo(m, related)
}

// answer sends a response of the gateway's own to a server request.
// s is the session it is answered for; nil when none.
func (g *group) answer(resp *core.Message, s *core.SessionInfo) {
	c := g.conn()
	if c == nil {
		return
	}
	resp.Direction, resp.Era = core.ClientToServer, g.initEra()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), unsubscribeTimeout)
		defer cancel()
		g.u.o.Tap.Emit(ctx, s, resp)
		_ = c.Send(ctx, resp)
	}()
}

func (g *group) initEra() core.Era {
	if g.initResp != nil {
		return g.initResp.Era
	}
	return core.EraLegacy
}

// owner is the session a server message outside any request belongs to:
// the one whose request its _meta.progressToken names (the gateway's
// tokens are unique on the Conn), else the one session with requests in
// flight, else the only session. Nil when it cannot be told.
func (g *group) owner(m *core.Message) (*vconn, *vcall) {
	if tok := metaToken(m.Params); tok != nil {
		if c := g.call(core.ID(tok)); c != nil {
			return c.v, c
		}
		// Not one of the gateway's tokens: a server request may carry a
		// token of the server's own, for the client's progress on it.
	}
	g.mu.Lock()
	var busy *vconn
	n := 0
	for _, c := range g.calls {
		if c.v != busy {
			if busy != nil {
				n = 2
				break
			}
			busy, n = c.v, 1
		}
	}
	g.mu.Unlock()
	if n == 1 {
		return busy, nil
	}
	if n == 0 {
		if ms := g.membersList(); len(ms) == 1 {
			return ms[0], nil
		}
	}
	return nil, nil
}

func (g *group) call(id core.ID) *vcall {
	if id == "" {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls[id]
}

// metaToken is params._meta.progressToken, nil when absent.
func metaToken(params []byte) []byte {
	if len(params) == 0 {
		return nil
	}
	var p struct {
		Meta struct {
			Token json.RawMessage `json:"progressToken"`
		} `json:"_meta"`
	}
	if json.Unmarshal(params, &p) != nil || len(p.Meta.Token) == 0 {
		return nil
	}
	return p.Meta.Token
}

// hasSubscription reports a modern listen stream's message.
func hasSubscription(m *core.Message) bool {
	var p struct {
		Meta map[string]json.RawMessage `json:"_meta"`
	}
	_ = json.Unmarshal(m.Params, &p)
	_, ok := p.Meta[core.MetaSubscriptionID]
	return ok
}
