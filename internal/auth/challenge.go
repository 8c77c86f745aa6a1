package auth

import (
	"net/http"
	"strings"

	"github.com/mcpgate/mcpgate/internal/core"
)

// Refusals: every one is a JSON-RPC error (the frontend writes the body)
// with its HTTP status and a WWW-Authenticate challenge (RFC 6750 section
// 3, RFC 9728 section 5.1):
//
//	401 Bearer resource_metadata="…", scope="…"            no credentials
//	401 Bearer …, error="invalid_token", error_description  a bad token or key
//	400 Bearer …, error="invalid_request"                  a token in the query, two Authorization headers
//	403 Bearer …, error="insufficient_scope", scope="…"    a scope is missing
//
// resource_metadata is there when the route is an OAuth resource server;
// an API-key-only route names realm="mcpgate" instead.

// OAuth error codes of the challenge (RFC 6750 section 3.1).
const (
	errInvalidRequest    = "invalid_request"
	errInvalidToken      = "invalid_token"
	errInsufficientScope = "insufficient_scope"
)

// challenge is what a route's refusals carry.
type challenge struct {
	// metadataURL is the route's Protected Resource Metadata, "" when the
	// route has no OAuth.
	metadataURL string
	// scopes are the scopes every request needs (oauth.required_scopes),
	// named in a 401 so that a client asks for them at once.
	scopes []string
}

// header is the WWW-Authenticate value: Bearer and its parameters.
func (c *challenge) header(code, desc string, scopes []string) http.Header {
	var b strings.Builder
	b.WriteString("Bearer ")
	n := 0
	add := func(k, v string) {
		if n > 0 {
			b.WriteString(", ")
		}
		n++
		b.WriteString(k)
		b.WriteString(`="`)
		b.WriteString(v)
		b.WriteByte('"')
	}
	if c.metadataURL != "" {
		add("resource_metadata", c.metadataURL)
	} else {
		add("realm", "mcpgate")
	}
	if len(scopes) > 0 {
		add("scope", strings.Join(scopes, " "))
	}
	if code != "" {
		add("error", code)
		if desc != "" {
			add("error_description", quotable(desc))
		}
	}
	return http.Header{"Www-Authenticate": {b.String()}}
}

// quotable keeps the characters error_description may hold (RFC 6750
// section 3: %x20-21 / %x23-5B / %x5D-7E).
func quotable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return ' '
		}
		return r
	}, s)
}

// missing refuses a request without credentials where they are required.
func (c *challenge) missing() *core.Error {
	e := core.NewError(core.CodeUnauthorized, "unauthorized: this endpoint requires credentials (Authorization: Bearer <token>)").WithStatus(http.StatusUnauthorized)
	e.Header = c.header("", "", c.scopes)
	return e
}

// invalid refuses a credential that was presented and failed; cause is
// kept for errors.Is and logs, never sent.
func (c *challenge) invalid(desc string, cause error) *core.Error {
	e := core.NewError(core.CodeUnauthorized, "unauthorized: "+desc).WithStatus(http.StatusUnauthorized).Wrap(cause)
	e.Header = c.header(errInvalidToken, desc, nil)
	return e
}

// notBearer refuses credentials of a scheme mcpgate does not take: a
// challenge without an error code (RFC 6750 section 3.1: the client may
// not know which method to use).
func (c *challenge) notBearer() *core.Error {
	e := core.NewError(core.CodeUnauthorized, "unauthorized: only Bearer credentials are accepted (Authorization: Bearer <token>)").WithStatus(http.StatusUnauthorized)
	e.Header = c.header("", "", c.scopes)
	return e
}

// malformedRequest refuses a request that carries its credentials in a
// way the gateway does not read (RFC 6750 invalid_request, 400).
func (c *challenge) malformedRequest(desc string) *core.Error {
	e := core.NewError(core.CodeInvalidRequest, "bad request: "+desc).WithStatus(http.StatusBadRequest)
	e.Header = c.header(errInvalidRequest, desc, nil)
	return e
}

// insufficient refuses a caller whose credential lacks scopes (403), or,
// for a caller that presented none, asks for credentials with them (401).
func (c *challenge) insufficient(anonymous bool, scopes []string, desc string) *core.Error {
	if anonymous {
		e := core.NewError(core.CodeUnauthorized, "unauthorized: "+desc+"; present credentials that grant it").WithStatus(http.StatusUnauthorized)
		e.Header = c.header("", "", scopes)
		return e
	}
	e := core.NewError(core.CodeForbidden, "forbidden: "+desc).WithStatus(http.StatusForbidden).
		WithData(map[string]any{"error": errInsufficientScope, "scope": strings.Join(scopes, " ")})
	e.Header = c.header(errInsufficientScope, desc, scopes)
	return e
}
