package frontend

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"github.com/mcpgate/mcpgate/internal/pipeline"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/sessionid"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// SessionHeader carries the modern-era session key mcpgate issues, on the
// response to the request that created the session. A modern client may
// echo it to keep its requests in that session; requests without it share
// the route's session for their client address (see modernsession.go).
const SessionHeader = "Mcpgate-Session"

// Era values for Route.Clients.
const (
	EraAuto   = "auto"
	EraLegacy = "legacy"
	EraModern = "modern"
)

// Route is one MCP endpoint path and its upstream: configuration only.
// The frontend serves a copy of each Route it is given (New, SwapRoutes),
// with its compiled chains and the route's runtime state (routes.go); the
// caller's value is not kept or changed.
type Route struct {
	Name string
	Path string
	// Clients says which clients the route serves ("auto": both eras,
	// "legacy", "modern"). The upstream's own era is the bridge's concern
	// (upstream/bridge): the frontend serves each client in its era.
	Clients  string
	Upstream upstream.Upstream
	// Stages are the interceptors for this route, ordered by pipeline.Order.
	Stages []pipeline.Stage
	// RequestTimeout bounds one request's round trip. If zero, 5 minutes.
	RequestTimeout time.Duration
	// IdleTimeout ends idle sessions. If zero, the session manager's default.
	IdleTimeout time.Duration
	// TTL ends sessions this long after creation. If zero, the manager's default.
	TTL time.Duration
	// Cap bounds the route's live sessions; zero Max means none.
	Cap session.Cap
	// RetryTools are tools safe to call again after the upstream lost its
	// session mid-call.
	RetryTools []string
	// Local marks an upstream that lives in this replica (a stdio process):
	// its sessions cannot be taken over by another replica from a shared
	// store.
	Local bool
	// TrustAnnotations lets readOnlyHint/idempotentHint from the upstream's
	// tools/list mark tools safe to retry.
	TrustAnnotations bool
	// Caller marks an upstream that reads the caller of each request
	// (upstream.CallerOf: principal, validated token, request headers),
	// as per-principal upstream credentials do: the frontend then puts it
	// in the contexts it opens sessions and calls the upstream with.
	// False adds nothing, at no cost.
	Caller bool

	// chain is the route's compiled chain (both directions, the stages' state and observers), and state its
	// runtime state, shared by every version of the route with this name
	// and upstream; both are set on the frontend's copy only.
	chain *pipeline.Chain
	state *routeState
	// gen is the generation of the table this copy belongs to.
	gen uint64
}

// Options configure the frontend.
type Options struct {
	// Logger. If nil, a discard logger is used.
	Logger *slog.Logger
	// Sessions is the session manager. Required.
	Sessions *session.Manager
	// MaxBodyBytes caps a POST body (413 beyond). If zero, 4 MiB.
	MaxBodyBytes int64
	// KeepAlive is the SSE keep-alive comment interval. If zero, 15s.
	KeepAlive time.Duration
	// StreamAfter switches a slow response to SSE. If zero, 5s.
	StreamAfter time.Duration
	// WriteTimeout bounds each write to a client. If zero, 30s.
	WriteTimeout time.Duration
	// ServerRequestBacklog bounds server messages kept for a session whose
	// client has no stream open to receive them. If zero, 256.
	ServerRequestBacklog int
	// Creation are the session creation rate limits; nil windows are off.
	Creation CreationLimits
	// IDs mints and verifies session ids; nil mints plain random ids.
	IDs *sessionid.Minter
	// StoreFailOpen keeps serving when the store is unreachable: new
	// sessions live only here, unknown ids are unknown. The default (false)
	// fails closed: 503 with Retry-After until the store answers again.
	StoreFailOpen bool
	// StoreErrors, if not nil, is told of every store call that failed,
	// by operation ("put", "get", "touch", "delete", "publish", "admit"),
	// where the failure is handled and logged (for metrics).
	StoreErrors func(op string)
	// ForwardErrors, if not nil, is told of every request for a session
	// another replica owns that failed on its way there, by reason
	// ("unreachable", "broken", "store"; see metrics.ClusterMetrics),
	// where the failure is logged (hop_forward_failed).
	ForwardErrors func(reason string)
	// Observe, if not nil, sees every refusal made before a chain ran
	// (pipeline.Refused), whatever the route: the gateway-wide observer.
	// The chain of the route a request was for sees it too.
	Observe func(ctx context.Context, ev *pipeline.Event)
	// Authenticate establishes the identity of every request before it is
	// routed to a session or admitted to a new one; an error refuses the
	// request. Nil: every request is anonymous (AnonymousIdentity).
	Authenticate Authenticator
	// ResumeSessionBytes and ResumeTotalBytes bound the SSE events kept
	// for Last-Event-ID, per session and in all. If zero, 1 MiB and 64 MiB.
	ResumeSessionBytes, ResumeTotalBytes int64
}

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = 4 << 20
	}
	if o.KeepAlive == 0 {
		o.KeepAlive = 15 * time.Second
	}
	if o.StreamAfter == 0 {
		o.StreamAfter = 5 * time.Second
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = 30 * time.Second
	}
	if o.ServerRequestBacklog == 0 {
		o.ServerRequestBacklog = 256
	}
	if o.ResumeSessionBytes == 0 {
		o.ResumeSessionBytes = 1 << 20
	}
	if o.ResumeTotalBytes == 0 {
		o.ResumeTotalBytes = 64 << 20
	}
}

// ListenerPolicy are the per-listener checks against DNS rebinding and
// cross-origin browsers.
type ListenerPolicy struct {
	// Loopback is true when the listener is bound to a loopback address.
	Loopback bool
	// AllowedHosts and AllowedOrigins: see config.Listener.
	AllowedHosts   []string
	AllowedOrigins []string
	// TrustedProxies are the peers whose Forwarded / X-Forwarded-For
	// headers name the client's address (see identity.go); empty: those
	// headers are ignored.
	TrustedProxies []netip.Prefix
}
