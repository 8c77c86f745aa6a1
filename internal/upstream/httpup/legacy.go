package httpup

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/sse"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// errSessionLost is returned once the upstream answered 404 to the session.
var errSessionLost = fmt.Errorf("httpup: upstream answered 404 for the session: %w", upstream.ErrSessionLost)

// errNoGET: the upstream answered 405 to GET (no stream, no resumption).
var errNoGET = upstreamErr("upstream offers no GET stream (HTTP 405)", &HTTPError{StatusCode: http.StatusMethodNotAllowed})

// legacyConn is an upstream session of the 2025-11-25 (and earlier)
// Streamable HTTP transport.
type legacyConn struct {
	connBase

	mu sync.Mutex
	// sid and version are learned from the initialize exchange; sidVal
	// and verVal are their header values, built once.
	sid, version   string
	sidVal, verVal []string
	// postHdr caches the headers of a POST (see post).
	postHdr   atomic.Pointer[postHeader]
	lost      bool // the upstream answered 404 for the session
	closed    bool
	noGET     bool // the upstream answered 405 to GET
	listening bool
	// listenCtx and listenDone are the open stream's context and its end;
	// listenOwner is the ctx of the Listen that opened it (lctx follows it
	// asynchronously).
	listenCtx, listenOwner context.Context
	listenDone             chan struct{}
	// cancelled holds request ids whose notifications/cancelled the client
	// already sent through Send, so RoundTrip sends no second one.
	cancelled  map[core.ID]struct{}
	nCancelled atomic.Int32
	listeners  sync.WaitGroup
}

func (c *legacyConn) UpstreamSession() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sid
}

// state returns the session's header values, or why the Conn is unusable.
func (c *legacyConn) state() (sid, ver []string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return nil, nil, fmt.Errorf("httpup: %w", upstream.ErrClosed)
	case c.lost:
		return nil, nil, errSessionLost
	}
	return c.sidVal, c.verVal, nil
}

// post returns the headers of a POST in this session. They are the same
// for every POST of one upstream session, so the map is built once per
// (sid, ver) and shared: nothing writes to a request's headers once it is
// built (net/http does not), so concurrent requests may read one map.
func (c *legacyConn) post(sid, ver []string) http.Header {
	if p := c.postHdr.Load(); p != nil && sameSlice(p.sid, sid) && sameSlice(p.ver, ver) {
		return p.h
	}
	h := c.u.headers(true, 2)
	if sid != nil {
		h[hdrSessionID] = sid
	}
	if ver != nil {
		h[hdrProtocolVersion] = ver
	}
	c.postHdr.Store(&postHeader{sid: sid, ver: ver, h: h})
	return h
}

// postHeader is the cached POST header map of one (sid, ver).
type postHeader struct {
	sid, ver []string
	h        http.Header
}

// sameSlice reports whether a and b are the same slice (sidVal and verVal
// are built once, so identity is equality).
func sameSlice(a, b []string) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// RoundTrip posts req.Raw unchanged and returns the response. Server
// messages on the response stream before it go to related; a stream the
// server closes early (SSE polling) is resumed with GET and Last-Event-ID.
// A non-2xx answer holding a JSON-RPC error is returned as the response,
// with the upstream's status in Status. When ctx ends first the request is
// abandoned and (except for initialize) the upstream gets
// notifications/cancelled; RoundTrip then returns ctx.Err().
func (c *legacyConn) RoundTrip(ctx context.Context, req *core.Message, related upstream.Related) (*core.Message, error) {
	if req.Kind != core.KindRequest {
		return nil, errors.New("httpup: RoundTrip takes a request; use Send")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sid, ver, err := c.state()
	if err != nil {
		return nil, err
	}
	o := c.startOutbound(ctx)
	m, err := c.roundTrip(o, req, related, sid, ver)
	c.endOutbound(o)
	if err == nil {
		if c.nCancelled.Load() > 0 {
			c.takeCancelled(req.ID)
		}
		return m, nil
	}
	err = c.failure(ctx, err)
	if ctx.Err() != nil && c.life.Err() == nil && req.Method != "initialize" {
		c.notifyCancelled(ctx, req.ID, sid, ver)
	}
	return nil, err
}

func (c *legacyConn) roundTrip(ctx *outbound, req *core.Message, related upstream.Related, sid, ver []string) (*core.Message, error) {
	resp, err := c.doRequest(ctx, http.MethodPost, req.Raw, upstream.WithTraceHeaders(c.post(sid, ver), req.Header))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		if resp.StatusCode == http.StatusNotFound && sid != nil {
			discard(resp)
			return nil, c.sessionLost()
		}
		if m := readErrorBody(resp, req.ID); m != nil {
			c.stamp(m)
			return m, nil
		}
		return nil, readHTTPError(resp)
	}
	isInit := req.Method == "initialize"
	if isInit {
		if id := resp.Header.Get(hdrSessionID); id != "" {
			if !validSessionID(id) {
				return nil, upstreamErr("upstream minted a malformed Mcp-Session-Id", nil)
			}
			c.mu.Lock()
			if c.sid == "" {
				c.sid, c.sidVal = id, []string{id}
				sid = c.sidVal
			}
			c.mu.Unlock()
		}
	}
	r := responseReader{b: &c.connBase, era: core.EraLegacy, out: ctx}
	if !isInit || sid != nil {
		r.resume = c
	}
	m, err := r.read(ctx, resp, req.ID, related)
	if err != nil {
		return nil, err
	}
	if isInit && m.Kind == core.KindResponse {
		var res struct {
			ProtocolVersion string `json:"protocolVersion"`
		}
		if json.Unmarshal(m.Result, &res) == nil && res.ProtocolVersion != "" && validHeaderValue(res.ProtocolVersion) {
			c.mu.Lock()
			c.version, c.verVal = res.ProtocolVersion, versionValue(res.ProtocolVersion)
			c.mu.Unlock()
		}
		if sid != nil {
			c.u.kept.Store(c)
		}
	}
	return m, nil
}

// validSessionID: visible ASCII (0x21–0x7E), as the transport requires.
func validSessionID(s string) bool {
	if s == "" || len(s) > 1024 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// get opens an SSE stream with GET; lastID resumes a stream.
func (c *legacyConn) get(ctx context.Context, sid, ver []string, lastID string) (*http.Response, error) {
	h := c.u.headers(false, 3)
	if sid != nil {
		h[hdrSessionID] = sid
	}
	if ver != nil {
		h[hdrProtocolVersion] = ver
	}
	if lastID != "" {
		h[hdrLastEventID] = []string{lastID}
	}
	return c.do(ctx, http.MethodGet, nil, h)
}

// resume reopens a request's stream after lastID.
func (c *legacyConn) resume(ctx context.Context, lastID string) (*http.Response, error) {
	sid, ver, err := c.state()
	if err != nil {
		return nil, err
	}
	resp, err := c.get(ctx, sid, ver, lastID)
	if err != nil {
		return nil, retryable{err}
	}
	return c.checkStream(resp, sid)
}

// checkStream accepts a GET's answer when it is an SSE stream; otherwise it
// consumes it and says why, marking failures worth retrying.
func (c *legacyConn) checkStream(resp *http.Response, sid []string) (*http.Response, error) {
	code := resp.StatusCode
	switch {
	case code == http.StatusOK && mediaType(resp.Header.Get("Content-Type")) == "text/event-stream":
		return resp, nil
	case code == http.StatusNotFound && sid != nil:
		discard(resp)
		return nil, c.sessionLost()
	case code == http.StatusMethodNotAllowed:
		discard(resp)
		return nil, errNoGET
	}
	e := readHTTPError(resp)
	discard(resp)
	if code >= 500 || code == http.StatusConflict || code == http.StatusTooManyRequests || code == http.StatusRequestTimeout {
		return nil, retryable{e}
	}
	if code == http.StatusOK {
		e = upstreamErr("upstream answered GET with content type "+strconv.Quote(resp.Header.Get("Content-Type")), nil)
	}
	return nil, e
}

// sessionLost records the upstream's 404 and tells the sink, once, unless
// the Conn is being closed.
func (c *legacyConn) sessionLost() error {
	c.mu.Lock()
	notify := !c.lost && !c.closed
	c.lost = true
	c.mu.Unlock()
	if notify {
		c.u.log.Info("upstream_session_lost", "session", c.session.LogID(), "principal", c.session.LogPrincipal(), "route", c.session.LogRoute())
		if c.sink != nil {
			c.sink.Closed(errSessionLost)
		}
	}
	return errSessionLost
}

// notifyCancelled tells the upstream a request was abandoned. It runs on a
// short context detached from the (ended) caller's.
func (c *legacyConn) notifyCancelled(ctx context.Context, id core.ID, sid, ver []string) {
	if c.takeCancelled(id) {
		return // the client's own notifications/cancelled went through Send
	}
	reason := "request cancelled"
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		reason = "request timed out"
	}
	raw := make([]byte, 0, 128+len(id))
	raw = append(raw, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":`...)
	raw = append(raw, id...)
	raw = append(raw, `,"reason":`...)
	raw = strconv.AppendQuote(raw, reason)
	raw = append(raw, "}}"...)
	if c.u.tap != nil {
		if m, err := core.Decode(raw); err == nil {
			m.Direction, m.Era, m.Session, m.Received = core.ClientToServer, core.EraLegacy, c.session, time.Now()
			c.u.tap(ctx, c.session, m)
		}
	}
	nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), noticeTimeout)
	defer cancel()
	stop := context.AfterFunc(c.life, cancel)
	defer stop()
	resp, err := c.do(nctx, http.MethodPost, raw, c.post(sid, ver))
	if err != nil {
		c.u.log.Debug("upstream_cancel_failed", "id", string(id), "error", err)
		return
	}
	discard(resp)
}

func (c *legacyConn) noteCancelled(m *core.Message) {
	var p struct {
		RequestID json.RawMessage `json:"requestId"`
	}
	if json.Unmarshal(m.Params, &p) != nil || len(p.RequestID) == 0 {
		return
	}
	c.mu.Lock()
	if c.cancelled == nil || len(c.cancelled) >= 64 {
		c.cancelled = make(map[core.ID]struct{})
	}
	c.cancelled[core.ID(p.RequestID)] = struct{}{}
	c.nCancelled.Store(int32(len(c.cancelled)))
	c.mu.Unlock()
}

func (c *legacyConn) takeCancelled(id core.ID) bool {
	if c.nCancelled.Load() == 0 {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.cancelled[id]
	delete(c.cancelled, id)
	c.nCancelled.Store(int32(len(c.cancelled)))
	return ok
}

// Send posts a notification or a response to a server request. The
// upstream's 202 (or any 2xx) is success; 404 means the session is lost.
func (c *legacyConn) Send(ctx context.Context, m *core.Message) error {
	if m.Kind == core.KindRequest {
		return errors.New("httpup: Send takes a notification or a response; use RoundTrip")
	}
	sid, ver, err := c.state()
	if err != nil {
		return err
	}
	if m.Method == "notifications/cancelled" {
		c.noteCancelled(m)
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.life, cancel)
	defer stop()
	resp, err := c.do(rctx, http.MethodPost, m.Raw, upstream.WithTraceHeaders(c.post(sid, ver), m.Header))
	if err != nil {
		return c.failure(ctx, err)
	}
	defer discard(resp)
	switch code := resp.StatusCode; {
	case code >= 200 && code <= 299:
		return nil
	case code == http.StatusNotFound && sid != nil:
		return c.sessionLost()
	}
	return readHTTPError(resp)
}

// Listen opens the session's GET stream. Messages on it go to the sink
// until the Conn is closed or ctx ends; a dropped stream is reopened (with
// Last-Event-ID when its events had ids) after the server's retry delay or
// a backoff of up to 30s. 405 means the upstream has none: Listen returns
// nil and later calls do nothing. 404 reports the session lost.
//
// The stream lasts as long as the ctx of the call that opened it: the
// gateway listens only while its client does, so an idle session holds no
// connection. A call made while a stream whose ctx ended is still closing
// waits for it, then opens a new one.
func (c *legacyConn) Listen(ctx context.Context) error {
	c.mu.Lock()
	for {
		switch {
		case c.closed:
			c.mu.Unlock()
			return fmt.Errorf("httpup: %w", upstream.ErrClosed)
		case c.lost:
			c.mu.Unlock()
			return errSessionLost
		case c.noGET:
			c.mu.Unlock()
			return nil
		case c.listening && c.listenCtx.Err() == nil && c.listenOwner.Err() == nil:
			c.mu.Unlock()
			return nil
		case c.listening:
			done := c.listenDone
			c.mu.Unlock()
			// Its owner ended; the stream is closing (or about to).
			select {
			case <-done:
			case <-ctx.Done():
				return ctx.Err()
			}
			c.mu.Lock()
			continue
		}
		break
	}
	lctx, cancel := context.WithCancel(c.life)
	done := make(chan struct{})
	c.listening, c.listenCtx, c.listenOwner, c.listenDone = true, lctx, ctx, done
	c.listeners.Add(1) // under mu: Close cannot be waiting yet
	sid, ver := c.sidVal, c.verVal
	c.mu.Unlock()

	unhook := context.AfterFunc(ctx, cancel)
	stop := func() { unhook(); cancel() }
	fail := func(err error) error {
		c.mu.Lock()
		c.listening = false
		c.mu.Unlock()
		close(done)
		stop()
		c.listeners.Done()
		return err
	}
	resp, err := c.getStream(lctx, sid, ver)
	if err != nil {
		return fail(c.failure(ctx, err))
	}
	resp, err = c.checkStream(resp, sid)
	if err != nil {
		if errors.Is(err, errNoGET) {
			c.mu.Lock()
			c.noGET = true
			c.mu.Unlock()
			return fail(nil)
		}
		var rt retryable
		if errors.As(err, &rt) {
			err = rt.error
		}
		return fail(err)
	}
	go c.listenLoop(lctx, ctx, stop, done, resp)
	return nil
}

// getStream opens the GET stream. A server allows one such stream per
// session and answers 409 Conflict until it has noticed that the previous
// one ended (a server learns of a closed stream late: when it next writes
// to it, or when its HTTP server sees the connection go); the request is
// repeated with a growing pause (at most conflictPause) for up to
// conflictPatience before the 409 is taken as the answer.
func (c *legacyConn) getStream(ctx context.Context, sid, ver []string) (*http.Response, error) {
	pause := 5 * time.Millisecond
	give := time.Now().Add(conflictPatience)
	for {
		resp, err := c.get(ctx, sid, ver, "")
		if err != nil || resp.StatusCode != http.StatusConflict || time.Now().After(give) {
			return resp, err
		}
		discard(resp)
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
		pause = min(2*pause, conflictPause)
	}
}

// How long and how often a GET stream refused with 409 is asked for again.
const (
	conflictPatience = 10 * time.Second
	conflictPause    = 250 * time.Millisecond
)

// owner is the ctx of the Listen call; ctx (which follows owner, but
// only once context.AfterFunc has run) also ends with the Conn.
func (c *legacyConn) listenLoop(ctx, owner context.Context, stop func(), done chan struct{}, resp *http.Response) {
	defer c.listeners.Done()
	defer stop()
	defer func() {
		c.mu.Lock()
		c.listening = false
		c.mu.Unlock()
		close(done)
	}()
	br := bufioPool.Get().(*bufio.Reader)
	defer func() {
		br.Reset(nil)
		bufioPool.Put(br)
	}()
	var lastID string
	retry := time.Duration(-1)
	failures := 0
	for {
		br.Reset(resp.Body)
		start := time.Now()
		progressed := c.consume(ctx, owner, br, &lastID, &retry)
		resp.Body.Close()
		if ctx.Err() != nil {
			return
		}
		if progressed || time.Since(start) > maxListenBackoff {
			failures = 0
		}
		for {
			delay := retry
			if failures > 0 || delay < 0 {
				delay = max(delay, backoff(failures+1, defaultRetry, maxListenBackoff))
			}
			failures++
			if sleep(ctx, delay) != nil {
				return
			}
			sid, ver, err := c.state()
			if err != nil {
				return
			}
			r, err := c.get(ctx, sid, ver, lastID)
			if err == nil {
				r, err = c.checkStream(r, sid)
			}
			if err == nil {
				resp = r
				break
			}
			switch {
			case ctx.Err() != nil, errors.Is(err, upstream.ErrSessionLost):
				return
			case errors.Is(err, errNoGET):
				c.mu.Lock()
				c.noGET = true
				c.mu.Unlock()
				return
			}
			c.u.log.Debug("upstream_listen_reconnect_failed", "session", c.session.LogID(), "principal", c.session.LogPrincipal(), "route", c.session.LogRoute(), "attempt", failures, "error", err)
		}
	}
}

// consume delivers the messages of one GET stream connection to the sink,
// until either context ends. It reports whether any event arrived.
//
// Once the Listen's ctx has ended, nothing more is delivered, even what
// was already read: the buffers hold up to some 20 KiB of events, and a
// starved reader may parse them long after the gateway stopped listening
// (its client's stream lost), where they would reach the next client
// stream as fresh messages, past the bounds of what the gateway keeps for
// a client that has none.
func (c *legacyConn) consume(ctx, owner context.Context, br *bufio.Reader, lastID *string, retry *time.Duration) bool {
	sr := sse.NewReader(br, maxMessageBytes)
	progressed := false
	for {
		ev, err := sr.Next()
		if err != nil {
			return progressed
		}
		progressed = true
		if ev.HasID {
			*lastID = ev.ID
		}
		if ev.Retry >= 0 {
			*retry = time.Duration(ev.Retry) * time.Millisecond
		}
		if len(ev.Data) == 0 || (ev.Name != "" && ev.Name != "message") {
			continue
		}
		m, err := core.Decode(bytes.Clone(ev.Data))
		if err != nil {
			c.u.log.Warn("upstream_invalid_message", "session", c.session.LogID(), "principal", c.session.LogPrincipal(), "route", c.session.LogRoute(), "error", err)
			continue
		}
		c.stamp(m)
		if m.Kind.IsResponse() {
			c.u.log.Debug("upstream_stray_response", "id", string(m.ID))
			continue
		}
		if owner.Err() != nil || ctx.Err() != nil {
			return progressed
		}
		if c.sink != nil {
			c.sink.Deliver(m)
		}
	}
}

// Close stops the GET stream, abandons in-flight requests and ends the
// upstream session with DELETE (405 and 404 are fine). It is idempotent;
// the DELETE is bounded by ctx (5s when ctx has no deadline).
func (c *legacyConn) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	sid, ver, lost := c.sidVal, c.verVal, c.lost
	c.mu.Unlock()
	c.u.kept.CompareAndSwap(c, nil)
	c.kill()
	c.listeners.Wait()
	if sid == nil || lost {
		return nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, noticeTimeout)
		defer cancel()
	}
	h := c.u.headers(false, 2)
	h[hdrSessionID] = sid
	if ver != nil {
		h[hdrProtocolVersion] = ver
	}
	resp, err := c.do(ctx, http.MethodDelete, nil, h)
	if err != nil {
		return fmt.Errorf("httpup: delete upstream session: %w", err)
	}
	defer discard(resp)
	switch code := resp.StatusCode; {
	case code >= 200 && code <= 299, code == http.StatusNotFound, code == http.StatusMethodNotAllowed:
		return nil
	}
	return fmt.Errorf("httpup: delete upstream session: %w", readHTTPError(resp))
}
