package frontend

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
)

// Server→client delivery, off the upstream's reader.
//
// The upstream hands server messages over on its reader goroutine (a
// request's Related callback, the session's Sink.Deliver), shared by every
// exchange of the session — for stdio, by everything the process sends.
// That goroutine must never wait on a client or an interceptor, or one slow
// exchange would delay the others (a ping behind a stalled stream). So it
// only appends the message to the session's bounded inbound queue
// (fromUpstream) and returns. The session's dispatcher, a goroutine started
// when a message arrives and gone when the queue is empty (an idle session
// costs no goroutine), takes the messages in arrival order, runs each
// through the route's server→client chain and places it on the chosen
// stream's outbound queue (deliverToClient → write → stream.send), which
// the stream's own writer drains (stream.go). A server request is placed
// in order too, but its wait for the client's answer runs on a goroutine
// of its own, so the dispatcher goes on at once.
//
// Ordering: the messages of one session are placed in the order the
// upstream sent them, related or not. A request's related messages
// (progress, logs, server requests) are counted on its stream as they
// arrive (the upstream calls Related before RoundTrip returns); the final
// response is written only after the dispatcher has placed every one of
// them (stream.finish waits), on the same stream queue, behind them.
//
// Latency budget of server→client interceptors: they run on the session's
// dispatcher, one message at a time. They must not block on I/O or wait
// for other requests; anything slow belongs on a goroutine of the
// interceptor's own. A slow interceptor does not delay the upstream's
// reader, other sessions, or responses of other requests, but it delays
// its own session's later server messages, and the final response of a
// request whose related messages queue behind it. For a server request the
// part before the interceptor passes it on (calls next) counts against the
// budget; the wait for the client's answer and the part after next do not.
//
// Bounds: the inbound queue holds at most maxInbound messages and
// inboundBytesFactor × Options.ResumeSessionBytes (4 MiB by default) per
// session, counted in the gateway-wide ResumeTotalBytes as well. The
// queue only fills when the dispatcher is held (an interceptor over its
// budget, a starved CPU): it absorbs a burst of a few MiB, the size of
// what a session keeps for its client anyway, so a dispatcher merely
// descheduled during a burst loses nothing. When it is full, the oldest notification
// waiting gives way (a message that finds only server requests ahead of it
// is dropped itself; a dropped server request is answered upstream with an
// error, so the server does not wait for it); drops are logged once per
// session per dropLogInterval with a count. The reader never waits.

// maxInbound bounds a session's server messages waiting for its
// dispatcher; inboundBytesFactor their bytes, in multiples of the
// session's history budget.
const (
	maxInbound         = 4096
	inboundBytesFactor = 4
)

// inbound is a server message waiting for the session's dispatcher.
type inbound struct {
	ctx context.Context // the chain's, with the target set
	m   *core.Message
	st  *stream // the stream of the request it relates to; nil for none
}

// inboundQueue is a session's server messages waiting for its dispatcher,
// in arrival order. Its fields are guarded by the session's dmu.
type inboundQueue struct {
	q       []inbound
	head    int
	running bool            // a dispatcher is running
	sinkCtx context.Context // the chain's context for unrelated messages
	budget  historyBudget   // bytes waiting, per session and gateway-wide
	// dropped counts drops not yet logged; logged is when drops were
	// last logged.
	dropped int
	logged  time.Time
}

func (q *inboundQueue) len() int { return len(q.q) - q.head }

// fromUpstream queues a server message for the session's dispatcher and
// returns at once; it is what the upstream's reader calls. st is the
// stream of the request it relates to, nil for none; ctx is the context
// its chain runs under.
func (g *gwSession) fromUpstream(ctx context.Context, m *core.Message, st *stream) {
	m.Session = g.info
	m.Direction = core.ServerToClient
	if g.ctx.Err() != nil {
		return // ended: nothing will read it
	}
	if m.Method == "notifications/tools/list_changed" {
		// Not the route's catalog: it is the fallback of sessions that
		// have not listed (or whose own catalog a change just emptied, as
		// clients sharing a modern session change it under each other), and
		// the next listing of any session refreshes it.
		g.catalog.Invalidate()
	}
	// The chain's context, with the message's stream as target: made once
	// per stream and once per session, not per message.
	if st != nil {
		if sctx := st.relatedAdd(g); ctx == g.ctx {
			ctx = sctx
		} else {
			ctx = withTarget(ctx, g, st)
		}
	} else if ctx == g.ctx {
		ctx = g.sinkContext()
	} else {
		ctx = withTarget(ctx, g, nil)
	}
	n := int64(len(m.Raw))
	g.dmu.Lock()
	if !g.roomLocked(n) {
		g.inDroppedLocked()
		g.dmu.Unlock()
		g.dropInbound(inbound{ctx, m, st})
		return
	}
	in := &g.in
	if in.head > 0 && in.head == len(in.q) {
		in.q, in.head = in.q[:0], 0
	}
	in.q = append(in.q, inbound{ctx, m, st})
	start := !in.running
	in.running = true
	g.dmu.Unlock()
	if start {
		go g.dispatch()
	}
}

// roomLocked makes room for a message of n bytes, dropping the oldest
// notifications waiting, and takes its bytes; false when there is no room
// (only server requests wait).
func (g *gwSession) roomLocked(n int64) bool {
	in := &g.in
	for in.len() >= maxInbound || !in.budget.take(n) {
		i := in.head
		for i < len(in.q) && in.q[i].m.Kind == core.KindRequest {
			i++
		}
		if i == len(in.q) {
			return false
		}
		old := in.q[i]
		copy(in.q[i:], in.q[i+1:])
		in.q[len(in.q)-1] = inbound{}
		in.q = in.q[:len(in.q)-1]
		in.budget.give(int64(len(old.m.Raw)))
		g.inDroppedLocked()
		g.dropInbound(old)
	}
	return true
}

// dropInbound settles a message that will not be delivered: its stream
// stops waiting for it, and a server request is answered upstream with an
// error so the server does not wait for it either.
func (g *gwSession) dropInbound(it inbound) {
	if it.st != nil {
		it.st.relatedDone()
	}
	if it.m.Kind != core.KindRequest || g.ctx.Err() != nil {
		return
	}
	resp := core.ErrorResponse(it.m.ID, core.NewError(core.CodeInternalError, "mcpgate dropped this request: the client session is not keeping up with the server's messages"))
	go g.sendUpstream(it.ctx, it.m.Method, resp)
}

func (g *gwSession) inDroppedLocked() {
	g.in.dropped++
	g.logInDropsLocked(false)
}

// logInDropsLocked logs the inbound drops not yet logged: the first at
// once, then at most once per dropLogInterval, and what is left when the
// session ends (final).
func (g *gwSession) logInDropsLocked(final bool) {
	in := &g.in
	if in.dropped == 0 {
		return
	}
	now := time.Now()
	if !final && !in.logged.IsZero() && now.Sub(in.logged) < dropLogInterval {
		return
	}
	g.log.Warn("server_message_inbound_full", "dropped", in.dropped, "kept", in.len())
	in.dropped, in.logged = 0, now
}

// dispatch is the session's dispatcher: it delivers the inbound queue in
// order and exits when the queue is empty.
func (g *gwSession) dispatch() {
	for {
		g.dmu.Lock()
		in := &g.in
		if in.len() == 0 {
			// Keep a small array for the next burst; let a large one go.
			if cap(in.q) > 8 {
				in.q = nil
			} else {
				in.q = in.q[:0]
			}
			in.head = 0
			in.running = false
			g.dmu.Unlock()
			return
		}
		it := in.q[in.head]
		in.q[in.head] = inbound{}
		in.head++
		in.budget.give(int64(len(it.m.Raw)))
		g.dmu.Unlock()
		g.dispatchOne(it)
	}
}

// dispatchOne runs one server message through the server→client chain. A
// panicking interceptor costs that message, not the session's delivery.
func (g *gwSession) dispatchOne(it inbound) {
	defer func() {
		if v := recover(); v != nil {
			g.log.Error("server_message_panic", "panic", fmt.Sprint(v), "method", it.m.Method, "stack", string(debug.Stack()))
		}
	}()
	if it.st != nil {
		defer it.st.relatedDone()
	}
	if g.ctx.Err() != nil {
		return
	}
	if it.m.Kind == core.KindRequest {
		pl := &placement{ch: make(chan struct{})}
		ctx := withTargetOf(it.ctx, target{g: g, st: it.st, placed: pl})
		go g.serverRequest(ctx, it.m, pl)
		select {
		case <-pl.ch:
		case <-g.ctx.Done():
		}
		return
	}
	if _, err := g.s2c(it.ctx, it.m); err != nil {
		g.log.Debug("server_message_dropped", "method", it.m.Method, "error", err)
	}
}

// serverRequest runs a server request through the chain, which waits for
// the client's answer (deliverToClient), and sends the answer upstream.
// It runs on its own goroutine; pl is marked when the request has been
// placed on a stream (or refused), so the dispatcher goes on.
func (g *gwSession) serverRequest(ctx context.Context, m *core.Message, pl *placement) {
	defer pl.done()
	resp, err := g.s2c(ctx, m)
	pl.done()
	if err != nil {
		resp = core.ErrorResponse(m.ID, core.AsError(err))
	}
	if resp == nil {
		return
	}
	g.sendUpstream(ctx, m.Method, resp)
}

// sendUpstream sends the answer to a server request upstream, within 10s
// whatever becomes of the session meanwhile.
func (g *gwSession) sendUpstream(ctx context.Context, method string, resp *core.Message) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	conn, _ := g.connection()
	if conn == nil {
		return
	}
	if err := conn.Send(sctx, resp); err != nil {
		g.log.Warn("upstream_send_failed", "method", method, "error", err)
	}
}

// placement tells the dispatcher that a server request has been placed on
// a client stream (or will not be): later messages may follow it.
type placement struct {
	once sync.Once
	ch   chan struct{}
}

func (p *placement) done() {
	if p != nil {
		p.once.Do(func() { close(p.ch) })
	}
}

// discardInbound drops what still waits for the dispatcher of an ended
// session, giving its bytes back at once.
func (g *gwSession) discardInbound() {
	g.dmu.Lock()
	in := &g.in
	waiting := in.q[in.head:]
	in.q, in.head = nil, 0
	for _, it := range waiting {
		in.budget.give(int64(len(it.m.Raw)))
	}
	g.logInDropsLocked(true)
	g.dmu.Unlock()
	for _, it := range waiting {
		if it.st != nil {
			it.st.relatedDone()
		}
	}
}

// sinkContext is the chain's context for server messages outside any
// request: the session's, with no stream as target.
func (g *gwSession) sinkContext() context.Context {
	g.dmu.Lock()
	defer g.dmu.Unlock()
	if g.in.sinkCtx == nil {
		g.in.sinkCtx = withTarget(g.ctx, g, nil)
	}
	return g.in.sinkCtx
}
