package ratelimit

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/limits"
)

// New returns the request rate interceptor. With a nil limiter it returns
// nil: the stage is left out of the chain and costs nothing.
func New(b *limits.Buckets) core.Interceptor {
	if b == nil {
		return nil
	}
	return func(next core.Handler) core.Handler {
		return func(ctx context.Context, m *core.Message) (*core.Message, error) {
			if m.Kind != core.KindRequest || m.Direction != core.ClientToServer || m.Session == nil {
				return next(ctx, m)
			}
			if ok, retry := b.Allow(Key(m.Session), time.Now()); !ok {
				secs := limits.RetryAfterSeconds(retry)
				e := core.NewError(core.CodeRateLimited, "request rate limit exceeded; retry after "+secs+"s")
				e.Header = http.Header{"Retry-After": {secs}}
				return nil, e
			}
			return next(ctx, m)
		}
	}
}

// Key is what a session's requests are counted under: its principal, or
// its client address when the principal is anonymous.
func Key(s *core.SessionInfo) string {
	if s.Principal != "" && s.Principal != "anonymous" {
		return "principal:" + s.Principal
	}
	host, _, err := net.SplitHostPort(s.RemoteAddr)
	if err != nil {
		host = s.RemoteAddr
	}
	return "address:" + host
}
