// Package callctx carries what one client call tells the packages below
// the frontend — the caller an upstream credential is for, where an
// upstream's reconnection hint goes — in one context allocation.
//
// A context.WithValue per value costs an allocation each (two when the
// value is boxed) on every proxied call. Instead the frontend's per-call
// context answers Key with a *Values it holds itself, and the packages
// that need a value look it up with Of. Contexts built the ordinary way
// (WithValues, or upstream.WithCaller) work as well, at the ordinary cost.
//
//	v := callctx.Of(ctx)
//	if v != nil && v.Hint != nil {
//		v.Hint.RetryHint(ms)
//	}
//
// The package imports nothing of the module but core, so every package may
// use it.
package callctx

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/mcpgate/mcpgate/internal/core"
)

// Caller is what the gateway knows of the client behind one request, for
// an upstream that sends the caller's own credentials. The frontend puts
// it in the contexts it calls the upstream with, only on routes that need
// it. (upstream.Caller is this type.)
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

// RetryHinter receives the reconnection delay (an SSE retry field, in
// milliseconds) the server names on a request's stream, so the gateway can
// give its own client the same hint. (upstream.RetryHinter is this type.)
type RetryHinter interface {
	RetryHint(ms int)
}

// Values are one call's values. A context answering Key returns its own
// *Values; nothing may modify them once the context is in use.
type Values struct {
	// Caller is the caller whose credential the upstream sends; nil on
	// routes without per-caller credentials.
	Caller *Caller
	// Hint receives the upstream's reconnection delays; nil for none.
	Hint RetryHinter
}

// Key is the context key a per-call context answers with its *Values.
type Key struct{}

// Of returns the Values ctx carries, or nil.
func Of(ctx context.Context) *Values {
	v, _ := ctx.Value(Key{}).(*Values)
	return v
}

// WithValues returns ctx carrying v (one context.WithValue), for callers
// that have no per-call context of their own.
func WithValues(ctx context.Context, v *Values) context.Context {
	return context.WithValue(ctx, Key{}, v)
}
