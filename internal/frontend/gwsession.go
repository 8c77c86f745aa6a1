package frontend

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgate/mcpgate/internal/catalog"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// gwSession is the transport state of one gateway session: its upstream
// connection and its client streams. It is the session's Value and the
// upstream's Sink.
type gwSession struct {
	f *Frontend
	// rv is the version of its route the session serves on (route,
	// onRoute in routes.go).
	rv   atomic.Pointer[Route]
	info *core.SessionInfo
	sess *session.Session // nil until published
	// endDetail says more of why the upstream side ended (the cap that
	// killed the process), for the 404 after the end (ended.go).
	endDetail atomic.Pointer[string]
	cs        connState
	log       *slog.Logger

	// ctx is cancelled when the session ends; in-flight work derives from it.
	ctx    context.Context
	cancel context.CancelFunc

	// listens are the modern subscriptions/listen requests in course, by
	// id, with the list changes each asked for (listenMu guards them):
	// where the gateway's own list_changed notifications go (NotifyRoute).
	listenMu sync.Mutex
	listens  map[core.ID]*listening

	mu         sync.Mutex
	streamSeq  int
	streams    map[string]*stream // resumable streams by id
	standalone *stream            // the GET stream, "0"
	detached   *stream            // a lost GET stream kept for Last-Event-ID
	backlog    []*core.Message    // server messages waiting for a stream
	// backlogBytes is what backlog holds of the session's budget.
	backlogBytes int64
	// dropped counts backlog drops not yet logged; droppedLogged is when
	// the last drop was logged.
	dropped       int
	droppedLogged time.Time
	pending       map[core.ID]chan *core.Message // server→client requests awaiting the client
	inflight      map[core.ID]*call              // client requests in flight
	// listenStop ends the upstream's GET stream, open while the client
	// holds its own; listenGen tells one opening from the next.
	listenStop context.CancelFunc
	listenGen  int
	// persistedTouch is when activity was last written to the store.
	persistedTouch atomic.Int64
	// budget bounds this session's kept SSE history.
	budget historyBudget
	// initRaw is the client's initialize request, kept to re-establish a
	// legacy upstream session the upstream lost.
	initRaw []byte
	// anonAddr is the identity and client address (anonKey) this modern
	// session serves requests without a session key for; empty otherwise.
	anonAddr string
	// catalog is the session's tools as the upstream listed them
	// (internal/catalog): fed by every tools/list response the session
	// gets, forgotten at notifications/tools/list_changed. The modern
	// header rules, retry annotations, the era bridge and the policy stage
	// read it.
	catalog *catalog.Catalog

	// The session's clock (clock.go), guarded by mu: its timer, when it is
	// armed for (zero: idle), the live requests in start order; ending is
	// set when the session ends, after which no request goes live.
	clockTimer           *time.Timer
	clockAt              time.Time
	clockHead, clockTail *request
	ending               bool

	// dmu guards in, the server messages waiting for the session's
	// dispatcher (dispatch.go); never held while delivering.
	dmu sync.Mutex
	in  inboundQueue
}

// BindSession implements session.Binder.
func (g *gwSession) BindSession(s *session.Session) { g.sess = s }

// call is a client request in the in-flight table: its stream, and how
// to cancel it (req for a request of its own, cancel for a batch's).
type call struct {
	st         *stream
	cancel     context.CancelFunc
	req        *request
	id         core.ID
	registered bool
}

func newGWSession(f *Frontend, rt *Route, info *core.SessionInfo) *gwSession {
	ctx, cancel := context.WithCancel(context.Background())
	if info.Stages == nil {
		info.Stages = new(core.StageHolder)
	}
	g := &gwSession{
		budget: historyBudget{sessionLimit: f.opts.ResumeSessionBytes, total: &f.historyBytes, totalLimit: f.opts.ResumeTotalBytes},
		f:      f, info: info, ctx: ctx, cancel: cancel,
		log:      f.log.With("session", info.LogID(), "principal", info.Principal, "route", rt.Name),
		streams:  map[string]*stream{},
		pending:  map[core.ID]chan *core.Message{},
		inflight: map[core.ID]*call{},
		catalog:  catalog.New(),
	}
	g.in.budget = historyBudget{sessionLimit: inboundBytesFactor * f.opts.ResumeSessionBytes, total: &f.historyBytes, totalLimit: f.opts.ResumeTotalBytes}
	g.rv.Store(rt)
	return g
}

// teardown is the session's Closer: end every stream, fail waiting server
// requests, close the upstream side.
func (g *gwSession) teardown(ctx context.Context, reason session.Reason) {
	g.cancel()
	defer g.leaveChain(string(reason))
	var detail string
	if d := g.endDetail.Load(); d != nil {
		detail = *d
	}
	g.f.ended.note(g.info, reason, detail)
	g.f.persist.forget(g, reason)
	if g.anonAddr != "" {
		g.route().state.mu.Lock()
		if g.route().state.anon[g.anonAddr] == g {
			delete(g.route().state.anon, g.anonAddr)
		}
		g.route().state.mu.Unlock()
	}
	g.mu.Lock()
	// A stream with a request in flight is not closed here: its exchange,
	// whose context has just ended, finishes it with the response or an
	// error. Closing it would answer the request 202 with no body.
	calls := make(map[*stream]bool, len(g.inflight))
	for _, c := range g.inflight {
		calls[c.st] = true
	}
	streams := make([]*stream, 0, len(g.streams)+1)
	for _, s := range g.streams {
		if !calls[s] {
			streams = append(streams, s)
		}
	}
	for _, s := range [...]*stream{g.standalone, g.detached} {
		if s != nil {
			streams = append(streams, s)
		}
	}
	g.streams, g.standalone, g.detached = map[string]*stream{}, nil, nil
	g.logDropsLocked(true)
	g.takeBacklogLocked()
	live := g.stopClockLocked()
	g.mu.Unlock()
	// Requests end with the session, as contexts derived from g.ctx do.
	for _, r := range live {
		r.cancel(context.Canceled)
	}
	g.discardInbound()
	for _, s := range streams {
		s.shut()
		s.release()
	}
	if conn, _ := g.connection(); conn != nil {
		if err := conn.Close(ctx); err != nil {
			g.log.Warn("upstream_close_failed", "error", err, "reason", string(reason))
		}
	}
}

// nextStreamID allocates a stream id unique within the session.
func (g *gwSession) nextStreamID() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.streamSeq++
	return strconv.Itoa(g.streamSeq)
}

func (g *gwSession) addStream(s *stream) {
	if !s.resumable {
		return
	}
	s.budget = &g.budget
	g.mu.Lock()
	g.streams[s.id] = s
	g.mu.Unlock()
}

// forgetStream drops a finished stream unless it still waits for a client
// to resume it, in which case it is kept for a while.
func (g *gwSession) forgetStream(s *stream) {
	if !s.resumable {
		return
	}
	if s.done() && s.missed() {
		// The client lost the stream before it had everything; keep the
		// history for a grace period so a reconnect can still fetch it. A
		// stream delivered whole is forgotten at once: it holds budget
		// other streams may need.
		time.AfterFunc(resumeGrace, func() { g.dropStream(s) })
		return
	}
	g.dropStream(s)
}

const resumeGrace = 2 * time.Minute

func (g *gwSession) dropStream(s *stream) {
	g.mu.Lock()
	if g.streams[s.id] == s {
		delete(g.streams, s.id)
	}
	g.mu.Unlock()
	s.release()
}

func (g *gwSession) stream(id string) *stream {
	g.mu.Lock()
	defer g.mu.Unlock()
	if id == "0" {
		if g.standalone == nil {
			return g.detached
		}
		return g.standalone
	}
	return g.streams[id]
}

// setStandalone installs the GET stream (a new one, or a lost one the
// client resumed), replacing an older one, and flushes the backlog into
// it.
func (g *gwSession) setStandalone(s *stream) {
	if s.resumable {
		s.budget = &g.budget
	}
	g.mu.Lock()
	old, lost := g.standalone, g.detached
	g.standalone, g.detached = s, nil
	g.logDropsLocked(true)
	backlog := g.takeBacklogLocked()
	g.mu.Unlock()
	for _, o := range [...]*stream{old, lost} {
		if o != nil && o != s {
			o.shut()
			o.release()
		}
	}
	for i, m := range backlog {
		if err := s.place(m); err != nil {
			// The new stream is gone already: what it did not take waits
			// for the next one, within the same bounds.
			g.mu.Lock()
			for _, m := range backlog[i:] {
				g.enqueueLocked(m)
			}
			g.mu.Unlock()
			return
		}
	}
}

// clearStandalone forgets the GET stream s once its client is gone (it
// left, or a write failed), so server messages wait in the bounded backlog
// for the next GET stream instead of going to a stream nobody reads. A
// resumable stream stays reachable by its id for a grace period, so the
// client can still resume it with Last-Event-ID.
func (g *gwSession) clearStandalone(s *stream) {
	g.mu.Lock()
	if g.standalone != s || s.attached() {
		// Replaced, or already resumed on a new response.
		g.mu.Unlock()
		return
	}
	g.standalone = nil
	g.stopListeningLocked()
	g.log.Debug("get_stream_lost", "resumable", s.resumable)
	var old *stream
	if s.resumable {
		old, g.detached = g.detached, s
	}
	g.mu.Unlock()
	if old != nil && old != s {
		old.shut()
		old.release()
	}
	if !s.resumable {
		s.shut()
		s.release()
		return
	}
	time.AfterFunc(resumeGrace, func() {
		g.mu.Lock()
		mine := g.detached == s
		if mine {
			g.detached = nil
		}
		g.mu.Unlock()
		if mine {
			s.shut()
			s.release()
		}
	})
}

// Bounds of the backlog in bytes come from the session's history budget
// (Options.ResumeSessionBytes, ResumeTotalBytes), shared with the SSE
// history: what a session keeps for its client is bounded as one.
//
// enqueueLocked keeps m for the next stream, within the backlog's bounds:
// at most Options.ServerRequestBacklog messages and the session's and the
// gateway's byte budgets. The oldest messages give way first; a message
// that cannot fit alone is dropped. Every message waiting for a stream
// goes through here.
func (g *gwSession) enqueueLocked(m *core.Message) {
	if g.ctx.Err() != nil {
		return // ended: nothing will read it
	}
	n := int64(len(m.Raw))
	for len(g.backlog) > 0 && (len(g.backlog) >= g.f.opts.ServerRequestBacklog || !g.budget.take(n)) {
		g.dropOldestLocked()
	}
	if len(g.backlog) == 0 && !g.budget.take(n) {
		g.droppedLocked()
		return
	}
	g.backlog = append(g.backlog, m)
	g.backlogBytes += n
}

func (g *gwSession) dropOldestLocked() {
	old := g.backlog[0]
	g.backlog[0] = nil
	g.backlog = g.backlog[1:]
	n := int64(len(old.Raw))
	g.backlogBytes -= n
	g.budget.give(n)
	g.droppedLocked()
}

// takeBacklogLocked empties the backlog and gives its bytes back.
func (g *gwSession) takeBacklogLocked() []*core.Message {
	b := g.backlog
	g.backlog = nil
	g.budget.give(g.backlogBytes)
	g.backlogBytes = 0
	return b
}

// dropLogInterval is how often a session logs the messages its full
// backlog dropped: one line with a count, not one per message.
const dropLogInterval = 10 * time.Second

func (g *gwSession) droppedLocked() {
	g.dropped++
	g.logDropsLocked(false)
}

// logDropsLocked logs the drops not yet logged: the first at once, then
// at most once per dropLogInterval, and what is left when the backlog is
// handed to a stream or the session ends (final).
func (g *gwSession) logDropsLocked(final bool) {
	if g.dropped == 0 {
		return
	}
	now := time.Now()
	if !final && !g.droppedLogged.IsZero() && now.Sub(g.droppedLogged) < dropLogInterval {
		return
	}
	g.log.Warn("server_message_backlog_full", "dropped", g.dropped, "kept", len(g.backlog))
	g.dropped, g.droppedLogged = 0, now
}

// startCall registers a client request in flight.
func (g *gwSession) startCall(id core.ID, c *call) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, dup := g.inflight[id]; dup {
		return core.NewError(core.CodeInvalidRequest, "invalid request: a request with id "+string(id)+" is already in flight")
	}
	g.inflight[id] = c
	return nil
}

func (g *gwSession) endCall(id core.ID) {
	g.mu.Lock()
	delete(g.inflight, id)
	g.mu.Unlock()
}

// cancelCall abandons an in-flight request the client cancelled.
func (g *gwSession) cancelCall(id core.ID) {
	g.mu.Lock()
	c := g.inflight[id]
	g.mu.Unlock()
	switch {
	case c == nil:
	case c.req != nil:
		c.req.cancel(context.Canceled)
	default:
		c.cancel()
	}
}

// Deliver implements upstream.Sink: a server message outside any request.
func (g *gwSession) Deliver(m *core.Message) {
	g.fromUpstream(g.ctx, m, nil)
}

// Closed implements upstream.Sink: the upstream side ended on its own.
func (g *gwSession) Closed(err error) {
	reason := g.upstreamEnded(err)
	g.log.Warn("upstream_ended", "error", err, "reason", string(reason))
	go func() {
		_ = g.f.opts.Sessions.End(context.Background(), g.info.ID, reason)
	}()
}

// upstreamEnded is why a session whose upstream side ended with err
// ends: a cap that killed the process (kept as the session's end detail),
// or the upstream gone.
func (g *gwSession) upstreamEnded(err error) session.Reason {
	if words, ok := upstream.ResourceLimit(err); ok {
		if words != "" {
			g.endDetail.CompareAndSwap(nil, &words)
		}
		return session.ReasonResourceLimit
	}
	return session.ReasonUpstreamGone
}

// deliverToClient is the terminal of the server→client chain, on the
// session's dispatcher: it places m on a stream and returns. A server
// request runs on a goroutine of its own (dispatchOne); it tells the
// dispatcher once m is placed, then waits for the client's answer.
func (g *gwSession) deliverToClient(ctx context.Context, m *core.Message) (*core.Message, error) {
	t := targetOf(ctx)
	st := t.st
	if m.Kind != core.KindRequest {
		g.write(m, st)
		return nil, nil
	}
	ch := make(chan *core.Message, 1)
	g.mu.Lock()
	if _, dup := g.pending[m.ID]; dup {
		g.mu.Unlock()
		return nil, core.NewError(core.CodeInvalidRequest, "duplicate server request id "+string(m.ID))
	}
	g.pending[m.ID] = ch
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.pending, m.ID)
		g.mu.Unlock()
	}()
	g.write(m, st)
	t.placed.done()
	timeout := time.NewTimer(g.route().RequestTimeout)
	defer timeout.Stop()
	select {
	case resp := <-ch:
		return resp, nil
	case <-timeout.C:
		return nil, core.NewError(core.CodeRequestTimeout, "the client did not answer "+m.Method+" in time")
	case <-g.ctx.Done():
		return nil, core.NewError(core.CodeInternalError, "client session ended")
	}
}

// write puts a server message on the best stream: the related request's
// stream, else the GET stream, else the most recent request stream, else
// the backlog until a GET stream opens.
func (g *gwSession) write(m *core.Message, st *stream) {
	if g.info.Era == core.EraModern {
		g.writeModern(m, st)
		return
	}
	if st != nil && st.place(m) == nil {
		return
	}
	g.mu.Lock()
	target := g.standalone
	if target == nil {
		for _, c := range g.inflight {
			if target == nil || c.st.id > target.id {
				target = c.st
			}
		}
	}
	if target == nil {
		g.enqueueLocked(m)
		g.mu.Unlock()
		return
	}
	g.mu.Unlock()
	if err := target.place(m); err != nil {
		g.mu.Lock()
		g.enqueueLocked(m)
		g.mu.Unlock()
	}
}

// resolve hands a client's response to the server request waiting for it.
func (g *gwSession) resolve(m *core.Message) bool {
	g.mu.Lock()
	ch := g.pending[m.ID]
	g.mu.Unlock()
	if ch == nil {
		return false
	}
	select {
	case ch <- m:
	default:
	}
	return true
}

// listen opens the upstream's own stream of server messages while the
// client holds its GET stream: an idle session whose client listens to
// nothing holds no upstream connection (for HTTP, no socket and no
// goroutine), and the upstream, seeing no stream, keeps or drops what it
// would send, as it does for a client without one. Called when a GET
// stream is installed; stopListeningLocked ends it when the stream is
// gone.
func (g *gwSession) listen() {
	g.mu.Lock()
	if g.listenStop != nil || g.ctx.Err() != nil {
		g.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(g.ctx)
	g.listenStop = cancel
	g.listenGen++
	gen := g.listenGen
	g.mu.Unlock()
	go func() {
		conn, _, err := g.ready(ctx)
		if err == nil {
			err = conn.Listen(ctx)
		}
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				g.log.Warn("upstream_listen_failed", "error", err)
			}
			// Let the next GET stream try again.
			g.mu.Lock()
			if g.listenGen == gen {
				g.listenStop = nil
			}
			g.mu.Unlock()
			cancel()
		}
	}()
}

// stopListeningLocked closes the upstream's stream opened by listen, and
// reports whether there was one.
func (g *gwSession) stopListeningLocked() bool {
	if g.listenStop == nil {
		return false
	}
	g.listenStop()
	g.listenStop = nil
	return true
}

type targetKey struct{}

type target struct {
	g  *gwSession
	st *stream
	// placed is marked when a server request is on a stream (dispatch.go).
	placed *placement
	// caller is the identity of the client request being served, nil for
	// what the server sends; stages read it with core.CallerOf.
	caller *Identity
}

func withTarget(ctx context.Context, g *gwSession, st *stream) context.Context {
	return withTargetOf(ctx, target{g: g, st: st})
}

// withTargetOf carries t in ctx. One allocation (context.WithValue would
// take two: the context and the boxed target), and looking it up takes
// none.
func withTargetOf(ctx context.Context, t target) context.Context {
	return &targetCtx{Context: ctx, t: t}
}

// targetCtx is a context carrying a target.
type targetCtx struct {
	context.Context
	t target
}

func (c *targetCtx) Value(key any) any {
	switch key.(type) {
	case targetKey:
		return &c.t
	case core.CallerKey:
		if c.t.caller != nil {
			return c.t.caller
		}
	case catalog.Key:
		if c.t.g != nil {
			return c.t.g.catalog
		}
	case core.ClientNotifierKey:
		if c.t.g != nil {
			return &c.t
		}
	case core.SessionNotifierKey:
		if c.t.g != nil {
			return c.t.g
		}
	}
	return c.Context.Value(key)
}

// NotifyClient delivers a message a stage made to the target's client:
// like a server's message related to the request in course, it passes the
// server→client chain and goes on the request's stream before its
// response (core.NotifyClient).
func (t *target) NotifyClient(m *core.Message) {
	t.g.fromUpstream(t.g.ctx, m, t.st)
}

func targetOf(ctx context.Context) target {
	if t, _ := ctx.Value(targetKey{}).(*target); t != nil {
		return *t
	}
	return target{}
}

func targetStream(ctx context.Context) *stream { return targetOf(ctx).st }

// listening is one modern subscriptions/listen request in course.
type listening struct {
	st *stream
	// lists are the list_changed notifications it asked for, by method.
	lists map[string]bool
}

// listenStarted records a subscriptions/listen request; its
// params.notifications say which list changes it wants.
func (g *gwSession) listenStarted(m *core.Message, st *stream) {
	var p struct {
		Notifications struct {
			Tools     bool `json:"toolsListChanged"`
			Prompts   bool `json:"promptsListChanged"`
			Resources bool `json:"resourcesListChanged"`
		} `json:"notifications"`
	}
	_ = json.Unmarshal(m.Params, &p)
	l := &listening{st: st, lists: map[string]bool{
		"notifications/tools/list_changed":     p.Notifications.Tools,
		"notifications/prompts/list_changed":   p.Notifications.Prompts,
		"notifications/resources/list_changed": p.Notifications.Resources,
	}}
	g.listenMu.Lock()
	if g.listens == nil {
		g.listens = map[core.ID]*listening{}
	}
	g.listens[m.ID] = l
	g.listenMu.Unlock()
}

// listenEnded forgets a subscriptions/listen request.
func (g *gwSession) listenEnded(id core.ID) {
	g.listenMu.Lock()
	delete(g.listens, id)
	g.listenMu.Unlock()
}

// notifyListeners sends a list_changed notification the gateway made to
// every listen request of the session that asked for it, with its
// subscription id, through the server→client chain; it reports whether
// any did.
func (g *gwSession) notifyListeners(method string) bool {
	g.listenMu.Lock()
	type target struct {
		id core.ID
		st *stream
	}
	var ts []target
	for id, l := range g.listens {
		if l.lists[method] {
			ts = append(ts, target{id, l.st})
		}
	}
	g.listenMu.Unlock()
	for _, t := range ts {
		m, err := core.Notification(method, []byte(`{"_meta":{"`+core.MetaSubscriptionID+`":`+string(t.id)+`}}`))
		if err != nil {
			continue
		}
		m.Era, m.Received = core.EraModern, time.Now()
		g.fromUpstream(g.ctx, m, t.st)
	}
	return len(ts) > 0
}
