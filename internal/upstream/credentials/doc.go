// Package credentials supplies per-principal upstream credentials (an
// [upstream.Credential]): the value of one header for an HTTP upstream, or
// of one environment variable for a stdio process, chosen for the
// principal of the request's session, failing closed.
//
// Three sources, one per route:
//
//   - a secrets file mapping principals to secrets (PerPrincipal), read
//     again when it changes;
//   - OAuth 2.0 Token Exchange (RFC 8693) of the caller's validated token
//     (TokenExchange), cached per principal until shortly before expiry,
//     one exchange at a time per principal;
//   - a header the client sends, carried to the upstream under a name of
//     its own (Forward).
//
// A principal the source has nothing for gets a *core.Error with
// core.CodeNoCredential and HTTP 403 that names the missing credential
// (never the principal, never a secret) — unless the route falls back to
// its static value (Options.Static). It never gets another principal's.
//
//	src, err := credentials.New(credentials.Options{
//		Route: "github", Name: "Authorization",
//		PerPrincipal: &credentials.PerPrincipal{File: "secrets/github.yaml", Format: "Bearer {secret}"},
//	}, logger)
//	up, err := httpup.New(httpup.Options{URL: u, Credential: src}, "github", logger)
package credentials
