package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const keyHash = "3f4c6b1e0a9d8c7b6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa00"

// TestAuthProblems: one fixture per auth problem with its exact message.
func TestAuthProblems(t *testing.T) {
	oauth := func(extra string) string {
		return "auth:\n  oauth:\n    issuer: https://idp.example.com\n    jwks_url: https://idp.example.com/jwks\n    audience: https://gw.example.com/mcp\n" + extra + oneRoute
	}
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"nothing to authenticate with", "auth: {anonymous: false}\n" + oneRoute,
			[]string{"auth: neither api_keys nor oauth is set and anonymous is false: every request would be refused; configure credentials, or write anonymous: true (line 1)"}},
		{"api key problems", "auth:\n  api_keys:\n    - {key_sha256: nope, principal: a}\n    - {key_sha256: mcpg_abc, principal: b}\n    - {principal: c}\n    - {key_sha256: " + keyHash + "}\n    - {key_sha256: " + strings.ToUpper(keyHash) + ", principal: 'x#y', groups: [''], scopes: ['a b']}\n    - {key_sha256: " + keyHash[:63] + "1, principal: anonymous}\n" + oneRoute,
			[]string{
				"auth.api_keys[0].key_sha256: want 64 hex characters (a SHA-256), got 4 characters (line 3)",
				"auth.api_keys[1].key_sha256: this is a key, not its SHA-256: never write the key itself in the file (`mcpgate key new` prints the entry to write) (line 4)",
				"auth.api_keys[2].key_sha256: required: the key's SHA-256 in hex (`mcpgate key new` prints a key and this entry) (line 5)",
				"auth.api_keys[3].principal: required: who the key stands for (line 6)",
				"auth.api_keys[4].key_sha256: same key as auth.api_keys[3] (line 7)",
				"auth.api_keys[4].principal: must not contain '#', which separates the issuer from the subject in OAuth principals (line 7)",
				"auth.api_keys[4].groups[0]: empty group (line 7)",
				`auth.api_keys[4].scopes[0]: want a scope token (printable ASCII, no spaces, quotes or backslashes), got "a b" (line 7)`,
				`auth.api_keys[5].principal: "anonymous" is the principal of clients without credentials (line 8)`,
			}},
		{"oauth URLs", "auth:\n  oauth:\n    issuer: http://idp.example.com\n    jwks_url: ftp://idp/jwks\n    audience: gw.example.com\n" + oneRoute,
			[]string{
				`auth.oauth.issuer: want https (http only to a loopback host), got "http://idp.example.com" (line 3)`,
				`auth.oauth.jwks_url: want an https URL, got "ftp://idp/jwks" (line 4)`,
				`auth.oauth.audience: want an absolute http(s) URL without fragment (the route's URL, e.g. https://gw.example.com/mcp), got "gw.example.com" (line 5)`,
			}},
		{"oauth required fields", "auth:\n  oauth: {principal_claim: ' sub'}\n" + oneRoute,
			[]string{
				"auth.oauth.issuer: required (line 2)",
				"auth.oauth.jwks_url: required (line 2)",
				"auth.oauth.audience: required: this gateway's resource identifier, the URL clients reach the route at (e.g. https://gw.example.com/mcp) (line 2)",
				`auth.oauth.principal_claim: want a claim name, got " sub" (line 2)`,
			}},
		{"issuer with a query", "auth:\n  oauth:\n    issuer: https://idp.example.com/?x=1\n    jwks_url: http://127.0.0.1:9/jwks\n    audience: https://gw.example.com/mcp#frag\n" + oneRoute,
			[]string{
				`auth.oauth.issuer: an issuer identifier has no query or fragment, got "https://idp.example.com/?x=1" (line 3)`,
				`auth.oauth.audience: want an absolute http(s) URL without fragment (the route's URL, e.g. https://gw.example.com/mcp), got "https://gw.example.com/mcp#frag" (line 5)`,
			}},
		{"scope rules", oauth("  scopes:\n    'tools/call': []\n    ':x': [a]\n    'tools/list': ['a\"b']\n"),
			[]string{
				"auth.scopes.tools/call: list the scopes the messages need (line 7)",
				`auth.scopes.:x: want METHOD or METHOD:NAME (tools/call, tools/call:deploy_*, *), got ":x" (line 8)`,
				`auth.scopes.tools/list[0]: want a scope token (printable ASCII, no spaces, quotes or backslashes), got "a\"b" (line 9)`,
			}},
		{"scopes without credentials", "auth: {anonymous: true, scopes: {'*': [a]}}\n" + oneRoute,
			[]string{"auth.scopes.*: scopes need credentials that carry them: configure api_keys or oauth (line 1)"}},
		{"route under the metadata path", "auth: {anonymous: true}\nroutes:\n  - path: /.well-known/oauth-protected-resource/mcp\n    upstream: {stdio: {command: sh}}\n",
			[]string{"routes[0].path: /.well-known/oauth-protected-resource is where mcpgate serves the OAuth Protected Resource Metadata; choose another path (line 3)"}},
		{"beyond loopback without auth", "listeners: [{address: '0.0.0.0:8080'}]\n" + oneRoute,
			[]string{"listeners[0].address: 0.0.0.0:8080 listens beyond loopback and no auth is configured: every client would be anonymous. Configure auth (api_keys or oauth), or write `auth: {anonymous: true}` to serve anonymous clients on purpose (line 1)"}},
		{"beyond loopback, one route without auth", "listeners: [{address: ':8080'}]\nroutes:\n  - path: /a\n    upstream: {stdio: {command: sh}}\n    auth: {anonymous: true}\n  - path: /b\n    upstream: {stdio: {command: sh}}\n",
			[]string{"listeners[0].address: :8080 listens beyond loopback and route(s) b have no auth (and there is no top-level auth): every client would be anonymous. Configure auth (api_keys or oauth), or write `auth: {anonymous: true}` to serve anonymous clients on purpose (line 1)"}},
		{"route block checked", "routes:\n  - path: /a\n    upstream: {stdio: {command: sh}}\n    auth: {api_keys: [{key_sha256: x, principal: p}]}\n",
			[]string{"routes[0].auth.api_keys[0].key_sha256: want 64 hex characters (a SHA-256), got 1 characters (line 4)"}},
		{"unknown field", "auth: {anonymus: true}\n" + oneRoute,
			[]string{`auth.anonymus: unknown field; did you mean "anonymous"? (line 1)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadBytes([]byte(tt.in))
			var cerr *Error
			var got []string
			if errors.As(err, &cerr) {
				for _, p := range cerr.Problems {
					got = append(got, p.Error())
				}
			} else if err != nil {
				got = []string{err.Error()}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAuthAccepted: what a valid auth looks like, its defaults, the
// route's block replacing the top level's, and where anonymous is allowed.
func TestAuthAccepted(t *testing.T) {
	for name, in := range map[string]string{
		"loopback without auth":            oneRoute,
		"localhost without auth":           "listeners: [{address: 'localhost:8080'}, {address: '[::1]:8080'}]\n" + oneRoute,
		"beyond loopback, anonymous":       "listeners: [{address: '0.0.0.0:8080'}]\nauth: {anonymous: true}\n" + oneRoute,
		"beyond loopback, every route":     "listeners: [{address: '0.0.0.0:8080'}]\nroutes:\n  - path: /a\n    upstream: {stdio: {command: sh}}\n    auth: {api_keys: [{key_sha256: " + keyHash + ", principal: p}]}\n",
		"oauth over loopback http (tests)": "auth:\n  oauth: {issuer: 'http://127.0.0.1:9000', jwks_url: 'http://localhost:9000/jwks', audience: 'http://127.0.0.1:8080/mcp', required_scopes: [mcp:tools]}\n  scopes: {'tools/call:deploy_*': [mcp:admin], '*': [mcp:tools]}\n" + oneRoute,
	} {
		cfg, err := LoadBytes([]byte(in))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if name == "oauth over loopback http (tests)" && cfg.Auth.OAuth.PrincipalClaim != "sub" {
			t.Errorf("principal_claim default %q", cfg.Auth.OAuth.PrincipalClaim)
		}
	}
	cfg, err := LoadBytes([]byte("auth: {anonymous: true}\nroutes:\n  - path: /a\n    upstream: {stdio: {command: sh}}\n  - path: /b\n    upstream: {stdio: {command: sh}}\n    auth: {api_keys: [{key_sha256: " + keyHash + ", principal: p}]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RouteAuth(0) != cfg.Auth || cfg.RouteAuth(1) != cfg.Routes[1].Auth || cfg.RouteAuth(0).Credentials() || !cfg.RouteAuth(1).Credentials() {
		t.Error("RouteAuth: a route's own block replaces the top level's")
	}
}
