package config

import (
	"fmt"
	"net"
	"net/url"
	"sort"
	"strings"
)

// Auth is how clients authenticate, at the top level (every route) or on
// one route (routes[].auth, which replaces the top level's for that route
// as a whole). Without any, a gateway whose listeners are all on loopback
// serves anonymous clients; one listening elsewhere refuses to start
// unless anonymous: true is written.
type Auth struct {
	// Anonymous admits requests that present no credentials, as the
	// principal "anonymous". Credentials that are presented must still be
	// valid: a bad token is refused, never taken as anonymous. Default
	// false when the block is written.
	Anonymous bool `yaml:"anonymous"`
	// APIKeys are static bearer keys (Authorization: Bearer <key>), stored
	// as their SHA-256: `mcpgate key new` prints a fresh key and its entry.
	APIKeys []APIKey `yaml:"api_keys"`
	// OAuth makes the route an OAuth 2.1 resource server: JWT access
	// tokens signed by the issuer's keys (JWKS), for this audience.
	OAuth *OAuth `yaml:"oauth"`
	// Scopes are the scopes a message needs, per method or method:name
	// ("tools/call", "tools/call:deploy_*", "resources/read:file:*", "*";
	// `*` matches any run of characters). Every entry that matches a
	// message applies: its principal must hold all their scopes, else 403
	// insufficient_scope (401 for an anonymous caller).
	Scopes map[string][]string `yaml:"scopes"`
}

// APIKey is one static key and the identity it stands for.
type APIKey struct {
	// KeySHA256 is the hex SHA-256 of the key (64 characters); the key
	// itself is never written in the file.
	KeySHA256 string `yaml:"key_sha256"`
	// Principal is who the key stands for. Required.
	Principal string `yaml:"principal"`
	// Tenant and Groups are the principal's, for quotas and policies.
	Tenant string   `yaml:"tenant"`
	Groups []string `yaml:"groups"`
	// Scopes are what the key grants, for auth.scopes.
	Scopes []string `yaml:"scopes"`
}

// OAuth configures the validation of JWT access tokens (RFC 9068).
type OAuth struct {
	// Issuer is the authorization server's issuer identifier: the tokens'
	// iss, exactly; also what the Protected Resource Metadata names.
	Issuer string `yaml:"issuer"`
	// JWKSURL is where the issuer publishes its signing keys.
	JWKSURL string `yaml:"jwks_url"`
	// Audience is this gateway's resource identifier (RFC 8707): the URL
	// clients reach the route at. A token's aud must contain it.
	Audience string `yaml:"audience"`
	// PrincipalClaim names the claim that identifies the caller; the
	// principal is the issuer, "#" and its value. Default sub.
	PrincipalClaim string `yaml:"principal_claim"`
	// TenantClaim and GroupsClaim name the claims of the tenant (a
	// string) and groups (a list of strings, or one string). Default none.
	TenantClaim string `yaml:"tenant_claim"`
	GroupsClaim string `yaml:"groups_claim"`
	// RequiredScopes must all be in every token (scope or scp).
	RequiredScopes []string `yaml:"required_scopes"`
}

// DefaultPrincipalClaim is oauth.principal_claim's default.
const DefaultPrincipalClaim = "sub"

// WellKnownResource is the path prefix of the Protected Resource Metadata
// (RFC 9728) the gateway serves; no route may live under it.
const WellKnownResource = "/.well-known/oauth-protected-resource"

// RouteAuth is the authentication in force on route i: its own, or the
// top level's (nil: none configured).
func (c *Config) RouteAuth(i int) *Auth {
	if a := c.Routes[i].Auth; a != nil {
		return a
	}
	return c.Auth
}

// Credentials reports whether the block configures any credential (API
// keys or OAuth), as opposed to anonymous access only.
func (a *Auth) Credentials() bool { return a != nil && (len(a.APIKeys) > 0 || a.OAuth != nil) }

// LoopbackAddress reports whether a listener address binds loopback only
// (127.0.0.0/8, ::1, localhost); a host-less or wildcard address does not.
func LoopbackAddress(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (c *Config) authDefaults() {
	for _, a := range c.authBlocks() {
		if o := a.OAuth; o != nil && o.PrincipalClaim == "" {
			o.PrincipalClaim = DefaultPrincipalClaim
		}
	}
}

// authBlocks are the auth blocks of the file, keyed by their path.
func (c *Config) authBlocks() map[string]*Auth {
	out := map[string]*Auth{}
	if c.Auth != nil {
		out["auth"] = c.Auth
	}
	for i := range c.Routes {
		if a := c.Routes[i].Auth; a != nil {
			out[fmt.Sprintf("routes[%d].auth", i)] = a
		}
	}
	return out
}

// validateAuth checks every auth block, and that a gateway reachable
// beyond loopback does not serve anonymous clients by default.
func (c *Config) validateAuth(bad func(path, format string, args ...any)) {
	blocks := c.authBlocks()
	paths := make([]string, 0, len(blocks))
	for p := range blocks {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		validateAuthBlock(p, blocks[p], bad)
	}
	for i, r := range c.Routes {
		if strings.HasPrefix(r.Path, WellKnownResource) {
			bad(fmt.Sprintf("routes[%d].path", i), "%s is where mcpgate serves the OAuth Protected Resource Metadata; choose another path", WellKnownResource)
		}
	}
	var open []string
	for i := range c.Routes {
		if c.RouteAuth(i) == nil {
			open = append(open, c.Routes[i].Name)
		}
	}
	if len(open) == 0 {
		return
	}
	for i, l := range c.Listeners {
		if _, _, err := net.SplitHostPort(l.Address); err != nil || LoopbackAddress(l.Address) {
			continue // a malformed address is a problem of its own
		}
		what := "no auth is configured"
		if c.Auth == nil && len(open) < len(c.Routes) {
			what = fmt.Sprintf("route(s) %s have no auth (and there is no top-level auth)", strings.Join(open, ", "))
		}
		bad(fmt.Sprintf("listeners[%d].address", i),
			"%s listens beyond loopback and %s: every client would be anonymous. Configure auth (api_keys or oauth), or write `auth: {anonymous: true}` to serve anonymous clients on purpose",
			l.Address, what)
		return
	}
}

// checkKeyHash checks the key_sha256 of list[i] (at path kp in the list
// at path p): a SHA-256 in hex, not a key, not one seen before in seen.
func checkKeyHash(p, kp string, i int, hash string, seen map[string]int, bad func(path, format string, args ...any)) {
	h := strings.ToLower(hash)
	switch {
	case hash == "":
		bad(kp+".key_sha256", "required: the key's SHA-256 in hex (`mcpgate key new` prints a key and this entry)")
	case strings.HasPrefix(hash, "mcpg_"):
		bad(kp+".key_sha256", "this is a key, not its SHA-256: never write the key itself in the file (`mcpgate key new` prints the entry to write)")
	case len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "":
		bad(kp+".key_sha256", "want 64 hex characters (a SHA-256), got %d characters", len(hash))
	default:
		if j, dup := seen[h]; dup {
			bad(kp+".key_sha256", "same key as %s.api_keys[%d]", p, j)
		}
		seen[h] = i
	}
}

func validateAuthBlock(p string, a *Auth, bad func(path, format string, args ...any)) {
	if !a.Anonymous && !a.Credentials() {
		bad(p, "neither api_keys nor oauth is set and anonymous is false: every request would be refused; configure credentials, or write anonymous: true")
	}
	seen := map[string]int{}
	for i, k := range a.APIKeys {
		kp := fmt.Sprintf("%s.api_keys[%d]", p, i)
		checkKeyHash(p, kp, i, k.KeySHA256, seen, bad)
		switch {
		case k.Principal == "":
			bad(kp+".principal", "required: who the key stands for")
		case strings.EqualFold(k.Principal, "anonymous"):
			bad(kp+".principal", "%q is the principal of clients without credentials", k.Principal)
		case strings.Contains(k.Principal, "#"):
			bad(kp+".principal", "must not contain '#', which separates the issuer from the subject in OAuth principals")
		}
		for j, g := range k.Groups {
			if strings.TrimSpace(g) == "" {
				bad(fmt.Sprintf("%s.groups[%d]", kp, j), "empty group")
			}
		}
		checkScopes(kp+".scopes", k.Scopes, bad)
	}
	if o := a.OAuth; o != nil {
		op := p + ".oauth"
		checkAuthURL(op+".issuer", o.Issuer, bad)
		checkAuthURL(op+".jwks_url", o.JWKSURL, bad)
		if o.Issuer != "" && strings.ContainsAny(o.Issuer, "#?") {
			bad(op+".issuer", "an issuer identifier has no query or fragment, got %q", o.Issuer)
		}
		if o.Audience == "" {
			bad(op+".audience", "required: this gateway's resource identifier, the URL clients reach the route at (e.g. https://gw.example.com/mcp)")
		} else if u, err := url.Parse(o.Audience); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Fragment != "" || strings.Contains(o.Audience, "#") {
			bad(op+".audience", "want an absolute http(s) URL without fragment (the route's URL, e.g. https://gw.example.com/mcp), got %q", o.Audience)
		}
		for _, c := range [...]struct{ name, v string }{{"principal_claim", o.PrincipalClaim}, {"tenant_claim", o.TenantClaim}, {"groups_claim", o.GroupsClaim}} {
			if c.v != strings.TrimSpace(c.v) || (c.name == "principal_claim" && c.v == "") {
				bad(op+"."+c.name, "want a claim name, got %q", c.v)
			}
		}
		checkScopes(op+".required_scopes", o.RequiredScopes, bad)
	}
	keys := make([]string, 0, len(a.Scopes))
	for k := range a.Scopes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		sp := p + ".scopes." + k
		method, _, _ := strings.Cut(k, ":")
		if method == "" || strings.TrimSpace(k) != k {
			bad(sp, "want METHOD or METHOD:NAME (tools/call, tools/call:deploy_*, *), got %q", k)
		}
		if len(a.Scopes[k]) == 0 {
			bad(sp, "list the scopes the messages need")
		}
		checkScopes(sp, a.Scopes[k], bad)
		if !a.Credentials() {
			bad(sp, "scopes need credentials that carry them: configure api_keys or oauth")
		}
	}
}

// checkAuthURL checks an authorization server URL: https, or http to a
// loopback host (tests, development).
func checkAuthURL(path, s string, bad func(path, format string, args ...any)) {
	if s == "" {
		bad(path, "required")
		return
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		bad(path, "want an https URL, got %q", s)
		return
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !LoopbackAddress(net.JoinHostPort(u.Hostname(), "0")) {
			bad(path, "want https (http only to a loopback host), got %q", s)
		}
	default:
		bad(path, "want an https URL, got %q", s)
	}
}

// ValidScope reports whether s is a scope token (RFC 6749 section 3.3):
// printable ASCII without space, double quote or backslash.
func ValidScope(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

func checkScopes(path string, scopes []string, bad func(path, format string, args ...any)) {
	for i, s := range scopes {
		if !ValidScope(s) {
			bad(fmt.Sprintf("%s[%d]", path, i), "want a scope token (printable ASCII, no spaces, quotes or backslashes), got %q", s)
		}
	}
}
