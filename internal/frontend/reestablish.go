package frontend

import (
	"context"
	"errors"
	"sync"

	"github.com/mcpgate/mcpgate/internal/catalog"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// connState is the session's current upstream connection and its
// generation; a re-established upstream session is a new generation.
type connState struct {
	mu   sync.RWMutex
	conn upstream.Conn
	gen  int
	// reinit serialises re-establishing.
	reinit sync.Mutex
}

func (g *gwSession) connection() (upstream.Conn, int) {
	g.cs.mu.RLock()
	defer g.cs.mu.RUnlock()
	return g.cs.conn, g.cs.gen
}

// ready returns the upstream connection, establishing it first for a
// session restored after a restart, whose upstream side is re-created
// lazily on first use.
func (g *gwSession) ready(ctx context.Context) (upstream.Conn, int, error) {
	conn, gen := g.connection()
	if conn != nil {
		return conn, gen, nil
	}
	if !g.canReestablish() {
		return nil, gen, upstream.ErrClosed
	}
	if err := g.reestablish(ctx, gen); err != nil {
		return nil, gen, err
	}
	conn, gen = g.connection()
	return conn, gen, nil
}

func (g *gwSession) setConn(c upstream.Conn) {
	g.cs.mu.Lock()
	g.cs.conn = c
	g.cs.mu.Unlock()
}

// genSink tells the session which connection generation a Closed came
// from, so a late report from a replaced connection changes nothing.
type genSink struct {
	g   *gwSession
	gen int
}

func (s genSink) Deliver(m *core.Message) { s.g.Deliver(m) }

func (s genSink) Closed(err error) {
	g := s.g
	if errors.Is(err, upstream.ErrSessionLost) && g.canReestablish() {
		go func() {
			if rerr := g.reestablish(g.ctx, s.gen); rerr == nil {
				return
			}
			g.Closed(err)
		}()
		return
	}
	if _, gen := g.connection(); gen == s.gen {
		g.Closed(err)
	}
}

func (g *gwSession) canReestablish() bool {
	return g.info.Era == core.EraLegacy && g.initRaw != nil && g.ctx.Err() == nil
}

// reestablish replaces a connection whose upstream session was lost: a new
// upstream session, initialized with the client's original initialize
// parameters, then notifications/initialized, then the GET stream if the
// old one had it. gen is the generation that failed; if another caller
// already replaced it, there is nothing to do.
func (g *gwSession) reestablish(ctx context.Context, gen int) error {
	g.cs.reinit.Lock()
	defer g.cs.reinit.Unlock()
	old, cur := g.connection()
	if cur != gen {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.route().RequestTimeout)
	defer cancel()
	conn, err := g.route().Upstream.Open(ctx, upstream.OpenParams{Session: g.info, Era: core.EraLegacy, Catalog: g.catalog}, genSink{g, gen + 1})
	if err != nil {
		return err
	}
	init, err := core.Decode(g.initRaw)
	if err != nil {
		_ = conn.Close(ctx)
		return err
	}
	init.Session, init.Direction, init.Era = g.info, core.ClientToServer, core.EraLegacy
	g.originated(ctx, init, "reestablish")
	resp, err := conn.RoundTrip(ctx, init, nil)
	if err == nil {
		resp.Session, resp.Direction = g.info, core.ServerToClient
		g.originated(ctx, resp, "reestablish")
		if resp.Kind != core.KindResponse {
			err = errors.New("upstream refused the repeated initialize")
		}
	}
	if err == nil {
		var initialized *core.Message
		if initialized, err = core.Notification("notifications/initialized", nil); err == nil {
			initialized.Session, initialized.Direction, initialized.Era = g.info, core.ClientToServer, core.EraLegacy
			g.originated(ctx, initialized, "reestablish")
			err = conn.Send(ctx, initialized)
		}
	}
	if err != nil {
		_ = conn.Close(ctx)
		g.log.Warn("upstream_reestablish_failed", "error", err)
		return err
	}
	g.cs.mu.Lock()
	g.cs.conn, g.cs.gen = conn, gen+1
	g.cs.mu.Unlock()
	if old != nil {
		go func() { _ = old.Close(context.WithoutCancel(ctx)) }()
	}
	g.mu.Lock()
	listening := g.stopListeningLocked()
	g.mu.Unlock()
	if listening {
		g.listen() // on the new generation, for the client's GET stream
	}
	g.log.Info("upstream_session_reestablished", "generation", gen+1)
	if g.sess != nil {
		g.f.opts.Sessions.Resumed(g.sess, "upstream")
	}
	return nil
}

// safeToRetry says whether a request may be repeated after the upstream
// lost it: the route's catalog.Repeat rule (reads, and tools the operator
// listed or, when the operator trusts the upstream's annotations, marked
// read-only or idempotent). An initialize is not: re-establishing the
// upstream session replays it already.
func (g *gwSession) safeToRetry(m *core.Message) bool {
	rt := g.route()
	return m.Method != "initialize" && catalog.Repeat{Tools: rt.RetryTools, TrustAnnotations: rt.TrustAnnotations}.Safe(m.Method, m.Name, g.catalog)
}
