package httpup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/mcpgate/mcpgate/internal/upstream"
)

// Check pings the upstream on a kept session when there is one (the
// legacy session that most recently initialized and is still open), else
// sends server/discover, as Probe does but each time and without caching
// or tapping: any HTTP answer below 500 (a result, a JSON-RPC
// error, 401, 403, 404, 405 from a server without the method) means the
// server is there; a transport failure, no answer within ctx, or a 5xx
// means it is not. A credential the gateway cannot get for the check
// (per-principal credentials, no principal) is not the server's fault:
// the check passes without a request.
func (u *Upstream) Check(ctx context.Context) error {
	if c := u.kept.Load(); c != nil {
		if answered, err := c.ping(ctx); answered {
			return err
		}
		u.kept.CompareAndSwap(c, nil) // gone: discover from now on
	}
	h := u.headers(true, 2)
	h[hdrProtocolVersion] = versionValue("2026-07-28")
	h[hdrMethod] = methodValue("server/discover")
	resp, err := u.do(ctx, http.MethodPost, discoverBody, h)
	if err != nil {
		if errors.Is(err, upstream.ErrCredential) {
			return nil
		}
		return fmt.Errorf("httpup: health check: %w: %w", upstream.ErrNoAnswer, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode >= 500 {
		return fmt.Errorf("httpup: health check: %w: %s", upstream.ErrNoAnswer, resp.Status)
	}
	return nil
}

// pingBody is the health check's ping; its id is the gateway's own, and
// no client request waits for it.
var pingBody = []byte(`{"jsonrpc":"2.0","id":"mcpgate-health","method":"ping"}`)

// ping sends ping in the Conn's upstream session. answered is false when
// the session cannot carry it (closed, lost, not initialized, or the
// upstream answered 404 for it), and Check falls back to discover; else
// err says whether the upstream is up, as for discover.
func (c *legacyConn) ping(ctx context.Context) (answered bool, err error) {
	sid, ver, err := c.state()
	if err != nil || sid == nil {
		return false, nil
	}
	resp, err := c.do(ctx, http.MethodPost, pingBody, c.post(sid, ver))
	if err != nil {
		if errors.Is(err, upstream.ErrCredential) {
			return false, nil
		}
		return true, fmt.Errorf("httpup: health check: %w: %w", upstream.ErrNoAnswer, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return false, nil
	case resp.StatusCode >= 500:
		return true, fmt.Errorf("httpup: health check: %w: %s", upstream.ErrNoAnswer, resp.Status)
	}
	return true, nil
}

var _ upstream.Checker = (*Upstream)(nil)
