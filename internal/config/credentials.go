package config

import (
	"net"
	"net/url"
	"strings"

	"github.com/mcpgate/mcpgate/internal/core"
)

// Credentials give each principal its own credential towards the
// upstream, failing closed: a principal without one is refused (HTTP 403,
// JSON-RPC -32016), never given another principal's, nor the route's
// static header or variable unless Fallback is "static". Exactly one of
// PerPrincipal, TokenExchange and Forward is set.
type Credentials struct {
	// PerPrincipal reads each principal's secret from a file.
	PerPrincipal *PerPrincipalCredentials `yaml:"per_principal"`
	// TokenExchange trades the client's validated token for one the
	// upstream accepts (RFC 8693). HTTP upstreams only.
	TokenExchange *TokenExchange `yaml:"token_exchange"`
	// Forward carries one named client header to one upstream header.
	// HTTP upstreams only.
	Forward *ForwardHeader `yaml:"forward"`
	// Fallback is what a principal without a credential gets: "" (the
	// default: refused) or "static" (the route's own upstream.http.headers
	// entry or stdio env variable of the same name).
	Fallback string `yaml:"fallback"`
}

// Fallback values.
const FallbackStatic = "static"

// PerPrincipalCredentials map principals to secrets kept in a file: a
// YAML mapping `principal: secret`, mode 0600 or stricter, owned by the
// gateway's user. It is read again when it changes (checked at most once
// a second while in use); a change that does not load keeps the previous
// table and is logged as credentials_reload_failed.
type PerPrincipalCredentials struct {
	// Header carries the secret on every upstream request of the
	// principal's sessions (HTTP upstreams).
	Header string `yaml:"header"`
	// Env carries it in the environment of the principal's processes
	// (stdio upstreams). A process serves one session, so one principal.
	Env string `yaml:"env"`
	// Format is the value, with {secret} standing for the secret, e.g.
	// "Bearer {secret}". Default "{secret}".
	Format string `yaml:"format"`
	// File is the secrets file.
	File string `yaml:"file"`
}

// TokenExchange configures OAuth 2.0 Token Exchange (RFC 8693): the
// client's validated bearer token is the subject token; the token the
// token service issues is cached per principal until shortly before it
// expires.
type TokenExchange struct {
	// TokenURL is the token service's endpoint: https, or http to a
	// loopback address.
	TokenURL string `yaml:"token_url"`
	// ClientID and ClientSecret authenticate the gateway to the token
	// service (HTTP Basic).
	ClientID     string `yaml:"client_id"`
	ClientSecret Secret `yaml:"client_secret"`
	// Audience and Scope are sent as the request's audience and scope.
	Audience string `yaml:"audience"`
	Scope    string `yaml:"scope"`
	// Header carries the issued token. Default Authorization.
	Header string `yaml:"header"`
	// Format is the header's value, {secret} standing for the issued
	// token. Default "Bearer {secret}".
	Format string `yaml:"format"`
}

// ForwardHeader carries the client's header From to the upstream as To.
// The client's own Authorization is never forwarded.
type ForwardHeader struct {
	From string `yaml:"from"`
	To   string `yaml:"to"`
}

func (c *Credentials) setDefaults() {
	if pp := c.PerPrincipal; pp != nil && pp.Format == "" {
		pp.Format = "{secret}"
	}
	if te := c.TokenExchange; te != nil {
		if te.Header == "" {
			te.Header = "Authorization"
		}
		if te.Format == "" {
			te.Format = "Bearer {secret}"
		}
	}
}

// Target is the header (HTTP) or environment variable (stdio) the
// credential goes in.
func (c *Credentials) Target() string {
	switch {
	case c.PerPrincipal != nil && c.PerPrincipal.Header != "":
		return c.PerPrincipal.Header
	case c.PerPrincipal != nil:
		return c.PerPrincipal.Env
	case c.TokenExchange != nil:
		return c.TokenExchange.Header
	case c.Forward != nil:
		return c.Forward.To
	}
	return ""
}

// managedHeaders are set by mcpgate itself on upstream requests.
var managedHeaders = []string{"mcp-session-id", "mcp-protocol-version", "mcp-method", "mcp-name", "content-type", "accept", "content-length", "host", "last-event-id", "connection", "transfer-encoding"}

// checkCredentials checks routes[i].upstream.credentials.
func checkCredentials(path string, u Upstream, bad func(path, format string, args ...any)) {
	c := u.Credentials
	if c == nil {
		return
	}
	p := path + ".credentials"
	n := 0
	for _, set := range []bool{c.PerPrincipal != nil, c.TokenExchange != nil, c.Forward != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		bad(p, "set exactly one of per_principal, token_exchange and forward")
		return
	}
	header := func(fp, name string) {
		switch {
		case name == "":
			bad(fp, "required")
		case !core.ValidHeaderName(name):
			bad(fp, "%q is not a valid header name", name)
		case containsFold(managedHeaders, name):
			bad(fp, "%s is managed by mcpgate; cannot be set", name)
		}
	}
	format := func(fp, f string) {
		if !strings.Contains(f, "{secret}") {
			bad(fp, "want a format holding {secret}, got %q", f)
		} else if strings.ContainsAny(f, "\r\n\x00") {
			bad(fp, "must not hold control characters")
		}
	}
	stdio := u.Stdio != nil
	switch {
	case c.PerPrincipal != nil:
		pp := c.PerPrincipal
		pp0 := p + ".per_principal"
		switch {
		case stdio && pp.Header != "":
			bad(pp0+".header", "a stdio upstream takes env, not header")
		case stdio && pp.Env == "":
			bad(pp0+".env", "required for a stdio upstream")
		case stdio && !envName(pp.Env):
			bad(pp0+".env", "%q is not a valid environment variable name", pp.Env)
		case !stdio && pp.Env != "":
			bad(pp0+".env", "an HTTP upstream takes header, not env")
		case !stdio:
			header(pp0+".header", pp.Header)
		}
		format(pp0+".format", pp.Format)
		if pp.File == "" {
			bad(pp0+".file", "required")
		}
	case c.TokenExchange != nil:
		te := c.TokenExchange
		tp := p + ".token_exchange"
		if stdio {
			bad(tp, "an HTTP upstream only: a process's environment cannot be refreshed when the token expires")
			break
		}
		if tu, err := url.Parse(te.TokenURL); err != nil || tu.Host == "" || !(tu.Scheme == "https" || tu.Scheme == "http" && loopbackHost(tu.Hostname())) {
			bad(tp+".token_url", "want an https URL (or http to a loopback address), got %q", te.TokenURL)
		}
		if te.ClientID == "" {
			bad(tp+".client_id", "required")
		}
		header(tp+".header", te.Header)
		format(tp+".format", te.Format)
	case c.Forward != nil:
		fw := c.Forward
		fp := p + ".forward"
		if stdio {
			bad(fp, "an HTTP upstream only")
			break
		}
		header(fp+".from", fw.From)
		header(fp+".to", fw.To)
		if strings.EqualFold(fw.From, "Authorization") || strings.EqualFold(fw.From, "Cookie") || strings.EqualFold(fw.From, "Proxy-Authorization") {
			bad(fp+".from", "the client's own %s is never forwarded: name a header of its own (e.g. X-Upstream-Token)", fw.From)
		}
	}
	switch c.Fallback {
	case "":
	case FallbackStatic:
		name := c.Target()
		has := false
		if stdio {
			_, has = u.Stdio.Env[name]
		} else if u.HTTP != nil {
			for k := range u.HTTP.Headers {
				has = has || strings.EqualFold(k, name)
			}
		}
		if !has && name != "" {
			where := "upstream.http.headers"
			if stdio {
				where = "upstream.stdio.env"
			}
			bad(p+".fallback", "static needs a %s entry for %s to fall back to", where, name)
		}
	default:
		bad(p+".fallback", "want static or nothing, got %q", c.Fallback)
	}
}

func envName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
