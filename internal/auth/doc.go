// Package auth establishes who a request comes from, before the gateway
// looks up or admits any session, from the configuration's auth blocks
// (config.Auth: the top level's, or a route's own):
//
//   - API keys: Authorization: Bearer <key>, the key looked up by its
//     SHA-256 (the file holds only that; NewKey and HashKey make a key and
//     its entry for `mcpgate key new`).
//   - OAuth 2.1 resource server: JWT access tokens signed by the issuer's
//     keys (JWKS, fetched, cached, refreshed, and fetched again, rate
//     limited, for an unknown kid), asymmetric algorithms only, iss
//     exact, aud containing the route's resource identifier, exp/nbf/iat
//     with 30 s of skew, required scopes. The principal is the issuer,
//     "#" and the subject, so a refreshed token continues the session.
//     Validations are cached by the token's hash for at most a minute.
//   - Anonymous callers where the block says anonymous: true; presented
//     credentials must still be valid.
//
// Refusals are JSON-RPC errors with the status and WWW-Authenticate
// challenge of RFC 6750 and RFC 9728 (see challenge.go); ServeMetadata
// serves the Protected Resource Metadata the challenges point at. Stage is
// the route's auth pipeline stage, the per-message scopes of auth.scopes.
//
//	a, err := auth.New(cfg, auth.Options{Logger: log}) // nil without credentials
//	frontendOpts.Authenticate = a.Authenticate
//	stages = append(stages, a.Stage(route.Name))
//
// The package never imports the frontend: Authenticate has the shape of
// frontend.Authenticator, over core.Identity.
package auth
