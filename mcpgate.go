// Package mcpgate governs a go-sdk server's sessions in-process, or runs mcpgate.
package mcpgate

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"gopkg.in/yaml.v3"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/gateway"
	"github.com/mcpgate/mcpgate/internal/interceptors/quota"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/upstream/inproc"
)

// Handler serves an embedded go-sdk server over Streamable HTTP (both
// eras) with mcpgate's sessions. Mount it at any path.
type Handler struct {
	gw        *gateway.Gateway
	next      http.Handler
	getServer func(*http.Request) *mcp.Server
	stop      func()
	cancel    context.CancelFunc
	closed    atomic.Bool
	closeOnce sync.Once
}

// requestKey carries the request that may create a session to getServer.
type requestKey struct{}

// routePath is where the gateway's one embedded route lives.
const routePath = "/mcp"

// NewHandler serves the servers getServer returns through the gateway's
// session manager and pipeline, in both protocol eras, with no second
// process: one server session per client session (nil refuses the
// session), bounded by opts (nil: the zero Options). getServer
// gets the request that creates the session; a session restored from the
// store, or re-established, gets a request of no client (no headers), and
// so does the one call that learns which protocol eras the server speaks.
func NewHandler(getServer func(*http.Request) *mcp.Server, opts *Options) (*Handler, error) {
	if getServer == nil {
		return nil, errors.New("mcpgate: NewHandler needs a getServer")
	}
	if opts == nil {
		opts = &Options{}
	}
	cfg, err := embeddedConfig(opts)
	if err != nil {
		return nil, err
	}
	text, _ := yaml.Marshal(opts)
	h := &Handler{getServer: getServer}
	gw, err := gateway.New(cfg, gateway.Options{Logger: opts.Logger, SessionHooks: opts.Hooks.internal(), Embedded: h.server,
		Source: gateway.ConfigSource{Text: text, Parse: func(t []byte, _ *config.Config) (*config.Config, error) { return config.LoadEmbedded(t) }}})
	if err != nil {
		return nil, fmt.Errorf("mcpgate: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stop, err := gw.Embed(ctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("mcpgate: %w", err)
	}
	h.gw, h.next, h.stop, h.cancel = gw, gw.Handler(0), stop, cancel
	return h, nil
}

// server is the embedded route's factory: the creating request's server.
func (h *Handler) server(ctx context.Context, _ *core.SessionInfo) *mcp.Server {
	r, _ := ctx.Value(requestKey{}).(*http.Request)
	if r == nil {
		r = (&http.Request{Method: http.MethodPost, URL: &url.URL{Path: routePath}, Header: http.Header{}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}).WithContext(ctx)
	}
	return h.getServer(r)
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.closed.Load() {
		w.Header().Set("Retry-After", "1")
		http.Error(w, `{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"server shutting down"}}`, http.StatusServiceUnavailable)
		return
	}
	// A request that may create a session (no legacy session id) carries
	// itself to getServer; the others go through as they are.
	if r.Method == http.MethodPost && r.Header.Get("Mcp-Session-Id") == "" {
		r = r.WithContext(context.WithValue(r.Context(), requestKey{}, r))
	}
	if r.URL.Path != routePath {
		r2 := *r
		u := *r.URL
		u.Path, u.RawPath = routePath, ""
		r2.URL = &u
		r = &r2
	}
	h.next.ServeHTTP(w, r)
}

// Sessions is the number of live sessions.
func (h *Handler) Sessions() int { return h.gw.Sessions().Len() }

// Close drains in-flight requests (within server.shutdown_timeout), ends
// every session, and closes the store. Requests after Close get 503.
func (h *Handler) Close(ctx context.Context) error {
	h.closed.Store(true)
	done := make(chan struct{})
	go func() {
		// As in Run: the background work ends first, then the shutdown.
		h.closeOnce.Do(func() { h.cancel(); h.stop() })
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Session is the session a tool handler serves (SessionFromContext).
// Fields are added as mcpgate learns more of a session.
type Session struct {
	// ID is the session id the client presents: a credential, never
	// logged. LogID is its fingerprint, the session's name in logs, audit
	// records and the control plane.
	ID, LogID string
	// Principal is the authenticated caller ("anonymous" without auth);
	// Tenant its tenant, if any.
	Principal, Tenant string
	// ProtocolVersion is the client's revision; ClientName and
	// ClientVersion its clientInfo.
	ProtocolVersion, ClientName, ClientVersion string
	// RemoteAddr is the client address it was created from.
	RemoteAddr string
	// Created is when it was admitted.
	Created time.Time

	info *core.SessionInfo
}

// QuotaUsage reads the usage of every quota limit that applies to the
// session (Options.Quotas): its own budgets and its share of its
// principal's and tenant's. Nil when no quota applies. A budget kept in
// Redis costs a round trip per limit.
func (s *Session) QuotaUsage(ctx context.Context) ([]QuotaUsage, error) {
	if s == nil {
		return nil, nil
	}
	us, err := quota.UsageOf(ctx, s.info)
	out := make([]QuotaUsage, 0, len(us))
	for _, u := range us {
		q := QuotaUsage{Quota: u.Quota, Per: u.Per, Key: u.Key, Limit: u.Limit, Max: u.Max, Used: u.Used, Window: u.Window}
		if u.ResetsAt != nil {
			q.ResetsAt = *u.ResetsAt
		}
		out = append(out, q)
	}
	if len(out) == 0 {
		out = nil
	}
	return out, err
}

// QuotaUsage is one quota limit's usage as a session sees it.
type QuotaUsage struct {
	// Quota names the quota; Per is what it counts under (session,
	// principal, tenant) and Key the shared budget the session counts in
	// ("principal:acme/alice"), empty for the session's own.
	Quota, Per, Key string
	// Limit is the limit's kind: requests, tool_calls, tool:NAME,
	// result_tokens, result_bytes, concurrent.
	Limit string
	// Max is the limit in force (lowered when the session tightened it),
	// Used how much of it is spent.
	Max, Used int64
	// Window is the quota's window ("0s": the session's lifetime).
	Window string
	// ResetsAt is when the oldest counted unit leaves the window, so that
	// Used drops; zero when unknown (a lifetime budget, nothing counted,
	// a shared store).
	ResetsAt time.Time
}

func sessionOf(s *core.SessionInfo) *Session {
	if s == nil {
		return nil
	}
	return &Session{ID: s.ID, LogID: s.LogID(), Principal: s.Principal, Tenant: s.Tenant, ProtocolVersion: s.ProtocolVersion,
		ClientName: s.ClientName, ClientVersion: s.ClientVersion, RemoteAddr: s.RemoteAddr, Created: s.Created, info: s}
}

// SessionFromContext returns the session a handler of the embedded server
// runs for, or nil outside one.
func SessionFromContext(ctx context.Context) *Session { return sessionOf(inproc.SessionOf(ctx)) }

// Hooks are told of session lifecycle events. They run on the gateway's
// goroutines: they must not block.
type Hooks struct {
	Created func(s *Session)
	// Resumed: how is "restart" (restored from the store), "upstream" (a
	// new server session was made for it), "stream" (Last-Event-ID) or
	// "replica" (taken over from another replica).
	Resumed func(s *Session, how string)
	// Evicted: a full cap ended the session; Ended follows.
	Evicted func(s *Session)
	// Ended: reason is deleted, idle_timeout, ttl, evicted, shutdown, ...
	Ended func(s *Session, reason string)
}

func (h Hooks) internal() []session.Hooks {
	if h.Created == nil && h.Resumed == nil && h.Evicted == nil && h.Ended == nil {
		return nil
	}
	var s session.Hooks
	if f := h.Created; f != nil {
		s.Created = func(i *core.SessionInfo) { f(sessionOf(i)) }
	}
	if f := h.Resumed; f != nil {
		s.Resumed = func(i *core.SessionInfo, how string) { f(sessionOf(i), how) }
	}
	if f := h.Evicted; f != nil {
		s.Evicted = func(i *core.SessionInfo) { f(sessionOf(i)) }
	}
	if f := h.Ended; f != nil {
		s.Ended = func(i *core.SessionInfo, r session.Reason) { f(sessionOf(i), string(r)) }
	}
	return []session.Hooks{s}
}

// LoadOptions reads a configuration file (the binary's format) for
// NewHandler: without listeners or routes, which the embedding program
// owns. Problems are reported with their line, as mcpgate validate does.
func LoadOptions(path string) (*Options, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("mcpgate: %w", err)
	}
	cfg, err := config.LoadEmbedded(text)
	if err != nil {
		return nil, fmt.Errorf("mcpgate: %s: %w", path, err)
	}
	cfg.Routes, cfg.Listeners = nil, nil
	return optionsOf(cfg)
}

// embeddedConfig translates opts for the handler: encoded as the file
// would be and loaded by the one loader, so defaults and checks are the
// binary's.
func embeddedConfig(opts *Options) (*config.Config, error) {
	text, err := yaml.Marshal(opts)
	if err != nil {
		return nil, fmt.Errorf("mcpgate: options: %w", err)
	}
	cfg, err := config.LoadEmbedded(text)
	if err != nil {
		return nil, fmt.Errorf("mcpgate: %w", err)
	}
	return cfg, nil
}

// optionsOf is the mirror of a loaded configuration.
func optionsOf(cfg *config.Config) (*Options, error) {
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	var o Options
	if err := yaml.Unmarshal(b, &o); err != nil {
		return nil, err
	}
	return &o, nil
}
