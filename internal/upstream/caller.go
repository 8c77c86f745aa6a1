package upstream

import (
	"context"
	"errors"

	"github.com/mcpgate/mcpgate/internal/callctx"
	"github.com/mcpgate/mcpgate/internal/core"
)

// ErrCredential marks a failure to obtain the caller's own upstream
// credential (see Credential). It comes inside a *core.Error that says
// what the client gets: 403 with core.CodeNoCredential when the gateway
// has nothing for the caller, 502 when a token service failed.
var ErrCredential = errors.New("upstream: no credential for the caller")

// Caller is what the gateway knows of the client behind one request, for
// an upstream that sends the caller's own credentials (Credential). The
// frontend puts it in the contexts it calls the upstream with, only on
// routes that need it: without credentials nothing is added. It is
// callctx.Caller, so the frontend's per-call context carries it in the
// same allocation as the call's other values.
type Caller = callctx.Caller

// WithCaller returns a ctx carrying c.
func WithCaller(ctx context.Context, c *Caller) context.Context {
	v := &callctx.Values{Caller: c}
	if old := callctx.Of(ctx); old != nil {
		v.Hint = old.Hint
	}
	return callctx.WithValues(ctx, v)
}

// CallerOf is the Caller in ctx; nil when none.
func CallerOf(ctx context.Context) *Caller {
	if v := callctx.Of(ctx); v != nil {
		return v.Caller
	}
	return nil
}

// Credential supplies the upstream credential of a request's principal:
// the value of one header (HTTP) or environment variable (stdio). It must
// be safe for concurrent use.
type Credential interface {
	// Name is the header or environment variable the credential goes in.
	Name() string
	// Value is the credential for a request of session s, whose ctx may
	// carry the Caller (required when s is nil, as for a probe). Its error
	// wraps ErrCredential inside a *core.Error.
	Value(ctx context.Context, s *core.SessionInfo) (string, error)
}
