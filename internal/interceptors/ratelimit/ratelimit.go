package ratelimit

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/limits"
)

// New returns the request rate interceptor. With a switched-off limiter
// (see [limits.Off]) it returns nil: the stage is left out of the chain and
// costs nothing.
//
// A refusal ([limits.ErrLimited], [limits.ErrTooManyKeys]) answers 429 with
// Retry-After. Any other error means a shared limiter could not decide
// (its store is unreachable, and the gateway runs fail-closed): the
// request is refused with 503 and a short Retry-After, not forwarded
// unchecked.
func New(l limits.Limiter) core.Interceptor {
	if limits.Off(l) {
		return nil
	}
	return func(next core.Handler) core.Handler {
		return func(ctx context.Context, m *core.Message) (*core.Message, error) {
			if m.Kind != core.KindRequest || m.Direction != core.ClientToServer || m.Session == nil {
				return next(ctx, m)
			}
			retry, err := l.Admit(ctx, Key(m.Session), time.Now())
			if err != nil {
				return nil, refusal(retry, err)
			}
			return next(ctx, m)
		}
	}
}

func refusal(retry time.Duration, err error) *core.Error {
	if limits.Refused(err) {
		secs := limits.RetryAfterSeconds(retry)
		e := core.NewError(core.CodeRateLimited, "request rate limit exceeded; retry after "+secs+"s")
		e.Header = http.Header{"Retry-After": {secs}}
		return e
	}
	e := core.NewError(core.CodeInternalError, "request rate limit unavailable (its store cannot be reached); retry shortly").
		WithStatus(http.StatusServiceUnavailable).Wrap(err)
	e.Header = http.Header{"Retry-After": {"1"}}
	return e
}

// Key is what a session's requests are counted under: its principal
// within its tenant (core.PrincipalKey), or its client address when the
// principal is anonymous.
func Key(s *core.SessionInfo) string {
	if s.Principal != "" && s.Principal != "anonymous" {
		return "principal:" + core.PrincipalKey(s.Tenant, s.Principal)
	}
	host, _, err := net.SplitHostPort(s.RemoteAddr)
	if err != nil {
		host = s.RemoteAddr
	}
	return "address:" + host
}
