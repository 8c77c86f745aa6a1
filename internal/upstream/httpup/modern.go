package httpup

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// modernConn speaks the 2026-07-28 transport: every request is its own
// POST; there is no upstream session, no GET stream and no resumption.
type modernConn struct {
	connBase
	// version is used when a message carries no _meta protocol version
	// (notifications).
	version string
	closed  atomic.Bool
}

func (c *modernConn) UpstreamSession() string { return "" }

// post builds the headers of a modern POST: the metadata mirrors, then the
// client headers the gateway forwards (Mcp-Param-*, trace context).
func (c *modernConn) post(m *core.Message) http.Header {
	h := c.u.headers(true, 3+len(m.Header))
	v := m.MetaVersion
	if v == "" {
		v = c.version
	}
	h[hdrProtocolVersion] = versionValue(v)
	h[hdrMethod] = methodValue(m.Method)
	switch m.Method {
	case "tools/call", "resources/read", "prompts/get":
		h[hdrName] = []string{encodeHeaderValue(m.Name)}
	}
	if m.Header != nil {
		upstream.ForwardHeaders(h, m.Header)
	}
	return h
}

// RoundTrip posts req and returns the response; notifications on the
// response stream go to related (a subscriptions/listen stream delivers
// until ctx ends). Ending ctx closes the stream, which is how the modern
// era cancels. A non-2xx answer holding a JSON-RPC error (400 -32020 or
// -32022, 404 -32601, ...) is returned as the response with the upstream's
// HTTP status in Status, so the client can be answered with the same.
func (c *modernConn) RoundTrip(ctx context.Context, req *core.Message, related upstream.Related) (*core.Message, error) {
	if req.Kind != core.KindRequest {
		return nil, errors.New("httpup: RoundTrip takes a request; use Send")
	}
	if c.closed.Load() {
		return nil, fmt.Errorf("httpup: %w", upstream.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.life, cancel)
	defer stop()
	m, err := c.roundTrip(rctx, cancel, req, related)
	if err != nil {
		return nil, c.failure(ctx, err)
	}
	return m, nil
}

func (c *modernConn) roundTrip(ctx context.Context, cancel context.CancelFunc, req *core.Message, related upstream.Related) (*core.Message, error) {
	resp, err := c.doRequest(ctx, http.MethodPost, req.Raw, c.post(req))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		if m := readErrorBody(resp, req.ID); m != nil {
			c.stamp(m)
			return m, nil
		}
		return nil, readHTTPError(resp)
	}
	r := responseReader{b: &c.connBase, era: core.EraModern, cancel: cancel}
	return r.read(ctx, resp, req.ID, related)
}

// Send posts a notification (2026-07-28 defines none from client to
// server over HTTP, but extensions may). Clients send no responses in this
// era, so a response is refused.
func (c *modernConn) Send(ctx context.Context, m *core.Message) error {
	switch {
	case m.Kind == core.KindRequest:
		return errors.New("httpup: Send takes a notification; use RoundTrip")
	case m.Kind.IsResponse():
		return core.NewError(core.CodeInvalidRequest, "invalid request: clients send no responses in protocol version "+c.version)
	case c.closed.Load():
		return fmt.Errorf("httpup: %w", upstream.ErrClosed)
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.life, cancel)
	defer stop()
	resp, err := c.do(rctx, http.MethodPost, m.Raw, c.post(m))
	if err != nil {
		return c.failure(ctx, err)
	}
	defer discard(resp)
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return nil
	}
	return readHTTPError(resp)
}

// Listen does nothing: the modern era has no GET stream (change
// notifications come on a subscriptions/listen RoundTrip).
func (c *modernConn) Listen(context.Context) error { return nil }

// Close abandons in-flight requests (closing their streams). No I/O.
func (c *modernConn) Close(context.Context) error {
	if c.closed.CompareAndSwap(false, true) {
		c.kill()
	}
	return nil
}
