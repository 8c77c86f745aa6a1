package gateway

import (
	"net/http"

	"github.com/mcpgate/mcpgate/internal/auth"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/core"
)

// Authentication: the configuration's auth blocks become one
// auth.Authenticator (nil when they configure no credentials: every
// request is anonymous at no cost), which the frontend calls on every
// request before any session is looked up (identity before admission).
// A reload builds a new one and swaps it in with the routes, so keys and
// issuers change without a restart; switching between no credentials and
// some needs one (the frontend's authentication step is fixed when it is
// built). Its Protected Resource Metadata is served on every client
// listener, beside the routes.

// newAuth builds the authenticator of cfg.
func (g *Gateway) newAuth(cfg *config.Config) (*auth.Authenticator, error) {
	return auth.New(cfg, auth.Options{Logger: g.log.With("component", "auth")})
}

// authenticate is the frontend's authentication step when the
// configuration has credentials: the authenticator in force.
func (g *Gateway) authenticate(r *http.Request) (core.Identity, *core.Error) {
	return g.authn.Load().Authenticate(r)
}

// withMetadata serves the Protected Resource Metadata beside next.
func (g *Gateway) withMetadata(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if auth.IsMetadataPath(r.URL.Path) {
			g.authn.Load().ServeMetadata(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// closeAuth stops the authenticator in force (its key set refreshes).
func (g *Gateway) closeAuth() {
	g.authn.Load().Close()
}

// AuthenticateOperator checks r's bearer credential with the top-level
// auth block (never a route's), for the admin server: an OAuth access
// token's identity, with its claims.
func (g *Gateway) AuthenticateOperator(r *http.Request) (core.Identity, *core.Error) {
	// A path no route can have: the top-level block decides.
	c := r.Clone(r.Context())
	c.URL.Path = "\x00operator"
	return g.authn.Load().Authenticate(c)
}
