package auth

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/core"
)

const routeMetadata = `resource_metadata="https://gw.example.com/.well-known/oauth-protected-resource/mcp"`

func invalidToken(desc string) refusal {
	return refusal{http.StatusUnauthorized, -32014, "Bearer " + routeMetadata + `, error="invalid_token", error_description="` + desc + `"`}
}

// TestTokens: a table of tokens, each with the exact answer: the identity
// of a valid one (the principal is the issuer and the subject), the
// status, WWW-Authenticate challenge and JSON-RPC code of a bad one.
func TestTokens(t *testing.T) {
	t.Parallel()
	k1, other := rsaSigner("k1", 0), rsaSigner("k1", 1) // other: same kid, another key
	es, ed := ecSigner(t, "es"), edSigner(t, "ed")
	ps := &signer{kid: "ps", method: jwt.SigningMethodPS256, key: rsaKey(2)}
	p := newIDP(t, k1, es, ed, ps)
	now := time.Now().Truncate(time.Second)
	a := build(t, oauthConfig(t, p, nil), Options{Now: func() time.Time { return now }})
	claims := func(edit func(jwt.MapClaims)) jwt.MapClaims {
		c := p.claims("alice", now)
		if edit != nil {
			edit(c)
		}
		return c
	}
	pub, _ := x509.MarshalPKIXPublicKey(rsaKey(0).Public())
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(nil))
	hs.Header["kid"] = "k1"
	hsToken, _ := hs.SignedString(pub)
	none := jwt.NewWithClaims(jwt.SigningMethodNone, claims(nil))
	none.Header["kid"] = "k1"
	noneToken, _ := none.SignedString(jwt.UnsafeAllowNoneSignatureType)

	tests := []struct {
		name   string
		header []string
		want   refusal
	}{
		{"valid RS256", bearer(k1.token(t, claims(nil))), refusal{}},
		{"valid ES256", bearer(es.token(t, claims(nil))), refusal{}},
		{"valid EdDSA", bearer(ed.token(t, claims(nil))), refusal{}},
		{"valid PS256", bearer(ps.token(t, claims(nil))), refusal{}},
		{"lower-case scheme", []string{"Authorization", "bearer " + k1.token(t, claims(nil))}, refusal{}},
		{"expired within the skew", bearer(k1.token(t, claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-20 * time.Second).Unix() }))), refusal{}},
		{"audience as a string", bearer(k1.token(t, claims(func(c jwt.MapClaims) { c["aud"] = audience }))), refusal{}},
		{"forged signature", bearer(other.token(t, claims(nil))), invalidToken("the token's signature is invalid or its algorithm is not accepted")},
		{"expired", bearer(k1.token(t, claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() }))), invalidToken("the token has expired")},
		{"not yet valid", bearer(k1.token(t, claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Minute).Unix() }))), invalidToken("the token is not valid yet")},
		{"issued in the future", bearer(k1.token(t, claims(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Minute).Unix() }))), invalidToken("the token was issued in the future")},
		{"no exp", bearer(k1.token(t, claims(func(c jwt.MapClaims) { delete(c, "exp") }))), invalidToken("the token lacks a required claim (exp and aud are required)")},
		{"wrong issuer", bearer(k1.token(t, claims(func(c jwt.MapClaims) { c["iss"] = "https://evil.example.com" }))), invalidToken("the token was not issued by this endpoint's authorization server")},
		{"issuer with a trailing slash", bearer(k1.token(t, claims(func(c jwt.MapClaims) { c["iss"] = p.issuer() + "/" }))), invalidToken("the token was not issued by this endpoint's authorization server")},
		{"wrong audience", bearer(k1.token(t, claims(func(c jwt.MapClaims) { c["aud"] = "https://gw.example.com/other" }))), invalidToken("the token was not issued for this resource (aud)")},
		{"audience prefix", bearer(k1.token(t, claims(func(c jwt.MapClaims) { c["aud"] = "https://gw.example.com" }))), invalidToken("the token was not issued for this resource (aud)")},
		{"no audience", bearer(k1.token(t, claims(func(c jwt.MapClaims) { delete(c, "aud") }))), invalidToken("the token lacks a required claim (exp and aud are required)")},
		{"alg none", bearer(noneToken), invalidToken("the token's signature is invalid or its algorithm is not accepted")},
		{"HS256 keyed with the public key", bearer(hsToken), invalidToken("the token's signature is invalid or its algorithm is not accepted")},
		{"unknown kid", bearer(rsaSigner("k9", 2).token(t, claims(nil))), invalidToken("the token is signed with a key the issuer does not publish")},
		{"no kid, several keys", bearer(rsaSigner("", 0).token(t, claims(nil))), invalidToken("the token names no signing key (kid) and the issuer has several")},
		{"no subject", bearer(k1.token(t, claims(func(c jwt.MapClaims) { delete(c, "sub") }))), invalidToken("the token has no sub claim naming its subject")},
		{"tenant not a string", bearer(k1.token(t, claims(func(c jwt.MapClaims) { c["org_id"] = 7 }))), invalidToken("the token's org_id claim is not a string")},
		{"malformed JWT", bearer("eyJhbGciOi.eyJzdWIiOi.c2ln"), invalidToken("the token is malformed")},
		{"neither key nor JWT", bearer("mcpg_nope"), invalidToken("the bearer token is neither a known API key nor a JWT access token")},
		{"not a b64token", []string{"Authorization", "Bearer a b"}, invalidToken("the bearer token is malformed (want Authorization: Bearer <token>)")},
		{"empty bearer", []string{"Authorization", "Bearer "}, invalidToken("the bearer token is malformed (want Authorization: Bearer <token>)")},
		{"two Authorization headers", append(bearer("x"), bearer("y")...),
			refusal{http.StatusBadRequest, -32600, "Bearer " + routeMetadata + `, error="invalid_request", error_description="send exactly one Authorization header"`}},
		{"Basic", []string{"Authorization", "Basic YTpi"},
			refusal{http.StatusUnauthorized, -32014, "Bearer " + routeMetadata + `, scope="mcp:tools"`}},
		{"no credentials", nil, refusal{http.StatusUnauthorized, -32014, "Bearer " + routeMetadata + `, scope="mcp:tools"`}},
		{"missing a required scope", bearer(k1.token(t, claims(func(c jwt.MapClaims) { c["scope"] = "mcp:read" }))),
			refusal{http.StatusForbidden, -32015, "Bearer " + routeMetadata + `, scope="mcp:tools", error="insufficient_scope", error_description="the token lacks the scope(s) this endpoint requires: mcp:tools"`}},
		{"scp as a list", bearer(k1.token(t, claims(func(c jwt.MapClaims) { delete(c, "scope"); c["scp"] = []any{"mcp:tools"} }))), refusal{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, e := a.Authenticate(request("/mcp", tt.header...))
			if diff := cmp.Diff(tt.want, refusalOf(e)); diff != "" {
				t.Fatalf("refusal (-want +got):\n%s\n(error: %v)", diff, e)
			}
			if e != nil {
				if id.Principal != "" || id.Token != "" {
					t.Errorf("a refusal came with an identity: %v", id)
				}
				return
			}
			if id.Principal != p.issuer()+"#alice" || id.Tenant != "acme" || !slices.Equal(id.Groups, []string{"ops", "dev"}) || id.Token == "" || !id.HasScope("mcp:tools") || id.Claims["sub"] != "alice" {
				t.Errorf("identity %#v, claims %v, groups %v; want %s#alice of acme in [ops dev] with its token and scopes", id, id.Claims, id.Groups, p.issuer())
			}
		})
	}

	t.Run("token in the query", func(t *testing.T) {
		r := request("/mcp?access_token="+k1.token(t, claims(nil)), bearer(k1.token(t, claims(nil)))...)
		_, e := a.Authenticate(r)
		want := refusal{http.StatusBadRequest, -32600, "Bearer " + routeMetadata + `, error="invalid_request", error_description="access tokens in the URL query are refused (they end up in logs and histories): send Authorization: Bearer <token>"`}
		if diff := cmp.Diff(want, refusalOf(e)); diff != "" {
			t.Fatalf("refusal (-want +got):\n%s", diff)
		}
	})
}

// TestTokenRefreshKeepsPrincipal: a new token for the same subject (a
// refresh) is the same principal, with its own token and scopes.
func TestTokenRefreshKeepsPrincipal(t *testing.T) {
	t.Parallel()
	k1 := rsaSigner("k1", 0)
	p := newIDP(t, k1)
	now := time.Now()
	a := build(t, oauthConfig(t, p, nil), Options{})
	first := p.claims("alice", now)
	second := p.claims("alice", now.Add(time.Second))
	second["scope"] = "mcp:tools mcp:admin"
	var ids []string
	for _, c := range []jwt.MapClaims{first, second} {
		tok := k1.token(t, c)
		id, e := a.Authenticate(request("/mcp", bearer(tok)...))
		if e != nil {
			t.Fatal(e)
		}
		if id.Token != tok {
			t.Error("the identity does not carry the token it was made from")
		}
		ids = append(ids, id.Principal)
	}
	if ids[0] != ids[1] {
		t.Fatalf("principals %q and %q for one subject", ids[0], ids[1])
	}
}

// TestKeyRotation: the JWKS adds a key (a token naming it makes the
// gateway fetch the set again, at once), then drops the old one (tokens
// signed with it stop once the set is fetched again); a made-up kid
// triggers at most one fetch per interval, and fails at once.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	k1, k2 := rsaSigner("k1", 0), rsaSigner("k2", 1)
	p := newIDP(t, k1)
	now := time.Now()
	cfg := oauthConfig(t, p, nil)
	a := build(t, cfg, Options{UnknownKIDInterval: time.Nanosecond, CacheTTL: -1})
	call := func(s *signer, sub string) refusal {
		_, e := a.Authenticate(request("/mcp", bearer(s.token(t, p.claims(sub, now)))...))
		return refusalOf(e)
	}
	if r := call(k1, "a"); r.Status != 0 {
		t.Fatalf("k1 before the rotation: %+v", r)
	}
	fetched := p.fetches.Load()
	p.publish(k1, k2)
	if r := call(k2, "b"); r.Status != 0 {
		t.Fatalf("k2 once published: %+v", r)
	}
	if n := p.fetches.Load() - fetched; n != 1 {
		t.Fatalf("%d fetches for the new kid; want 1", n)
	}
	if r := call(k1, "c"); r.Status != 0 {
		t.Fatalf("k1 while still published: %+v", r)
	}
	p.publish(k2)
	// k1 is still held until the set is fetched again; a token with a kid
	// the gateway does not hold fetches it.
	if r := call(rsaSigner("k3", 2), "d"); r.Status != http.StatusUnauthorized {
		t.Fatalf("unknown kid: %+v", r)
	}
	if r := call(k1, "e"); r != invalidToken("the token is signed with a key the issuer does not publish") {
		t.Fatalf("k1 after it was dropped: %+v", r)
	}
	if r := call(k2, "f"); r.Status != 0 {
		t.Fatalf("k2 after the rotation: %+v", r)
	}

	t.Run("rate limited", func(t *testing.T) {
		t.Parallel()
		p := newIDP(t, k1)
		a := build(t, oauthConfig(t, p, nil), Options{UnknownKIDInterval: time.Hour})
		a.Warm()
		before := p.fetches.Load()
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				_, e := a.Authenticate(request("/mcp", bearer(rsaSigner("bogus"+string(rune('a'+i)), 1).token(t, p.claims("x", time.Now())))...))
				if e == nil || !errors.Is(e, errUnknownKid) {
					t.Errorf("made-up kid: %v", e)
				}
			})
		}
		wg.Wait()
		if n := p.fetches.Load() - before; n != 1 {
			t.Fatalf("%d fetches for 20 made-up kids; want 1 (then none for an hour)", n)
		}
	})
}

// TestNoKidSingleKey: a token without kid is checked against the one key
// of a set that has one.
func TestNoKidSingleKey(t *testing.T) {
	t.Parallel()
	p := newIDP(t, rsaSigner("k1", 0))
	a := build(t, oauthConfig(t, p, nil), Options{})
	if _, e := a.Authenticate(request("/mcp", bearer(rsaSigner("", 0).token(t, p.claims("a", time.Now())))...)); e != nil {
		t.Fatal(e)
	}
	if _, e := a.Authenticate(request("/mcp", bearer(rsaSigner("", 1).token(t, p.claims("a", time.Now())))...)); e == nil {
		t.Fatal("a token without kid signed by another key was accepted")
	}
}

// TestValidationCache: a validated token is served from the cache (no
// signature check: still accepted after its key left the set) until the
// cache TTL, never past its exp; the cache stays within its bound.
func TestValidationCache(t *testing.T) {
	t.Parallel()
	k1 := rsaSigner("k1", 0)
	p := newIDP(t, k1)
	now := time.Now()
	clock := func() time.Time { return now }
	var mu sync.Mutex
	a := build(t, oauthConfig(t, p, nil), Options{Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return clock() }, UnknownKIDInterval: time.Nanosecond, CacheSize: 3})
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	tok := k1.token(t, p.claims("alice", now))
	if _, e := a.Authenticate(request("/mcp", bearer(tok)...)); e != nil {
		t.Fatal(e)
	}
	p.publish(rsaSigner("k2", 1))
	if _, e := a.Authenticate(request("/mcp", bearer(rsaSigner("k2", 1).token(t, p.claims("bob", now)))...)); e != nil {
		t.Fatal(e) // the set is fetched again: k1 is gone
	}
	if _, e := a.Authenticate(request("/mcp", bearer(tok)...)); e != nil {
		t.Fatalf("cached token refused within the TTL: %v", e)
	}
	advance(time.Minute)
	if _, e := a.Authenticate(request("/mcp", bearer(tok)...)); e == nil {
		t.Fatal("token served from the cache past its TTL")
	}

	short := p.claims("carol", now)
	short["exp"] = now.Add(10 * time.Second).Unix()
	stok := rsaSigner("k2", 1).token(t, short)
	if _, e := a.Authenticate(request("/mcp", bearer(stok)...)); e != nil {
		t.Fatal(e)
	}
	sum := sha256.Sum256([]byte(stok))
	if _, ok := a.def.oauth.cache.get(sum, clock()); !ok {
		t.Fatal("a validated token is not cached")
	}
	advance(11 * time.Second)
	if _, ok := a.def.oauth.cache.get(sum, clock()); ok {
		t.Fatal("a token is cached past its exp")
	}
	v := a.def.oauth
	if n := v.cache.len(); n > 3 {
		t.Fatalf("cache holds %d entries; bound 3", n)
	}
	for i := range 10 {
		v.cache.put([32]byte{byte(i)}, core.Identity{Principal: "p"}, now.Add(time.Hour), now)
	}
	if n := v.cache.len(); n > 3 {
		t.Fatalf("cache holds %d entries after 10 puts; bound 3", n)
	}
}

// TestOAuthPerRoute: a route's own auth replaces the top level's: its
// tokens are for its own audience, its metadata names it.
func TestOAuthPerRoute(t *testing.T) {
	t.Parallel()
	k1 := rsaSigner("k1", 0)
	p := newIDP(t, k1)
	other := "https://gw.example.com/other/mcp"
	cfg := oauthConfig(t, p, func(c *config.Config) {
		r := c.Routes[0]
		r.Name, r.Path = "other", "/other/mcp"
		o := *c.Auth.OAuth
		o.Audience = other
		r.Auth = &config.Auth{OAuth: &o}
		c.Routes = append(c.Routes, r)
	})
	a := build(t, cfg, Options{})
	tok := k1.token(t, p.claims("alice", time.Now()))
	if _, e := a.Authenticate(request("/mcp", bearer(tok)...)); e != nil {
		t.Fatalf("top-level route: %v", e)
	}
	if _, e := a.Authenticate(request("/other/mcp", bearer(tok)...)); e == nil {
		t.Fatal("a token for /mcp's audience was accepted on /other/mcp")
	}
	c := p.claims("alice", time.Now())
	c["aud"] = other
	_, e := a.Authenticate(request("/other/mcp", bearer(k1.token(t, c))...))
	if e != nil {
		t.Fatalf("a token for /other/mcp: %v", e)
	}
	_, e = a.Authenticate(request("/other/mcp"))
	if got := e.Header.Get("WWW-Authenticate"); got != `Bearer resource_metadata="https://gw.example.com/.well-known/oauth-protected-resource/other/mcp", scope="mcp:tools"` {
		t.Fatalf("challenge %s", got)
	}
}
