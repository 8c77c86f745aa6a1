package bridge

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// Options configure New.
type Options struct {
	// Era pins the upstream's era. If EraUnknown, the inner upstream is
	// probed (it caches the answer).
	Era core.Era
	// StateKey protects the requestState mcpgate mints for modern clients
	// of legacy servers (HMAC-SHA256). Replicas that may see each other's
	// retries share it. If nil, a random key per process.
	StateKey []byte
	// Logger receives translation warnings. If nil, nothing is logged.
	Logger *slog.Logger
	// CacheTTL and CacheScope are the caching hints (ttlMs, cacheScope)
	// put on cacheable results translated for modern clients where the
	// legacy server gave none. Defaults: 0 (stale at once) and "private".
	CacheTTL   time.Duration
	CacheScope string
	// Tap sees the exchanges the bridge originates itself (see
	// upstream.Tap): the initialize and notifications/initialized of the
	// legacy sessions it opens for modern clients, their logging/setLevel
	// and resources/(un)subscribe, the answers it sends to a legacy
	// server's requests (the client's MRTR inputResponses, refusals of
	// what a modern client cannot be asked, and of questions left open)
	// and those requests themselves when it refuses them; for legacy
	// clients of modern servers, the retries of an input_required call,
	// its tools/list refresh, a tools/call sent again after a header
	// mismatch, a server/discover repeated with another version, and the
	// subscriptions/listen streams it opens. Responses to those requests
	// are tapped too. What the client sent, translated or not, is not: the
	// interceptors see it. The inner upstream has a Tap of its own for
	// what it originates (httpup's notifications/cancelled). Nil is off.
	Tap upstream.Tap
}

// Upstream is an upstream.Upstream that serves clients of both eras.
type Upstream struct {
	inner upstream.Upstream
	opts  Options
}

var _ upstream.Upstream = (*Upstream)(nil)

// New wraps inner so that clients of either era can use it.
func New(inner upstream.Upstream, opts Options) *Upstream {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.CacheScope == "" {
		opts.CacheScope = "private"
	}
	opts.CacheTTL = max(opts.CacheTTL, 0)
	if len(opts.StateKey) == 0 {
		opts.StateKey = make([]byte, 32)
		_, _ = rand.Read(opts.StateKey)
	}
	return &Upstream{inner: inner, opts: opts}
}

// Inner returns the wrapped upstream.
func (u *Upstream) Inner() upstream.Upstream { return u.inner }

// Probe reports the inner upstream's era (or the pinned one).
func (u *Upstream) Probe(ctx context.Context) (upstream.Info, error) {
	if u.opts.Era != core.EraUnknown {
		info := upstream.Info{Era: u.opts.Era}
		if u.opts.Era == core.EraModern {
			info.ModernVersions = core.ModernVersions
		}
		return info, nil
	}
	return u.inner.Probe(ctx)
}

// UpstreamEra is the era the upstream speaks.
func (u *Upstream) UpstreamEra(ctx context.Context) (core.Era, error) {
	info, err := u.Probe(ctx)
	if err != nil {
		return core.EraUnknown, err
	}
	return info.Era, nil
}

// Open returns a Conn that speaks p.Era to the gateway: the inner
// upstream's own Conn when the eras match, a translating one otherwise.
func (u *Upstream) Open(ctx context.Context, p upstream.OpenParams, sink upstream.Sink) (upstream.Conn, error) {
	if p.Era == core.EraLegacy && u.opts.Era == core.EraUnknown && !u.probed() {
		// A legacy client's initialize tells whether the server speaks
		// legacy: no probe (for stdio, no process of its own) is needed
		// before it is tried natively.
		return &nativeFirst{u: u, p: p, sink: sink}, nil
	}
	info, err := u.Probe(ctx)
	if err != nil {
		return nil, err
	}
	up := info.Era
	switch {
	case p.Era == up:
		return u.inner.Open(ctx, p, sink)
	case p.Era == core.EraModern && up == core.EraLegacy:
		return newModernOverLegacy(ctx, u, p, sink)
	case p.Era == core.EraLegacy && up == core.EraModern:
		if u.opts.Era == core.EraModern || info.ModernOnly {
			return newLegacyOverModern(ctx, u, p, sink)
		}
		// Probed, not pinned, and the server did not say it speaks no
		// legacy version: it may speak both eras, and then it serves a
		// legacy client's session itself.
		return &nativeFirst{u: u, p: p, sink: sink}, nil
	}
	return nil, fmt.Errorf("bridge: cannot serve a %s client from a %s upstream", p.Era, up)
}

// probed reports false when the inner upstream has not probed yet and
// probing costs more than a request (it has Probed, as stdio does).
func (u *Upstream) probed() bool {
	pc, ok := u.inner.(interface{ Probed() (upstream.Info, bool) })
	if !ok {
		return true
	}
	_, done := pc.Probed()
	return done
}

// Close closes the inner upstream.
func (u *Upstream) Close() error { return u.inner.Close() }

// nativeFirst serves a legacy client of an upstream that answered
// server/discover, or that was not probed yet (stdio). A server may speak both eras ("a dual-era server treats
// initialize as selecting legacy semantics for that session"), so the
// client's initialize goes to it first, untranslated; only when it refuses
// does the bridge translate. After initialize, everything goes to the
// connection that accepted it.
type nativeFirst struct {
	u    *Upstream
	p    upstream.OpenParams
	sink upstream.Sink

	mu   sync.RWMutex
	conn upstream.Conn
}

// gatedSink passes messages on only once its connection was chosen.
type gatedSink struct {
	sink upstream.Sink
	open atomic.Bool
}

func (g *gatedSink) Deliver(m *core.Message) {
	if g.open.Load() {
		g.sink.Deliver(m)
	}
}

func (g *gatedSink) Closed(err error) {
	if g.open.Load() {
		g.sink.Closed(err)
	}
}

func (n *nativeFirst) current() upstream.Conn {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.conn
}

func (n *nativeFirst) RoundTrip(ctx context.Context, req *core.Message, related upstream.Related) (*core.Message, error) {
	if req.Method != "initialize" {
		c := n.current()
		if c == nil {
			return nil, errors.New("bridge: no session upstream yet (initialize first)")
		}
		return c.RoundTrip(ctx, req, related)
	}
	gate := &gatedSink{sink: n.sink}
	native, err := n.u.inner.Open(ctx, upstream.OpenParams{Session: n.p.Session, Era: core.EraLegacy, Catalog: n.p.Catalog}, gate)
	if err == nil {
		resp, rerr := native.RoundTrip(ctx, req, related)
		if rerr == nil && resp.Kind == core.KindResponse && legacyResult(resp.Result) {
			gate.open.Store(true)
			n.swap(native)
			return resp, nil
		}
		if rerr == nil {
			// Opened before the era was known: a server that speaks only
			// the legacy era refused on its own account, and its answer
			// stands.
			if info, perr := n.u.Probe(ctx); perr == nil && info.Era != core.EraModern {
				gate.open.Store(true)
				n.swap(native)
				return resp, nil
			}
		}
		_ = native.Close(context.WithoutCancel(ctx))
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		n.u.opts.Logger.Debug("bridge_native_initialize_refused", "error", rerr)
	}
	bridged, err := newLegacyOverModern(ctx, n.u, n.p, n.sink)
	if err != nil {
		return nil, err
	}
	n.swap(bridged)
	return bridged.RoundTrip(ctx, req, related)
}

// swap makes c the connection, closing one a repeated initialize replaced.
func (n *nativeFirst) swap(c upstream.Conn) {
	n.mu.Lock()
	old := n.conn
	n.conn = c
	n.mu.Unlock()
	if old != nil {
		go func() { _ = old.Close(context.Background()) }()
	}
}

func legacyResult(result []byte) bool {
	var r struct {
		ProtocolVersion string `json:"protocolVersion"`
	}
	return json.Unmarshal(result, &r) == nil && core.EraOf(r.ProtocolVersion) == core.EraLegacy
}

func (n *nativeFirst) Send(ctx context.Context, m *core.Message) error {
	c := n.current()
	if c == nil {
		return errors.New("bridge: no session upstream yet (initialize first)")
	}
	return c.Send(ctx, m)
}

func (n *nativeFirst) Listen(ctx context.Context) error {
	c := n.current()
	if c == nil {
		return errors.New("bridge: no session upstream yet (initialize first)")
	}
	return c.Listen(ctx)
}

func (n *nativeFirst) UpstreamSession() string {
	if c := n.current(); c != nil {
		return c.UpstreamSession()
	}
	return ""
}

func (n *nativeFirst) Close(ctx context.Context) error {
	n.mu.Lock()
	c := n.conn
	n.conn = nil
	n.mu.Unlock()
	if c == nil {
		return nil
	}
	return c.Close(ctx)
}

// ownTrip is a request the bridge originates on conn: the request and its
// response go to the Tap.
func (u *Upstream) ownTrip(ctx context.Context, s *core.SessionInfo, conn upstream.Conn, req *core.Message, related upstream.Related) (*core.Message, error) {
	tap := u.opts.Tap
	if tap == nil {
		return conn.RoundTrip(ctx, req, related)
	}
	req.Direction, req.Session = core.ClientToServer, s
	tap(ctx, s, req)
	resp, err := conn.RoundTrip(ctx, req, related)
	if err == nil {
		resp.Direction = core.ServerToClient
		tap(ctx, s, resp)
	}
	return resp, err
}

// ownSend is a notification or response the bridge originates on conn.
func (u *Upstream) ownSend(ctx context.Context, s *core.SessionInfo, conn upstream.Conn, m *core.Message) error {
	if tap := u.opts.Tap; tap != nil {
		m.Direction, m.Session = core.ClientToServer, s
		tap(ctx, s, m)
	}
	return conn.Send(ctx, m)
}

// consumed is a server message the bridge takes itself instead of passing
// it on to the client.
func (u *Upstream) consumed(ctx context.Context, s *core.SessionInfo, m *core.Message) {
	if tap := u.opts.Tap; tap != nil {
		m.Direction = core.ServerToClient
		tap(ctx, s, m)
	}
}
