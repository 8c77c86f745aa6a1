package httpup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/mcpgate/mcpgate/internal/upstream"
)

// Check sends server/discover, as Probe does but each time and without
// caching or tapping: any HTTP answer below 500 (a result, a JSON-RPC
// error, 401, 403, 404, 405 from a server without the method) means the
// server is there; a transport failure, no answer within ctx, or a 5xx
// means it is not. A credential the gateway cannot get for the check
// (per-principal credentials, no principal) is not the server's fault:
// the check passes without a request.
func (u *Upstream) Check(ctx context.Context) error {
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

var _ upstream.Checker = (*Upstream)(nil)
