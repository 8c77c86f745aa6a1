package frontend

import (
	"context"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/mcpgate/mcpgate/internal/callctx"
	"github.com/mcpgate/mcpgate/internal/catalog"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// request is one client request in flight on its own response: its
// stream, the context its exchange runs under, its entry in the session's
// in-flight table and on the session's clock. One allocation carries what
// a context.WithTimeout (its timer, its context, its children map), a
// target context, an upstream.WithRetryHint context, a call record, a
// stream and a keep-alive timer used to (about a dozen allocations).
//
// As a context.Context it ends when the session ends (teardown cancels
// every request on the clock), at its deadline (the session's clock), when
// the client cancels the request (notifications/cancelled, cancelCall) or
// goes away (cancelOnClose), and when the exchange is over (endRequest).
// It carries no values of its parent: the session's context carries none.
type request struct {
	st stream
	c  call
	g  *gwSession
	t  target
	// vals are what the upstream packages read (callctx): the caller's
	// credential identity on routes that send it, and the stream as the
	// hint's receiver.
	vals callctx.Values

	// Clock state, guarded by g.mu: the deadline and the moment the
	// response turns to SSE, each zeroed once it has passed; the request's
	// place in the session's list of live requests.
	deadline, sseAt time.Time
	onClock         bool
	prev, next      *request

	// dl is the deadline Deadline reports (zero: none).
	dl time.Time

	// after is what runs once the response is delivered
	// (core.AfterResponse); nil for nothing.
	after atomic.Pointer[[]func()]

	// End is the context's ending: Done, Err, AfterFunc, Watch.
	callctx.End
	// stopClose ends the watch on the client's HTTP request
	// (cancelOnClose); nil without one.
	stopClose func() bool

	// clBuf and clVal are the Content-Length header's value, written in
	// place (stream.finish).
	clBuf [20]byte
	clVal [1]string
}

// newRequest builds the request for a client request on w: a response
// stream (resumable when the session's version supports priming), bounded
// by timeout (zero: none) and, when cancelOnClose, by r's own context. It
// is not live until startRequest.
func (g *gwSession) newRequest(w http.ResponseWriter, r *http.Request, id core.ID, streamID string, resumable bool, timeout time.Duration, cancelOnClose bool) *request {
	req := &request{g: g}
	initStream(&req.st, w, &g.f.opts, streamID, resumable)
	req.st.req = req
	req.c = call{st: &req.st, req: req}
	req.t = target{g: g, st: &req.st, caller: callerOf(r)}
	if g.route().Caller {
		req.vals.Caller = upstream.CallerOf(r.Context())
	}
	if resumable {
		req.vals.Hint = &req.st
	}
	now := time.Now()
	if timeout > 0 {
		req.deadline = now.Add(timeout)
		req.dl = req.deadline
	}
	if d := g.f.opts.StreamAfter; d > 0 {
		req.sseAt = now.Add(d)
	}
	if cancelOnClose {
		req.stopClose = context.AfterFunc(r.Context(), func() { req.cancel(context.Canceled) })
	}
	return req
}

// Deadline implements context.Context.
func (r *request) Deadline() (time.Time, bool) { return r.dl, !r.dl.IsZero() }

// Value implements context.Context: the request's target, its callctx
// values, the caller's identity (core.CallerKey), the session's tool
// catalog (catalog.Key), the target's client notifier
// (core.ClientNotifierKey), the session's own (core.SessionNotifierKey)
// and the hook run after the response (core.AfterResponseKey). Nothing else: the session's context, its parent, carries no values, and answering for it
// would make context.Cause report the session's cause for the request.
func (r *request) Value(key any) any {
	switch key.(type) {
	case targetKey:
		return &r.t
	case callctx.Key:
		return &r.vals
	case core.CallerKey:
		if r.t.caller != nil {
			return r.t.caller
		}
	case catalog.Key:
		if r.t.g != nil {
			return r.t.g.catalog
		}
	case core.ClientNotifierKey:
		if r.t.g != nil {
			return &r.t
		}
	case core.SessionNotifierKey:
		if r.t.g != nil {
			return r.t.g
		}
	case core.AfterResponseKey:
		return r
	}
	return nil
}

// AfterResponse implements core.AfterResponder: fn runs once the
// request's response is delivered (runAfter).
func (r *request) AfterResponse(fn func()) {
	for {
		old := r.after.Load()
		var fns []func()
		if old != nil {
			fns = append(fns, *old...)
		}
		fns = append(fns, fn)
		if r.after.CompareAndSwap(old, &fns) {
			return
		}
	}
}

// runAfter runs what AfterResponse asked for, once the handler is done
// with the response (written, or the client gone).
func (r *request) runAfter() {
	if fns := r.after.Swap(nil); fns != nil {
		for _, fn := range *fns {
			fn()
		}
	}
}

// cancel ends the request's context with err (context.Canceled, or
// context.DeadlineExceeded from the clock); the first call wins.
func (r *request) cancel(err error) { r.Cancel(err) }

// startRequest makes the request live: on the session's clock, and, when
// register, in the in-flight table under its id (a duplicate id is
// refused). A request started as the session ends is ended at once.
func (g *gwSession) startRequest(r *request, id core.ID, register bool) error {
	g.mu.Lock()
	if register {
		if _, dup := g.inflight[id]; dup {
			g.mu.Unlock()
			return core.NewError(core.CodeInvalidRequest, "invalid request: a request with id "+string(id)+" is already in flight")
		}
		g.inflight[id] = &r.c
	}
	r.c.id = id
	r.c.registered = register
	ended := g.ending
	if !ended {
		g.clockAddLocked(r)
	}
	g.mu.Unlock()
	if ended {
		r.cancel(context.Canceled)
	}
	return nil
}

// endRequest takes a request off the clock and the in-flight table and
// ends its context, releasing what derived from it.
func (g *gwSession) endRequest(r *request) {
	g.mu.Lock()
	if r.c.registered && g.inflight[r.c.id] == &r.c {
		delete(g.inflight, r.c.id)
	}
	g.clockRemoveLocked(r)
	g.mu.Unlock()
	if r.stopClose != nil {
		r.stopClose()
	}
	r.cancel(context.Canceled)
}

// setContentLength sets the response's Content-Length to n, the value
// written in the request's own storage: net/http only reads it, before the
// handler returns.
func (s *stream) setContentLength(h http.Header, n int) {
	if r := s.req; r != nil {
		b := strconv.AppendInt(r.clBuf[:0], int64(n), 10)
		r.clVal[0] = unsafe.String(&b[0], len(b))
		h["Content-Length"] = r.clVal[:]
		return
	}
	h["Content-Length"] = []string{strconv.Itoa(n)}
}
