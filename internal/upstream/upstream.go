package upstream

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/mcpgate/mcpgate/internal/callctx"
	"github.com/mcpgate/mcpgate/internal/catalog"
	"github.com/mcpgate/mcpgate/internal/core"
)

// ErrClosed is returned by a Conn that has been closed or whose upstream
// ended (process exited, upstream session gone).
var ErrClosed = errors.New("upstream: connection closed")

// ErrSessionLost means the upstream no longer knows the session (its 404).
var ErrSessionLost = errors.New("upstream: session not found upstream")

// ErrResourceLimit means a resource cap of the upstream ended it: a stdio
// process killed for its sandbox's memory or CPU cap. The error that
// wraps it says which cap and its limit (ResourceLimit).
var ErrResourceLimit = errors.New("upstream: resource limit exceeded")

// ResourceLimit reports whether err says a resource cap ended the
// upstream (ErrResourceLimit), and the words that say which cap, its
// limit and what was used, fit for the client ("" when err does not say).
func ResourceLimit(err error) (string, bool) {
	var l interface{ ResourceLimit() string }
	if errors.As(err, &l) {
		return l.ResourceLimit(), true
	}
	return "", errors.Is(err, ErrResourceLimit)
}

// ErrResponseLost means a request's response never arrived and the Conn
// cannot recover it — the upstream ended the request's stream with no
// event id to resume from, or lost the upstream session the Conn then
// replaced — so the request may or may not have run. The Conn stays
// usable: a request that is safe to repeat may be sent again. It comes
// wrapped in a *core.Error without an HTTP status (one request failed, not
// the session).
var ErrResponseLost = errors.New("upstream: the response to the request was lost")

// RetryHinter receives the reconnection delay (an SSE retry field, in
// milliseconds) the server names on a request's stream, so the gateway can
// give its own client the same hint: a server that polls (2025-11-25 SSE
// polling) has its clients told how soon to reconnect, through the gateway
// too. A Conn finds it with RetryHint.
type RetryHinter = callctx.RetryHinter

// hintFunc makes a func a RetryHinter.
type hintFunc func(ms int)

func (f hintFunc) RetryHint(ms int) { f(ms) }

// WithRetryHint returns a ctx for RoundTrip whose Conn passes the
// reconnection delays it meets on to hint. The frontend does not use it:
// its per-call context carries the hint in its callctx.Values at no
// further allocation.
func WithRetryHint(ctx context.Context, hint func(ms int)) context.Context {
	v := &callctx.Values{}
	if hint != nil {
		v.Hint = hintFunc(hint)
	}
	if old := callctx.Of(ctx); old != nil {
		v.Caller = old.Caller
	}
	return callctx.WithValues(ctx, v)
}

// RetryHint is where ctx's reconnection hints go; nil when nowhere.
func RetryHint(ctx context.Context) RetryHinter {
	if v := callctx.Of(ctx); v != nil {
		return v.Hint
	}
	return nil
}

// StatusError is implemented by the cause of an error an upstream's HTTP
// answer without a JSON-RPC error became (httpup.HTTPError): its status
// and the Retry-After delay it named (zero for none). errors.As finds it.
type StatusError interface {
	error
	UpstreamStatus() (status int, retryAfter time.Duration)
}

// Info is what a probe learned about an upstream.
type Info struct {
	// Era is the upstream's preferred era: EraModern when it answered
	// server/discover, EraLegacy otherwise.
	Era core.Era
	// ModernVersions are the modern revisions it supports (from discover or
	// an UnsupportedProtocolVersion error); empty for legacy-only servers.
	ModernVersions []string
	// ModernOnly: the server listed the versions it supports and none of
	// them is a legacy one. A legacy client's initialize is then translated
	// (a modern-only server still answers a handshake-era initialize, with
	// a legacy version, and then refuses everything that follows).
	ModernOnly bool
}

// Upstream is one configured server. Implementations must be safe for
// concurrent use by multiple goroutines.
type Upstream interface {
	// Probe finds out which era the upstream speaks. Results are cached by
	// the implementation; a probe that could not reach the server is not.
	Probe(ctx context.Context) (Info, error)
	// Open returns a connection for one gateway session. Server-initiated
	// messages that belong to no in-flight request go to sink. For a
	// process-backed upstream this starts the process.
	Open(ctx context.Context, p OpenParams, sink Sink) (Conn, error)
	// Close releases shared resources (idle connections).
	Close() error
}

// OpenParams describe the gateway session a Conn serves.
type OpenParams struct {
	// Session is the gateway session (its id appears in upstream logs).
	Session *core.SessionInfo
	// Era is the era the Conn speaks to the upstream.
	Era core.Era
	// Catalog is the session's tool catalog, which the gateway feeds with
	// the tools/list responses the client gets; a Conn that reads tool
	// definitions (the era bridge's x-mcp-header mirrors) reads them there
	// and feeds it what it lists on its own. Nil: such a Conn keeps one of
	// its own, fed by the responses it carries.
	Catalog *catalog.Catalog
}

// Sink receives what the upstream sends outside any request.
type Sink interface {
	// Deliver hands over a server notification or request unrelated to any
	// in-flight request (a request must eventually be answered with
	// Conn.Send). Deliver must not block for long.
	Deliver(m *core.Message)
	// Closed reports that the upstream side ended on its own (process
	// exit, upstream session lost). It is not called after Conn.Close.
	Closed(err error)
}

// Related receives messages the upstream sends for one in-flight request
// before its response: progress and log notifications, and (legacy era)
// server requests such as sampling/createMessage. It must not block for
// long; a server request is answered later through Conn.Send.
type Related func(m *core.Message)

// Tap observes the traffic an upstream package originates itself: every
// message it sends to, or consumes from, the server that did not come from
// the client through Conn.RoundTrip or Conn.Send. That is the bridge's
// MRTR retries and its tools/list refresh, the legacy-side initialize and
// notifications/initialized it sends, the notifications/cancelled it or
// httpup generate, and the answers to those requests; s is the gateway
// session they serve (nil when there is none, as for a probe).
//
// m.Direction says which way it went: core.ClientToServer for what goes
// to the server, core.ServerToClient for what comes back. Messages the
// client sent and the server's answers to them are not tapped, translated
// or not: the interceptor chain sees those.
//
// A Tap is called on the goroutine that sends or reads the message, so it
// must not block, and it must not keep or modify m (copy what it needs).
// A nil Tap is off, at no cost.
type Tap func(ctx context.Context, s *core.SessionInfo, m *core.Message)

// Emit calls t when it is set.
func (t Tap) Emit(ctx context.Context, s *core.SessionInfo, m *core.Message) {
	if t != nil && m != nil {
		t(ctx, s, m)
	}
}

// Conn is one gateway session's connection to the upstream. Safe for
// concurrent use: many requests of one session may be in flight at once.
type Conn interface {
	// RoundTrip sends a client request and returns the upstream's response.
	// Cancelling ctx abandons the request: a modern HTTP upstream sees its
	// stream closed; legacy and stdio upstreams get notifications/cancelled.
	RoundTrip(ctx context.Context, req *core.Message, related Related) (*core.Message, error)
	// Send forwards a client notification, or a client response to a
	// server request.
	Send(ctx context.Context, m *core.Message) error
	// Listen opens the upstream's stream of server-initiated messages
	// (legacy GET stream); messages go to the Sink. It returns when the
	// stream is established or refused; repeated calls are no-ops.
	Listen(ctx context.Context) error
	// UpstreamSession is the upstream's own session id, if any (never
	// shown to clients).
	UpstreamSession() string
	// Close ends the upstream session (DELETE, or stdin close → SIGTERM →
	// SIGKILL for a process) and waits for it within ctx.
	Close(ctx context.Context) error
}

// ForwardHeaders are the client request headers a Conn may pass upstream:
// Mcp-Param-* mirrors and W3C trace context. Authorization, cookies and
// everything else the client sent stay at the gateway.
func ForwardHeaders(dst, src http.Header) http.Header {
	for k, v := range src {
		if len(k) > 10 && http.CanonicalHeaderKey(k[:10]) == "Mcp-Param-" ||
			k == "Traceparent" || k == "Tracestate" || k == "Baggage" {
			if dst == nil {
				dst = http.Header{}
			}
			dst[k] = v
		}
	}
	return dst
}

// TraceHeaders are src's W3C trace context headers (Traceparent,
// Tracestate, Baggage), which a legacy-era request carries to the
// upstream and the gateway's spans take as their parent; nil (no
// allocation) when src has none.
func TraceHeaders(src http.Header) http.Header {
	tp := src["Traceparent"]
	if tp == nil {
		return nil
	}
	h := http.Header{"Traceparent": tp}
	if v := src["Tracestate"]; v != nil {
		h["Tracestate"] = v
	}
	if v := src["Baggage"]; v != nil {
		h["Baggage"] = v
	}
	return h
}

// WithTraceHeaders returns h with the trace context headers of src added:
// h itself when src has none, a copy otherwise (h may be shared).
func WithTraceHeaders(h, src http.Header) http.Header {
	if src == nil || src["Traceparent"] == nil {
		return h
	}
	out := make(http.Header, len(h)+3)
	for k, v := range h {
		out[k] = v
	}
	for _, k := range []string{"Traceparent", "Tracestate", "Baggage"} {
		if v := src[k]; v != nil {
			out[k] = v
		}
	}
	return out
}
