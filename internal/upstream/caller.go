package upstream

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

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
// routes that need it: without credentials nothing is added.
type Caller struct {
	// Principal and Tenant are the caller's identity.
	Principal, Tenant string
	// Token is the caller's validated bearer token, for a token exchange.
	// Never logged, never sent upstream as it is.
	Token string
	// Header is the client's request header, read only.
	Header http.Header
}

// LogValue keeps the token and the headers out of logs.
func (c *Caller) LogValue() slog.Value {
	return slog.GroupValue(slog.String("principal", core.Fingerprint(c.Principal)), slog.Bool("token", c.Token != ""))
}

type callerKey struct{}

// WithCaller returns a ctx carrying c.
func WithCaller(ctx context.Context, c *Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerOf is the Caller in ctx; nil when none.
func CallerOf(ctx context.Context) *Caller {
	c, _ := ctx.Value(callerKey{}).(*Caller)
	return c
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
