// Package admin is the control plane as an MCP server: the tools and
// resources an operator's MCP client (an IDE, an agent, the Inspector, or
// `mcpgate ctl`) uses to list and end sessions, read, validate, apply and
// roll back the configuration, and watch health. It is served on the
// admin listener at /mcp, in both protocol eras, with go-sdk's server.
//
// Every request authenticates with an operator key (admin.mcp.api_keys);
// the key's role decides what its tools may do. A legacy session is bound
// to the key that opened it: its id carries a tag of the key, and another
// key presenting it gets 404, as for an unknown session.
package admin

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/auth"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/gateway"
	"github.com/mcpgate/mcpgate/internal/logs"
)

// Options configure the admin server.
type Options struct {
	// Gateway is what the tools operate on. Required.
	Gateway *gateway.Gateway
	// Logger logs every action (admin_action) with the operator's
	// principal. Nil: discarded.
	Logger *slog.Logger
	// LogLevel is the gateway's log level, which log_level_set changes.
	// Nil: log_level_set refuses.
	LogLevel *slog.LevelVar
	// LogLevels are the components' levels (log.levels), which
	// log_level_set with a component changes. Nil: only the gateway's
	// level can change.
	LogLevels *logs.Levels
}

// Server is the admin MCP endpoint, an http.Handler.
type Server struct {
	opts Options
	log  *slog.Logger
	// tagKey makes the tags that bind legacy session ids to keys; it is
	// new for every process, so ids do not outlive the process (nor do
	// go-sdk's sessions).
	tagKey [32]byte

	legacy, modern http.Handler

	mu      sync.Mutex
	servers map[string]*mcp.Server // by key hash
	watch   *watcher
}

// New builds the admin server. Close stops its resource watcher.
func New(opts Options) *Server {
	s := &Server{opts: opts, log: opts.Logger, servers: map[string]*mcp.Server{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	_, _ = rand.Read(s.tagKey[:])
	get := func(r *http.Request) *mcp.Server {
		op, _ := r.Context().Value(operatorKey{}).(*operator)
		if op == nil {
			return nil
		}
		return s.server(op)
	}
	s.legacy = mcp.NewStreamableHTTPHandler(get, &mcp.StreamableHTTPOptions{JSONResponse: true, SessionTimeout: sessionTimeout})
	s.modern = mcp.NewStreamableHTTPHandler(get, &mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: true})
	s.watch = newWatcher(s)
	return s
}

// Close stops the watcher that notifies subscribers of changed resources.
func (s *Server) Close() { s.watch.stop() }

// operator is who a request authenticated as.
type operator struct {
	hash      string // the key's SHA-256, hex
	principal string
	role      string
	tag       string // the prefix of the legacy session ids of this key
}

type operatorKey struct{}

// rank orders the roles: each may do what the ones below it may.
func rank(role string) int {
	switch role {
	case config.RoleAdmin:
		return 3
	case config.RoleOperator:
		return 2
	case config.RoleViewer:
		return 1
	}
	return 0
}

// ServeHTTP authenticates the request, checks that a session it names was
// opened with the same key, and hands it to go-sdk: the stateless handler
// for 2026-07-28 requests, the session handler for the dated versions.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.opts.Gateway.Config().Admin.MCP.Enabled {
		http.NotFound(w, r) // admin.mcp.enabled may change with a reload
		return
	}
	op, e := s.authenticate(r)
	if e != nil {
		writeError(w, e)
		return
	}
	if id := r.Header.Get("Mcp-Session-Id"); id != "" && !strings.HasPrefix(id, op.tag) {
		writeError(w, core.NewError(core.CodeSessionNotFound, "session not found"))
		return
	}
	r = r.WithContext(context.WithValue(r.Context(), operatorKey{}, op))
	if v := r.Header.Get("MCP-Protocol-Version"); v >= core.Version20260728 {
		s.modern.ServeHTTP(w, r)
		return
	}
	s.legacy.ServeHTTP(w, r)
}

// authenticate finds the operator key of the request's bearer credential
// among admin.mcp.api_keys as they are now (keys change with a reload).
func (s *Server) authenticate(r *http.Request) (*operator, *core.Error) {
	challenge := func(msg string) *core.Error {
		e := core.NewError(core.CodeUnauthorized, msg)
		e.Header = http.Header{"Www-Authenticate": {`Bearer realm="mcpgate-admin"`}}
		return e
	}
	h := r.Header.Values("Authorization")
	if len(h) != 1 {
		return nil, challenge("unauthorized: the admin endpoint needs an operator key (Authorization: Bearer <key>)")
	}
	key, ok := strings.CutPrefix(h[0], "Bearer ")
	if !ok || key == "" {
		return nil, challenge("unauthorized: the admin endpoint needs an operator key (Authorization: Bearer <key>)")
	}
	sum := auth.HashKey(key)
	mc := s.opts.Gateway.Config().Admin.MCP
	for _, k := range mc.APIKeys {
		if hmac.Equal([]byte(strings.ToLower(k.KeySHA256)), []byte(sum)) {
			principal := k.Principal
			if principal == "" {
				principal = "admin:" + sum[:8]
			}
			return &operator{hash: sum, principal: principal, role: k.Role, tag: s.tag(sum, k.Role)}, nil
		}
	}
	if mc.RoleClaim == "" || strings.Count(key, ".") != 2 {
		return nil, challenge("unauthorized: unknown operator key")
	}
	// An OAuth access token of the gateway's issuer, with a role claim.
	id, e := s.opts.Gateway.AuthenticateOperator(r)
	if e != nil {
		return nil, e
	}
	role := roleOf(id.Claims[mc.RoleClaim])
	if role == "" {
		return nil, core.NewError(core.CodeForbidden, "forbidden: the token's "+strconv.Quote(mc.RoleClaim)+" claim names no role of the admin server (viewer, operator, admin)")
	}
	// Sessions are bound to the principal and role, not the token, so a
	// refreshed token keeps its session.
	ps := auth.HashKey("oauth\x00" + id.Principal)
	return &operator{hash: ps, principal: id.Principal, role: role, tag: s.tag(ps, role)}, nil
}

// roleOf is the highest admin role a claim names: a string, or a list of
// strings.
func roleOf(claim any) string {
	best := ""
	consider := func(v any) {
		if s, ok := v.(string); ok && rank(s) > rank(best) {
			best = s
		}
	}
	switch c := claim.(type) {
	case []any:
		for _, v := range c {
			consider(v)
		}
	default:
		consider(c)
	}
	return best
}

// tag is the prefix of the legacy session ids opened with the key whose
// hash is sum in role: a key whose role changes does not keep its
// sessions.
func (s *Server) tag(sum, role string) string {
	m := hmac.New(sha256.New, s.tagKey[:])
	m.Write([]byte(sum + "\x00" + role))
	return hex.EncodeToString(m.Sum(nil)[:8]) + "."
}

// server is the MCP server of op's key (made once per key and role):
// its tools act as op.
func (s *Server) server(op *operator) *mcp.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := op.hash + "/" + op.role
	if srv := s.servers[id]; srv != nil {
		return srv
	}
	srv := mcp.NewServer(&mcp.Implementation{Name: "mcpgate-admin", Version: "1"}, &mcp.ServerOptions{
		GetSessionID: func() string { return op.tag + rand.Text() },
		SubscribeHandler: func(_ context.Context, r *mcp.SubscribeRequest) error {
			return s.watch.subscribe(r.Params.URI)
		},
		UnsubscribeHandler: func(_ context.Context, r *mcp.UnsubscribeRequest) error {
			s.watch.unsubscribe(r.Params.URI)
			return nil
		},
		Instructions: "mcpgate's control plane: list and end sessions, read and change the configuration, watch health.",
	})
	t := &tools{s: s, op: op}
	t.register(srv)
	addResources(srv, s)
	s.servers[id] = srv
	return srv
}

// each calls fn with every MCP server made so far.
func (s *Server) each(fn func(*mcp.Server)) {
	s.mu.Lock()
	list := make([]*mcp.Server, 0, len(s.servers))
	for _, srv := range s.servers {
		list = append(list, srv)
	}
	s.mu.Unlock()
	for _, srv := range list {
		fn(srv)
	}
}

// writeError answers a request refused before go-sdk saw it: the error's
// status and headers, and a JSON-RPC error without an id (the body was
// not read).
func writeError(w http.ResponseWriter, e *core.Error) {
	for k, v := range e.Header {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.HTTPStatus())
	_, _ = w.Write(core.AppendErrorResponse(nil, "", e))
}
