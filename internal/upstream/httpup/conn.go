package httpup

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/callctx"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/sse"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// Canonical header keys, so requests set map entries directly.
const (
	hdrSessionID       = "Mcp-Session-Id"
	hdrProtocolVersion = "Mcp-Protocol-Version"
	hdrMethod          = "Mcp-Method"
	hdrName            = "Mcp-Name"
	hdrLastEventID     = "Last-Event-Id"
)

const (
	// maxMessageBytes caps one JSON body or one SSE event from the upstream.
	maxMessageBytes = 16 << 20
	// maxErrorBody caps what is read of a non-2xx body.
	maxErrorBody = 1 << 20
	// defaultRetry is the reconnection delay when the stream set none.
	defaultRetry = time.Second
	// maxResumeTries bounds reconnections of a request's stream that bring
	// no new event.
	maxResumeTries = 5
	// maxListenBackoff caps the GET stream's reconnection delay.
	maxListenBackoff = 30 * time.Second
	// drainWait is how long to wait for an HTTP/1.1 stream to end after its
	// response (the server should end it), so the connection is reused.
	drainWait = 25 * time.Millisecond
	// noticeTimeout bounds notifications/cancelled and DELETE when the
	// caller's context has no deadline.
	noticeTimeout = 5 * time.Second
)

// Shared header values; the transport only reads them.
var (
	acceptPost = []string{"application/json, text/event-stream"}
	acceptGet  = []string{"text/event-stream"}
	// acceptGzip is set by mcpgate itself, so net/http neither adds it (a
	// map of extra headers per request) nor wraps the body: gzip answers
	// are decoded here (gunzip).
	acceptGzip  = []string{"gzip"}
	contentJSON = []string{"application/json"}
	versionVals = func() map[string][]string {
		m := map[string][]string{}
		for _, v := range append(append([]string(nil), core.LegacyVersions...), core.ModernVersions...) {
			m[v] = []string{v}
		}
		return m
	}()
	methodVals = func() map[string][]string {
		m := map[string][]string{}
		for _, v := range []string{
			"server/discover", "tools/list", "tools/call", "resources/list", "resources/read",
			"resources/templates/list", "prompts/list", "prompts/get", "completion/complete",
			"subscriptions/listen", "notifications/cancelled", "notifications/progress",
		} {
			m[v] = []string{v}
		}
		return m
	}()
)

func versionValue(v string) []string {
	if s, ok := versionVals[v]; ok {
		return s
	}
	return []string{v}
}

func methodValue(m string) []string {
	if s, ok := methodVals[m]; ok {
		return s
	}
	return []string{m}
}

// headers starts a request's header with the configured static headers,
// Accept, and Content-Type for a POST; extra sizes the map for what the
// caller adds.
func (u *Upstream) headers(post bool, extra int) http.Header {
	h := make(http.Header, len(u.static)+extra+2)
	for k, v := range u.static {
		h[k] = v
	}
	h["Accept-Encoding"] = acceptGzip
	if post {
		h["Accept"] = acceptPost
		h["Content-Type"] = contentJSON
	} else {
		h["Accept"] = acceptGet
	}
	return h
}

// do sends one request to the upstream URL. A 3xx answer is returned as
// it is (and treated as an error by callers).
//
// Exchanges other than client requests (probe, GET streams, notifications,
// DELETE) must see response headers within the configured
// response_header_timeout. Client requests are bounded by the route's
// request timeout instead: a server may legitimately hold back the headers
// of a long tool call until its first event.
//
// A request of no session (the probe) carries the credential of the
// ctx's caller, if the upstream has per-principal credentials.
func (u *Upstream) do(ctx context.Context, method string, body []byte, h http.Header) (*http.Response, error) {
	return u.exchange(ctx, nil, method, body, h, u.headerTimeout)
}

// do is Upstream.do for a request of the Conn's session, with the
// session principal's credential.
func (b *connBase) do(ctx context.Context, method string, body []byte, h http.Header) (*http.Response, error) {
	return b.u.exchange(ctx, b.session, method, body, h, b.u.headerTimeout)
}

// doRequest sends a client request, with no response-header deadline.
func (b *connBase) doRequest(ctx context.Context, method string, body []byte, h http.Header) (*http.Response, error) {
	return b.u.exchange(ctx, b.session, method, body, h, 0)
}

func (u *Upstream) exchange(ctx context.Context, s *core.SessionInfo, method string, body []byte, h http.Header, wait time.Duration) (*http.Response, error) {
	if u.cred != nil {
		var err error
		if h, err = u.withCredential(ctx, s, h); err != nil {
			return nil, err
		}
	}
	if u.lean != nil {
		return gunzip(u.lean.roundTrip(ctx, method, body, h, wait))
	}
	if wait <= 0 {
		var br *bodyReader
		if o, ok := ctx.(*outbound); ok {
			br = &o.body
		}
		return gunzip(u.transport.RoundTrip(u.requestWith(ctx, method, body, h, br)))
	}
	hctx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(wait, cancel)
	resp, err := gunzip(u.transport.RoundTrip(u.request(hctx, method, body, h)))
	if !timer.Stop() {
		if err == nil {
			_ = resp.Body.Close()
		}
		cancel()
		return nil, fmt.Errorf("httpup: no response headers from the upstream within %s", wait)
	}
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// gunzip decodes a gzip answer (mcpgate asks for gzip itself, so net/http
// leaves the body as it came): the body is replaced by its decoding, read
// lazily, and the length and encoding headers that described the encoded
// body are dropped, as net/http does. Other encodings were not asked for
// and are left as they are (the body then fails to parse, clearly).
func gunzip(resp *http.Response, err error) (*http.Response, error) {
	if err != nil || resp.Header.Get("Content-Encoding") != "gzip" {
		return resp, err
	}
	resp.Body = &gzipBody{body: resp.Body}
	resp.Header.Del("Content-Encoding")
	resp.Header.Del("Content-Length")
	resp.ContentLength = -1
	resp.Uncompressed = true
	return resp, nil
}

// gzipBody reads a gzip-encoded body, starting the decoder on first read.
type gzipBody struct {
	body io.ReadCloser
	zr   *gzip.Reader
	err  error
}

func (g *gzipBody) Read(p []byte) (int, error) {
	if g.zr == nil && g.err == nil {
		g.zr, g.err = gzip.NewReader(g.body)
	}
	if g.err != nil {
		return 0, g.err
	}
	return g.zr.Read(p)
}

func (g *gzipBody) Close() error { return g.body.Close() }

// withCredential returns h with the credential of the request's
// principal added: a copy, since h may be shared between requests (a
// legacy session's POST headers are).
func (u *Upstream) withCredential(ctx context.Context, s *core.SessionInfo, h http.Header) (http.Header, error) {
	v, err := u.cred.Value(ctx, s)
	if err != nil {
		return nil, err
	}
	if !validHeaderValue(v) {
		// The value is a secret: name the header only.
		return nil, &core.Error{Code: core.CodeUpstreamError, Message: "upstream credential unusable: the value of " + u.credName + " holds control characters",
			Status: http.StatusBadGateway, Err: upstream.ErrCredential}
	}
	out := make(http.Header, len(h)+1)
	for k, vs := range h {
		out[k] = vs
	}
	out[u.credName] = []string{v}
	return out, nil
}

// cancelOnClose releases an exchange's context with its body.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// request builds a request to the upstream URL. Building it by hand saves
// parsing the URL on every request; the shared *url.URL is only read.
func (u *Upstream) request(ctx context.Context, method string, body []byte, h http.Header) *http.Request {
	return u.requestWith(ctx, method, body, h, nil)
}

// requestWith is request with the body read by br (an outbound's own
// reader) when it is not nil.
func (u *Upstream) requestWith(ctx context.Context, method string, body []byte, h http.Header, br *bodyReader) *http.Request {
	r := http.Request{
		Method:     method,
		URL:        u.target,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Host:       u.target.Host,
	}
	if body != nil {
		if br == nil {
			br = newBody(body)
		} else {
			br.Reset(body)
		}
		r.Body = br
		r.ContentLength = int64(len(body))
		r.GetBody = func() (io.ReadCloser, error) { return newBody(body), nil }
	}
	return r.WithContext(ctx)
}

type bodyReader struct{ bytes.Reader }

func (*bodyReader) Close() error { return nil }

func newBody(b []byte) *bodyReader {
	r := new(bodyReader)
	r.Reset(b)
	return r
}

// outbound is the context one client request's exchange with the
// upstream runs under, in one allocation with its body reader: it ends
// with the caller's context (watched through callctx.Watcher when the
// caller's is the frontend's per-call context, which costs no closure),
// with the Conn (Close), and when the exchange is over. It replaces a
// context.WithCancel and a context.AfterFunc on the Conn's lifetime.
type outbound struct {
	callctx.End
	parent context.Context
	body   bodyReader
	// stop ends the watch on a parent that is not a callctx.Watcher.
	stop func() bool
	// prev and next link the Conn's requests in flight (outbounds.mu).
	prev, next *outbound
	inList     bool
}

func (o *outbound) Deadline() (time.Time, bool) { return o.parent.Deadline() }
func (o *outbound) Value(key any) any           { return o.parent.Value(key) }

// CallEnded implements callctx.Listener: the caller's context ended.
func (o *outbound) CallEnded(err error) { o.Cancel(err) }

// outbounds are a Conn's requests in flight, ended when the Conn closes.
type outbounds struct {
	mu     sync.Mutex
	head   *outbound
	closed bool
}

// endAll ends every request in flight: the Conn is closing.
func (l *outbounds) endAll() {
	l.mu.Lock()
	l.closed = true
	var all []*outbound
	for o := l.head; o != nil; o = o.next {
		all = append(all, o)
	}
	l.mu.Unlock()
	for _, o := range all {
		o.Cancel(context.Canceled)
	}
}

// startOutbound makes the outbound context of a request under ctx.
func (b *connBase) startOutbound(ctx context.Context) *outbound {
	o := &outbound{parent: ctx}
	if w, ok := ctx.(callctx.Watcher); ok {
		if !w.Watch(o) {
			o.Cancel(ctx.Err())
		}
	} else if ctx.Done() != nil {
		o.stop = context.AfterFunc(ctx, func() { o.Cancel(ctx.Err()) })
	}
	l := b.inflight
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		o.Cancel(context.Canceled)
		return o
	}
	o.inList, o.next = true, l.head
	if l.head != nil {
		l.head.prev = o
	}
	l.head = o
	l.mu.Unlock()
	return o
}

// endOutbound ends a request's outbound context once its exchange is
// over.
func (b *connBase) endOutbound(o *outbound) {
	l := b.inflight
	l.mu.Lock()
	if o.inList {
		if o.prev != nil {
			o.prev.next = o.next
		} else {
			l.head = o.next
		}
		if o.next != nil {
			o.next.prev = o.prev
		}
		o.prev, o.next, o.inList = nil, nil, false
	}
	l.mu.Unlock()
	if w, ok := o.parent.(callctx.Watcher); ok {
		w.Unwatch(o)
	} else if o.stop != nil {
		o.stop()
	}
	o.Cancel(context.Canceled)
}

// connBase is what both eras' Conns share.
type connBase struct {
	// inflight are the client requests in flight, ended by Close.
	inflight *outbounds
	u        *Upstream
	sink     upstream.Sink
	session  *core.SessionInfo
	era      core.Era
	// life is the Conn's own lifetime, not a caller's context: Close
	// cancels it, which aborts every request and stream of the Conn.
	life context.Context
	kill context.CancelFunc
}

// stamp sets the routing fields of a message handed out.
func (b *connBase) stamp(m *core.Message) {
	m.Direction = core.ServerToClient
	m.Era = b.era
	m.Session = b.session
	m.Received = time.Now()
}

// failure turns an error of a request into what RoundTrip returns: the
// Conn's closing wins, then the caller's context, then the error itself.
func (b *connBase) failure(ctx context.Context, err error) error {
	switch {
	case b.life.Err() != nil:
		return fmt.Errorf("httpup: %w", upstream.ErrClosed)
	case ctx.Err() != nil:
		return ctx.Err()
	}
	var ce *core.Error
	if errors.As(err, &ce) || errors.Is(err, upstream.ErrSessionLost) {
		return err
	}
	return upstreamErr("upstream request failed", err)
}

// HTTPError is the cause (Err) of the *core.Error returned when an upstream
// answered with an HTTP status and no JSON-RPC error: errors.As finds the
// upstream's own status there. (The *core.Error itself carries 502.)
type HTTPError struct {
	StatusCode int
	// Body is the start of the response body, for logs.
	Body string
	// RetryAfter is the delay the upstream's Retry-After header named
	// (zero for none).
	RetryAfter time.Duration
}

// UpstreamStatus is the upstream's HTTP status and Retry-After delay
// (upstream.StatusError).
func (e *HTTPError) UpstreamStatus() (int, time.Duration) { return e.StatusCode, e.RetryAfter }

// retryAfter reads a Retry-After header: delay-seconds or an HTTP date;
// zero when absent or unreadable, at most an hour.
func retryAfter(h http.Header) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = time.Until(t)
	}
	return min(max(d, 0), time.Hour)
}

func (e *HTTPError) Error() string {
	s := "upstream HTTP " + strconv.Itoa(e.StatusCode) + " " + http.StatusText(e.StatusCode)
	if e.Body != "" {
		s += ": " + strconv.Quote(e.Body)
	}
	return s
}

// upstreamErr is a failure talking to the upstream: -32010, HTTP 502.
func upstreamErr(msg string, cause error) *core.Error {
	return &core.Error{Code: core.CodeUpstreamError, Message: msg, Status: http.StatusBadGateway, Err: cause}
}

// responseLost is a request whose response the upstream never delivered:
// -32010 without an HTTP status, wrapping upstream.ErrResponseLost.
func responseLost(msg string, cause error) *core.Error {
	if cause == nil {
		cause = upstream.ErrResponseLost
	} else {
		cause = fmt.Errorf("%w: %w", upstream.ErrResponseLost, cause)
	}
	return &core.Error{Code: core.CodeUpstreamError, Message: msg, Err: cause}
}

// readHTTPError consumes a non-2xx body that holds no JSON-RPC error.
func readHTTPError(resp *http.Response) *core.Error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	he := &HTTPError{StatusCode: resp.StatusCode, Body: strings.TrimSpace(string(b)), RetryAfter: retryAfter(resp.Header)}
	return upstreamErr("upstream answered HTTP "+strconv.Itoa(resp.StatusCode)+" "+http.StatusText(resp.StatusCode), he)
}

// readErrorBody reads a non-2xx body and returns the JSON-RPC error
// response it holds, addressed to id and carrying the HTTP status in
// Status, or nil when it holds none.
func readErrorBody(resp *http.Response, id core.ID) *core.Message {
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if err != nil || len(b) == 0 {
		return nil
	}
	m, err := core.Decode(b)
	if err != nil || m.Kind != core.KindError {
		return nil
	}
	m = withID(m, id)
	m.Status = resp.StatusCode
	m.RetryAfter = retryAfter(resp.Header)
	return m
}

// withID readdresses an error response that names no (or another) id to
// the request it answers: servers answer errors they raise before reading
// the id with id null.
func withID(m *core.Message, id core.ID) *core.Message {
	if idEqual(m.ID, id) || id == "" {
		return m
	}
	raw := make([]byte, 0, len(m.Error)+len(id)+40)
	raw = append(raw, `{"jsonrpc":"2.0","id":`...)
	raw = append(raw, id...)
	raw = append(raw, `,"error":`...)
	raw = append(raw, m.Error...)
	raw = append(raw, '}')
	n, err := core.Decode(raw)
	if err != nil {
		return m
	}
	return n
}

// idEqual compares two encoded ids as JSON values ("a\u0062" equals "ab").
func idEqual(a, b core.ID) bool {
	if a == b {
		return true
	}
	if a == "" || b == "" || (a[0] == '"') != (b[0] == '"') {
		return false
	}
	if a[0] == '"' {
		var x, y string
		return json.Unmarshal([]byte(a), &x) == nil && json.Unmarshal([]byte(b), &y) == nil && x == y
	}
	x, err1 := strconv.ParseFloat(string(a), 64)
	y, err2 := strconv.ParseFloat(string(b), 64)
	return err1 == nil && err2 == nil && x == y
}

func mediaType(v string) string {
	if i := strings.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	v = strings.TrimSpace(v)
	if strings.EqualFold(v, "application/json") {
		return "application/json"
	}
	if strings.EqualFold(v, "text/event-stream") {
		return "text/event-stream"
	}
	if t, _, err := mime.ParseMediaType(v); err == nil {
		return t
	}
	return v
}

var (
	bufioPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}
	bufPool   = sync.Pool{New: func() any { return new(bytes.Buffer) }}
)

// readJSON reads one message body. The bytes become the message's Raw, so
// they are never pooled; a pooled buffer only serves bodies of unknown
// length, which are copied out once at their final size.
func readJSON(body io.Reader, n int64) (*core.Message, error) {
	if n > maxMessageBytes {
		return nil, upstreamErr("upstream message larger than "+strconv.Itoa(maxMessageBytes)+" bytes", nil)
	}
	var b []byte
	if n >= 0 {
		b = make([]byte, n)
		if _, err := io.ReadFull(body, b); err != nil {
			return nil, err
		}
	} else {
		buf := bufPool.Get().(*bytes.Buffer)
		buf.Reset()
		_, err := buf.ReadFrom(io.LimitReader(body, maxMessageBytes+1))
		if err == nil && buf.Len() > maxMessageBytes {
			err = upstreamErr("upstream message larger than "+strconv.Itoa(maxMessageBytes)+" bytes", nil)
		}
		if err == nil {
			b = bytes.Clone(buf.Bytes())
		}
		if buf.Cap() <= 64<<10 {
			bufPool.Put(buf)
		}
		if err != nil {
			return nil, err
		}
	}
	m, err := core.Decode(b)
	if err != nil {
		return nil, upstreamErr("upstream sent an invalid JSON-RPC message", err)
	}
	return m, nil
}

// resumer reopens a request's stream after lastID (legacyConn does).
type resumer interface {
	resume(ctx context.Context, lastID string) (*http.Response, error)
}

// retryable marks a failed reconnection worth trying again.
type retryable struct{ error }

func (r retryable) Unwrap() error { return r.error }

// responseReader reads the answer to one request: a JSON body, or an SSE
// stream whose other messages go to related. With resume set (legacy era)
// a stream that ends before the response is resumed with GET and
// Last-Event-ID, honouring the server's retry field.
type responseReader struct {
	b      *connBase // nil for the probe
	era    core.Era
	cancel context.CancelFunc // ends the HTTP request (bounds the drain)
	// out, when set instead of cancel, is the request's outbound context,
	// which ends it: no CancelFunc is made unless a drain needs one.
	out *outbound
	// resume, when set, reopens the stream after an event id. It is an
	// interface, not a func: a method value would cost an allocation per
	// request.
	resume resumer

	lastID string
	retry  time.Duration        // -1: not set by the stream
	hint   upstream.RetryHinter // where the caller wants retry hints; nil for none
}

func (r *responseReader) stamp(m *core.Message) {
	if r.b != nil {
		r.b.stamp(m)
		return
	}
	m.Direction, m.Era, m.Received = core.ServerToClient, r.era, time.Now()
}

func (r *responseReader) logger() *slog.Logger {
	if r.b != nil {
		return r.b.u.log
	}
	return slog.New(slog.DiscardHandler)
}

// read reads a 2xx answer to the request id.
func (r *responseReader) read(ctx context.Context, resp *http.Response, id core.ID, related upstream.Related) (*core.Message, error) {
	if resp.StatusCode == http.StatusAccepted || resp.StatusCode == http.StatusNoContent {
		return nil, upstreamErr("upstream answered a request with HTTP "+strconv.Itoa(resp.StatusCode)+" and no response", &HTTPError{StatusCode: resp.StatusCode})
	}
	switch ct := mediaType(resp.Header.Get("Content-Type")); ct {
	case "application/json":
		m, err := readJSON(resp.Body, resp.ContentLength)
		if err != nil {
			return nil, err
		}
		switch {
		case m.Kind == core.KindError:
			m = withID(m, id)
		case m.Kind != core.KindResponse || !idEqual(m.ID, id):
			return nil, upstreamErr("upstream answered with a "+m.Kind.String()+" instead of the response to "+string(id), nil)
		}
		r.stamp(m)
		return m, nil
	case "text/event-stream":
		if resp.ProtoMajor >= 2 {
			r.cancel, r.out = nil, nil // an HTTP/2 stream is reset on close at no cost: no drain
		}
		return r.readSSE(ctx, resp.Body, id, related)
	default:
		return nil, upstreamErr("upstream answered with content type "+strconv.Quote(ct), nil)
	}
}

func (r *responseReader) readSSE(ctx context.Context, body io.ReadCloser, id core.ID, related upstream.Related) (*core.Message, error) {
	br := bufioPool.Get().(*bufio.Reader)
	br.Reset(body)
	defer func() {
		br.Reset(nil)
		bufioPool.Put(br)
	}()
	r.retry = -1
	r.hint = upstream.RetryHint(ctx)
	progressAt, tries := "", 0
	for {
		m, err := r.scan(sse.NewReader(br, maxMessageBytes), id, related)
		if m != nil {
			r.drain(br)
			body.Close()
			return m, nil
		}
		body.Close()
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		var ce *core.Error
		if errors.As(err, &ce) {
			return nil, err // a bad message: resuming would not help
		}
		if errors.Is(err, io.EOF) {
			err = nil
		}
		if r.resume != nil && r.lastID == "" {
			// SSE polling (2025-11-25) lets a server close a request's
			// stream early only after an event with an id; without one
			// there is nothing to resume from (go-sdk without an event
			// store sends just a retry field), and the response is gone.
			// One request failed, not the session: a JSON-RPC error, no
			// HTTP failure, and the caller may repeat a safe request.
			r.logger().Warn("upstream_stream_closed_without_event_id", "retry", r.retry)
			return nil, responseLost("the upstream closed the request's stream before the response, with no event id to resume it from; the request may or may not have run", err)
		}
		if r.resume == nil {
			return nil, upstreamErr("upstream stream ended before the response", err)
		}
		for {
			if r.lastID != progressAt {
				progressAt, tries = r.lastID, 0
			}
			tries++
			if tries > maxResumeTries {
				return nil, upstreamErr("upstream stream could not be resumed after "+strconv.Itoa(maxResumeTries)+" attempts", err)
			}
			delay := defaultRetry
			if r.retry >= 0 {
				delay = r.retry
			}
			if tries > 1 {
				delay = max(delay, backoff(tries-1, defaultRetry, maxListenBackoff))
			}
			if err := sleep(ctx, delay); err != nil {
				return nil, err
			}
			r.logger().Debug("upstream_stream_resume", "last_event_id", r.lastID, "attempt", tries)
			resp, rerr := r.resume.resume(ctx, r.lastID)
			if rerr == nil {
				body = resp.Body
				br.Reset(body)
				break
			}
			if cerr := ctx.Err(); cerr != nil {
				return nil, cerr
			}
			if !errors.As(rerr, new(retryable)) {
				return nil, rerr
			}
			err = rerr
		}
	}
}

// scan reads events until the response to id (returned) or the end of the
// stream (the read error, io.EOF at a clean end). Every other message is
// stamped and passed to related.
func (r *responseReader) scan(sr *sse.Reader, id core.ID, related upstream.Related) (*core.Message, error) {
	for {
		ev, err := sr.Next()
		if err != nil {
			if errors.Is(err, sse.ErrEventTooLarge) {
				return nil, upstreamErr("upstream event larger than "+strconv.Itoa(maxMessageBytes)+" bytes", err)
			}
			return nil, err
		}
		if ev.HasID {
			r.lastID = ev.ID
		}
		if ev.Retry >= 0 {
			r.retry = time.Duration(ev.Retry) * time.Millisecond
			if r.hint != nil {
				r.hint.RetryHint(ev.Retry)
			}
		}
		if len(ev.Data) == 0 || (ev.Name != "" && ev.Name != "message") {
			continue // priming and close events, foreign event types
		}
		m, err := core.Decode(bytes.Clone(ev.Data))
		if err != nil {
			return nil, upstreamErr("upstream sent an invalid JSON-RPC message", err)
		}
		r.stamp(m)
		if m.Kind.IsResponse() {
			if idEqual(m.ID, id) || (m.Kind == core.KindError && m.ID.IsNull()) {
				if m.Kind == core.KindError {
					m = withID(m, id)
					r.stamp(m)
				}
				return m, nil
			}
			r.logger().Debug("upstream_stray_response", "id", string(m.ID), "want", string(id))
			continue
		}
		if related != nil {
			related(m)
		}
	}
}

// drain reads what is left of a stream whose response has arrived, for a
// short while, so an HTTP/1.1 connection ends cleanly and is reused; a
// server that keeps the stream open loses it when cancel fires.
func (r *responseReader) drain(br *bufio.Reader) {
	if r.cancel == nil && r.out != nil {
		o := r.out
		r.cancel = func() { o.Cancel(context.Canceled) }
	}
	if r.cancel == nil {
		return
	}
	t := time.AfterFunc(drainWait, r.cancel)
	_, _ = io.CopyN(io.Discard, br, 64<<10)
	t.Stop()
}

// backoff is base·2^(n-1), capped, with up to 20% jitter.
func backoff(n int, base, limit time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	return d + rand.N(d/5+1)
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// discard consumes a little of a body we do not need, so the connection can
// be reused, and closes it.
func discard(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	resp.Body.Close()
}
