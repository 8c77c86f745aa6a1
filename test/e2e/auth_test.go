package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/mcpgate/mcpgate/internal/auth"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/gateway"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/testutil/conformancefixture"
)

// testIssuer is an OAuth authorization server as a resource server sees
// one: a JWKS on loopback whose keys the test rotates, and the tokens it
// signs (ES256).
type testIssuer struct {
	srv  *httptest.Server
	mu   sync.Mutex
	keys []*issuerKey
}

type issuerKey struct {
	kid string
	key *ecdsa.PrivateKey
}

func newIssuerKey(t testing.TB, kid string) *issuerKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &issuerKey{kid: kid, key: k}
}

func newTestIssuer(t testing.TB, keys ...*issuerKey) *testIssuer {
	is := &testIssuer{keys: keys}
	is.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
		is.mu.Lock()
		var set []map[string]string
		for _, k := range is.keys {
			set = append(set, map[string]string{"kty": "EC", "crv": "P-256", "kid": k.kid, "use": "sig", "alg": "ES256",
				"x": b64(k.key.X.FillBytes(make([]byte, 32))), "y": b64(k.key.Y.FillBytes(make([]byte, 32)))})
		}
		is.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": set})
	}))
	t.Cleanup(is.srv.Close)
	return is
}

func (is *testIssuer) publish(keys ...*issuerKey) {
	is.mu.Lock()
	is.keys = keys
	is.mu.Unlock()
}

// oauth is the auth.oauth block for tokens of is issued for audience.
func (is *testIssuer) oauth(audience string) *config.OAuth {
	return &config.OAuth{Issuer: is.srv.URL, JWKSURL: is.srv.URL + "/jwks", Audience: audience, TenantClaim: "org_id", RequiredScopes: []string{"mcp:tools"}}
}

// token signs a token of k for sub, valid for the gateway's audience
// now; edit changes its claims.
func (is *testIssuer) token(t testing.TB, k *issuerKey, audience, sub string, edit func(jwt.MapClaims)) string {
	t.Helper()
	now := time.Now()
	c := jwt.MapClaims{"iss": is.srv.URL, "aud": audience, "sub": sub, "org_id": "acme", "scope": "mcp:tools",
		"exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix(), "jti": session.NewID()}
	if edit != nil {
		edit(c)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, c)
	tok.Header["kid"] = k.kid
	s, err := tok.SignedString(k.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startOAuthGateway is startAuthGateway with a top-level oauth block for
// a new issuer (signing with k1) and the route /mcp's URL as audience;
// edit adjusts the block.
func startOAuthGateway(t *testing.T, edit func(*config.Auth), routes ...config.Route) (g *authGateway, is *testIssuer, k1 *issuerKey, audience string) {
	t.Helper()
	k1 = newIssuerKey(t, "k1")
	is = newTestIssuer(t, k1)
	g = startAuthGateway(t, func(c *config.Config, base string) {
		audience = base + "/mcp"
		c.Auth = &config.Auth{OAuth: is.oauth(audience)}
		if edit != nil {
			edit(c.Auth)
		}
	}, routes...)
	return g, is, k1, audience
}

// authGateway is a gateway with auth, listening at a port fixed before it
// starts (the audience names it), recording the sessions it creates and
// keeping its log.
type authGateway struct {
	*gw
	cfg  *config.Config // as started
	logs *logLines
	mu   sync.Mutex
	seen []*core.SessionInfo
	// stop shuts the gateway down (once; the test's end does too).
	stop func()
}

func startAuthGateway(t *testing.T, mutate func(c *config.Config, base string), routes ...config.Route) *authGateway {
	t.Helper()
	addr := freeAddr(t)
	base := "http://" + addr
	cfg := &config.Config{Listeners: []config.Listener{{Address: addr}}, Routes: routes}
	cfg.Server.ShutdownTimeout = 5 * time.Second
	cfg.Store.Kind = config.StoreMemory
	mutate(cfg, base)
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ag := &authGateway{cfg: cfg, logs: new(logLines)}
	record := func(info *core.SessionInfo) {
		ag.mu.Lock()
		ag.seen = append(ag.seen, info)
		ag.mu.Unlock()
	}
	g, err := gateway.New(cfg, gateway.Options{Logger: slog.New(slog.NewJSONHandler(ag.logs, nil)),
		SessionHooks: []session.Hooks{{Created: record}}})
	if err != nil {
		t.Fatal(err)
	}
	ag.stop = runGateway(t, g)
	ag.gw = &gw{Gateway: g, URL: "http://" + g.Addrs()[0].String()}
	return ag
}

// created are the sessions created so far.
func (ag *authGateway) created() []*core.SessionInfo {
	ag.mu.Lock()
	defer ag.mu.Unlock()
	return append([]*core.SessionInfo(nil), ag.seen...)
}

// hijacks are the session_hijack_refused records so far.
func (ag *authGateway) hijacks() []map[string]any { return ag.logs.records("session_hijack_refused") }

// String is the whole log.
func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// bearerClient is an HTTP client whose requests carry the token it holds
// now (set swaps it, as a client refreshing its token does).
type bearerClient struct{ token atomic.Pointer[string] }

func newBearerClient(token string) (*bearerClient, *http.Client) {
	b := &bearerClient{}
	b.set(token)
	return b, &http.Client{Transport: b}
}

func (b *bearerClient) set(token string) { b.token.Store(&token) }

func (b *bearerClient) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+*b.token.Load())
	return http.DefaultTransport.RoundTrip(r)
}

func authz(token string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + token}
}

// legacySessionAs opens a 2025-11-25 session with token and returns the
// headers of its later requests (session, version, token).
func legacySessionAs(t testing.TB, url, token string) map[string]string {
	t.Helper()
	r := do(t, "POST", url, initBodyVersion("2025-11-25"), authz(token))
	id := r.Header.Get("Mcp-Session-Id")
	if r.Status != http.StatusOK || id == "" {
		t.Fatalf("initialize: %d %s", r.Status, r.Body)
	}
	hdr := with(sessHdr(id, "2025-11-25"), "Authorization", "Bearer "+token)
	if n := do(t, "POST", url, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, hdr); n.Status != http.StatusAccepted {
		t.Fatalf("initialized: %d %s", n.Status, n.Body)
	}
	return hdr
}

// TestAuthBadTokens: every bad token a client can present through the
// gateway, with the exact status, WWW-Authenticate challenge and JSON-RPC
// code, before any session exists; the challenge's resource_metadata is
// the route's Protected Resource Metadata, which go-sdk's client accepts
// for the route's URL.
func TestAuthBadTokens(t *testing.T) {
	t.Parallel()
	g, is, k1, audience := startOAuthGateway(t, nil, httpRoute("fixture", "/mcp", fixtureHTTP(t, false)))
	url := g.URL + "/mcp"
	meta := `resource_metadata="` + g.URL + `/.well-known/oauth-protected-resource/mcp"`
	invalid := func(desc string) string {
		return "Bearer " + meta + `, error="invalid_token", error_description="` + desc + `"`
	}
	tok := func(edit func(jwt.MapClaims)) string { return is.token(t, k1, audience, "alice", edit) }
	der, _ := x509.MarshalPKIXPublicKey(&k1.key.PublicKey)
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": is.srv.URL, "aud": audience, "sub": "alice", "exp": time.Now().Add(time.Minute).Unix()})
	hs.Header["kid"] = "k1"
	hsToken, _ := hs.SignedString(der)
	none := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"iss": is.srv.URL, "aud": audience, "sub": "alice", "exp": time.Now().Add(time.Minute).Unix()})
	noneToken, _ := none.SignedString(jwt.UnsafeAllowNoneSignatureType)
	forged := is.token(t, newIssuerKey(t, "k1"), audience, "alice", nil)

	tests := []struct {
		name      string
		url       string
		hdr       map[string]string
		status    int
		challenge string
		code      int
	}{
		{"no credentials", url, nil, 401, "Bearer " + meta + `, scope="mcp:tools"`, -32014},
		{"forged signature", url, authz(forged), 401, invalid("the token's signature is invalid or its algorithm is not accepted"), -32014},
		{"expired", url, authz(tok(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Minute).Unix() })), 401, invalid("the token has expired"), -32014},
		{"not yet valid", url, authz(tok(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(time.Minute).Unix() })), 401, invalid("the token is not valid yet"), -32014},
		{"wrong issuer", url, authz(tok(func(c jwt.MapClaims) { c["iss"] = "https://idp.example.com" })), 401, invalid("the token was not issued by this endpoint's authorization server"), -32014},
		{"wrong audience", url, authz(tok(func(c jwt.MapClaims) { c["aud"] = "https://elsewhere.example.com/mcp" })), 401, invalid("the token was not issued for this resource (aud)"), -32014},
		{"alg none", url, authz(noneToken), 401, invalid("the token's signature is invalid or its algorithm is not accepted"), -32014},
		{"HS256 keyed with the public key", url, authz(hsToken), 401, invalid("the token's signature is invalid or its algorithm is not accepted"), -32014},
		{"unknown kid", url, authz(is.token(t, newIssuerKey(t, "k9"), audience, "alice", nil)), 401, invalid("the token is signed with a key the issuer does not publish"), -32014},
		{"malformed", url, authz("eyJhbGciOi.eyJzdWIiOi.c2ln"), 401, invalid("the token is malformed"), -32014},
		{"missing scope", url, authz(tok(func(c jwt.MapClaims) { c["scope"] = "other" })), 403,
			"Bearer " + meta + `, scope="mcp:tools", error="insufficient_scope", error_description="the token lacks the scope(s) this endpoint requires: mcp:tools"`, -32015},
		{"token in the query", url + "?access_token=" + tok(nil), authz(tok(nil)), 400,
			"Bearer " + meta + `, error="invalid_request", error_description="access tokens in the URL query are refused (they end up in logs and histories): send Authorization: Bearer <token>"`, -32600},
	}
	for _, tt := range tests {
		r := do(t, "POST", tt.url, initBodyVersion("2025-11-25"), tt.hdr)
		if r.Status != tt.status || r.Header.Get("WWW-Authenticate") != tt.challenge || r.Code != tt.code {
			t.Errorf("%s: %d %q code %d; want %d %q code %d\n%s", tt.name, r.Status, r.Header.Get("WWW-Authenticate"), r.Code, tt.status, tt.challenge, tt.code, r.Body)
		}
	}
	if n := g.Sessions().Len(); n != 0 {
		t.Fatalf("%d sessions after refusals; want none", n)
	}
	if r := do(t, "POST", url, initBodyVersion("2025-11-25"), authz(tok(nil))); r.Status != http.StatusOK {
		t.Fatalf("a valid token: %d %s", r.Status, r.Body)
	}

	// What a client does with the challenge: go-sdk reads it and fetches
	// the metadata, which must name the route's URL as the resource.
	refused := do(t, "POST", url, initBodyVersion("2025-11-25"), nil)
	cs, err := oauthex.ParseWWWAuthenticate(refused.Header.Values("WWW-Authenticate"))
	if err != nil || len(cs) != 1 || cs[0].Params["resource_metadata"] == "" {
		t.Fatalf("challenge %v: %v", cs, err)
	}
	prm, err := oauthex.GetProtectedResourceMetadata(context.Background(), cs[0].Params["resource_metadata"], url, http.DefaultClient)
	if err != nil {
		t.Fatalf("go-sdk refuses the metadata: %v", err)
	}
	if prm.Resource != audience || len(prm.AuthorizationServers) != 1 || prm.AuthorizationServers[0] != is.srv.URL || prm.BearerMethodsSupported[0] != "header" {
		t.Fatalf("metadata %+v", prm)
	}
	if r := do(t, "GET", g.URL+"/.well-known/oauth-protected-resource", "", nil); r.Status != http.StatusOK || !strings.Contains(r.Body, `"resource":"`+audience+`"`) {
		t.Fatalf("root metadata: %d %s", r.Status, r.Body)
	}
}

// TestAuthSessionsBothEras: real go-sdk clients of both eras with a
// bearer token: their sessions belong to issuer#subject in the token's
// tenant, a refreshed token (same subject) continues the session, and the
// issuer's key rotation is followed (a new kid is fetched at once, tokens
// of the dropped key stop).
func TestAuthSessionsBothEras(t *testing.T) {
	t.Parallel()
	g, is, k1, audience := startOAuthGateway(t, nil, httpRoute("fixture", "/mcp", fixtureHTTP(t, false)))
	k2 := newIssuerKey(t, "k2")
	url := g.URL + "/mcp"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, v := range []string{"2025-11-25", "2026-07-28"} {
		before := len(g.created())
		bc, hc := newBearerClient(is.token(t, k1, audience, "alice-"+v, nil))
		cs := connectSDK(ctx, t, url, v, hc)
		if err := callSimple(ctx, cs); err != nil {
			t.Fatalf("%s: call: %v", v, err)
		}
		bc.set(is.token(t, k1, audience, "alice-"+v, func(c jwt.MapClaims) { c["scope"] = "mcp:tools mcp:more" }))
		if err := callSimple(ctx, cs); err != nil {
			t.Fatalf("%s: call with a refreshed token: %v", v, err)
		}
		made := g.created()[before:]
		if len(made) != 1 || made[0].Principal != is.srv.URL+"#alice-"+v || made[0].Tenant != "acme" {
			for _, s := range made {
				t.Logf("session %s of %q/%q", s.LogID(), s.Principal, s.Tenant)
			}
			t.Fatalf("%s: %d sessions; want one of %s#alice-%s in acme, continued with the refreshed token", v, len(made), is.srv.URL, v)
		}
	}

	is.publish(k2) // k1 rotated out, k2 in
	if r := do(t, "POST", url, initBodyVersion("2025-11-25"), authz(is.token(t, k2, audience, "bob", nil))); r.Status != http.StatusOK {
		t.Fatalf("a token of the new key: %d %s", r.Status, r.Body)
	}
	if r := do(t, "POST", url, initBodyVersion("2025-11-25"), authz(is.token(t, k1, audience, "carol", nil))); r.Status != http.StatusUnauthorized ||
		!strings.Contains(r.Header.Get("WWW-Authenticate"), "a key the issuer does not publish") {
		t.Fatalf("a token of the dropped key: %d %s %s", r.Status, r.Header.Get("WWW-Authenticate"), r.Body)
	}
}

// TestAuthAPIKeysPerRoute: a key admits its principal on the routes its
// block covers; a route with auth of its own refuses the top level's keys
// and the top level's routes refuse its keys.
func TestAuthAPIKeysPerRoute(t *testing.T) {
	t.Parallel()
	ci, _ := auth.NewKey()
	admin, _ := auth.NewKey()
	up := fixtureHTTP(t, false)
	adminRoute := httpRoute("admin", "/admin/mcp", up)
	adminRoute.Auth = &config.Auth{APIKeys: []config.APIKey{{KeySHA256: auth.HashKey(admin), Principal: "admin"}}}
	g := startAuthGateway(t, func(c *config.Config, _ string) {
		c.Auth = &config.Auth{APIKeys: []config.APIKey{{KeySHA256: auth.HashKey(ci), Principal: "ci-bot", Tenant: "acme", Groups: []string{"ci"}}}}
	}, httpRoute("fixture", "/mcp", up), adminRoute)
	base := g.URL
	for _, tt := range []struct {
		name, path, key string
		status          int
	}{
		{"ci on /mcp", "/mcp", ci, 200}, {"admin on /admin/mcp", "/admin/mcp", admin, 200},
		{"admin on /mcp", "/mcp", admin, 401}, {"ci on /admin/mcp", "/admin/mcp", ci, 401},
		{"unknown key", "/mcp", ci[:len(ci)-1] + "x", 401}, {"no key", "/admin/mcp", "", 401},
	} {
		hdr := authz(tt.key)
		if tt.key == "" {
			hdr = nil
		}
		r := do(t, "POST", base+tt.path, initBodyVersion("2025-11-25"), hdr)
		if r.Status != tt.status {
			t.Errorf("%s: %d %s; want %d", tt.name, r.Status, r.Body, tt.status)
		}
		if tt.status == 401 && (r.Code != core.CodeUnauthorized || !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), `Bearer realm="mcpgate"`)) {
			t.Errorf("%s: code %d, challenge %q", tt.name, r.Code, r.Header.Get("WWW-Authenticate"))
		}
	}
	for _, s := range g.created() {
		if s.Route == "fixture" && (s.Principal != "ci-bot" || s.Tenant != "acme" || len(s.Groups) != 1) {
			t.Errorf("ci-bot's session: %q %q %v", s.Principal, s.Tenant, s.Groups)
		}
	}
}

// TestAuthHijackRefused: a session's handle presented by another
// principal — a legacy Mcp-Session-Id (POST, GET, GET with Last-Event-ID,
// DELETE), a modern Mcpgate-Session key, an MRTR requestState — gets what
// an unknown one gets and is logged as session_hijack_refused with both
// principals as fingerprints; the owner's session and pending call go on.
func TestAuthHijackRefused(t *testing.T) {
	t.Parallel()
	alice, _ := auth.NewKey()
	bob, _ := auth.NewKey()
	keys := func(c *config.Config, _ string) {
		c.Auth = &config.Auth{APIKeys: []config.APIKey{{KeySHA256: auth.HashKey(alice), Principal: "alice"}, {KeySHA256: auth.HashKey(bob), Principal: "bob"}}}
	}
	wantLogged := func(t *testing.T, g *authGateway, n int) {
		t.Helper()
		recs := g.hijacks()
		if len(recs) != n {
			t.Fatalf("%d session_hijack_refused records; want %d", len(recs), n)
		}
		for _, rec := range recs {
			if rec["principal"] != core.Fingerprint("bob") || rec["owner"] != core.Fingerprint("alice") || rec["level"] != "WARN" {
				t.Fatalf("record %v; want bob's and alice's fingerprints", rec)
			}
		}
		if logs := g.logs.String(); strings.Contains(logs, alice) || strings.Contains(logs, bob) {
			t.Fatal("a key is in the log")
		}
	}

	t.Run("legacy", func(t *testing.T) {
		t.Parallel()
		g := startAuthGateway(t, keys, httpRoute("fixture", "/mcp", fixtureHTTP(t, false)))
		url := g.URL + "/mcp"
		hdr := legacySessionAs(t, url, alice)
		ping := `{"jsonrpc":"2.0","id":"p","method":"ping"}`
		asBob := with(hdr, "Authorization", "Bearer "+bob)
		wantNotFound(t, "bob's POST", do(t, "POST", url, ping, asBob))
		wantNotFound(t, "bob's GET", do(t, "GET", url, "", with(asBob, "Accept", "text/event-stream")))
		wantNotFound(t, "bob's resumption", do(t, "GET", url, "", with(asBob, "Accept", "text/event-stream", "Last-Event-ID", "0_0")))
		wantNotFound(t, "bob's DELETE", do(t, "DELETE", url, "", asBob))
		wantLogged(t, g, 4)
		if r := do(t, "POST", url, ping, hdr); r.Status != http.StatusOK {
			t.Fatalf("alice's ping after the attempts: %d %s", r.Status, r.Body)
		}
	})

	t.Run("modern", func(t *testing.T) {
		t.Parallel()
		route := stdioRoute("fixture", "/mcp", fixtureBin)
		route.Upstream.Era = config.EraLegacy // MRTR requestStates are the bridge's
		g := startAuthGateway(t, keys, route)
		url := g.URL + "/mcp"
		params := `{"_meta":` + modernMeta("hijack") + `}`
		first := modernDo(t, url, "tools/list", params, authz(alice))
		key := first.Header.Get("Mcpgate-Session")
		if first.Status != http.StatusOK || key == "" {
			t.Fatalf("alice's first request: %d %s", first.Status, first.Body)
		}
		wantNotFound(t, "bob with alice's key", modernDo(t, url, "tools/list", params, with(authz(bob), "Mcpgate-Session", key)))
		wantLogged(t, g, 1)

		state, input := askSampling(t, url, authz(alice))
		if r := retrySampling(t, url, "test_sampling", state, input, authz(bob)); r.Code != core.CodeInvalidParams || strings.Contains(r.Body, "Paris") {
			t.Fatalf("bob's retry with alice's requestState: %d %s; want -32602 from his own session", r.Status, r.Body)
		}
		wantLogged(t, g, 2)
		if r := retrySampling(t, url, "test_sampling", state, input, authz(alice)); r.Status != http.StatusOK || !strings.Contains(r.Body, "Paris") {
			t.Fatalf("alice's retry after bob's: %d %s; her call must go on", r.Status, r.Body)
		}
	})
}

// TestAuthModernKeyedByPrincipal: keyless modern requests of an
// authenticated principal join one session from any client address;
// anonymous ones are grouped per address.
func TestAuthModernKeyedByPrincipal(t *testing.T) {
	t.Parallel()
	alice, _ := auth.NewKey()
	g := startAuthGateway(t, func(c *config.Config, _ string) {
		c.Listeners[0].TrustedProxies = []string{"127.0.0.1", "::1"}
		c.Auth = &config.Auth{Anonymous: true, APIKeys: []config.APIKey{{KeySHA256: auth.HashKey(alice), Principal: "alice"}}}
	}, stdioRoute("fixture", "/mcp", fixtureBin))
	url := g.URL + "/mcp"
	params := `{"_meta":` + modernMeta("roaming") + `}`
	from := func(addr string, hdr map[string]string) rawResp {
		return modernDo(t, url, "tools/list", params, with(hdr, "X-Forwarded-For", addr))
	}
	if r := from("203.0.113.1", authz(alice)); r.Status != http.StatusOK || r.Header.Get("Mcpgate-Session") == "" {
		t.Fatalf("alice from .1: %d %s", r.Status, r.Body)
	}
	if r := from("203.0.113.2", authz(alice)); r.Status != http.StatusOK || r.Header.Get("Mcpgate-Session") != "" {
		t.Fatalf("alice from .2: %d (key %q) %s; want her session from .1", r.Status, r.Header.Get("Mcpgate-Session"), r.Body)
	}
	for _, addr := range []string{"203.0.113.1", "203.0.113.2"} {
		if r := from(addr, nil); r.Status != http.StatusOK || r.Header.Get("Mcpgate-Session") == "" {
			t.Fatalf("anonymous from %s: %d (key %q); want a session of the address", addr, r.Status, r.Header.Get("Mcpgate-Session"))
		}
	}
	if n := g.Sessions().Len(); n != 3 {
		t.Fatalf("%d sessions; want alice's and one per anonymous address", n)
	}
}

// TestAuthScopes: auth.scopes refuses a message whose caller lacks a
// scope with 403 insufficient_scope (and a JSON-RPC error with the
// request's id), 401 for an anonymous caller; after the client obtains a
// token with the scope, the same session serves the call.
func TestAuthScopes(t *testing.T) {
	t.Parallel()
	g, is, k1, audience := startOAuthGateway(t, func(a *config.Auth) {
		a.Anonymous = true
		a.Scopes = map[string][]string{
			"tools/call":                    {"mcp:tools"},
			"tools/call:test_image_content": {"mcp:images"},
		}
	}, httpRoute("fixture", "/mcp", fixtureHTTP(t, false)))
	url := g.URL + "/mcp"
	meta := `resource_metadata="` + g.URL + `/.well-known/oauth-protected-resource/mcp"`
	basic := is.token(t, k1, audience, "alice", nil)
	hdr := legacySessionAs(t, url, basic)
	call := func(tool string, hdr map[string]string) rawResp {
		return do(t, "POST", url, `{"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"`+tool+`","arguments":{}}}`, hdr)
	}
	if r := call("test_simple_text", hdr); r.Status != http.StatusOK || r.Code != 0 {
		t.Fatalf("a call the token covers: %d %s", r.Status, r.Body)
	}
	r := call("test_image_content", hdr)
	want := "Bearer " + meta + `, scope="mcp:tools mcp:images", error="insufficient_scope", error_description="tools/call test_image_content needs the scope(s) mcp:images"`
	if r.Status != http.StatusForbidden || r.Code != core.CodeForbidden || r.Header.Get("WWW-Authenticate") != want || string(r.ID) != `"c1"` {
		t.Fatalf("a call the token does not cover: %d %q code %d id %s; want 403 %q -32015\n%s", r.Status, r.Header.Get("WWW-Authenticate"), r.Code, r.ID, want, r.Body)
	}
	stepUp := is.token(t, k1, audience, "alice", func(c jwt.MapClaims) { c["scope"] = "mcp:tools mcp:images" })
	if r := call("test_image_content", with(hdr, "Authorization", "Bearer "+stepUp)); r.Status != http.StatusOK || r.Code != 0 {
		t.Fatalf("the call with a token that has the scope, in the same session: %d %s", r.Status, r.Body)
	}

	// An anonymous modern caller is asked for credentials.
	r = modernDo(t, url, "tools/call", `{"name":"test_simple_text","arguments":{},"_meta":`+modernMeta("anon")+`}`, map[string]string{"Mcp-Name": "test_simple_text"})
	if r.Status != http.StatusUnauthorized || r.Code != core.CodeUnauthorized || r.Header.Get("WWW-Authenticate") != "Bearer "+meta+`, scope="mcp:tools"` {
		t.Fatalf("anonymous call: %d %q %s", r.Status, r.Header.Get("WWW-Authenticate"), r.Body)
	}
}

// TestAuthReload: a reload puts new keys in force without a restart (the
// new key admits, the removed one is refused at once); switching between
// no credentials and some needs a restart.
func TestAuthReload(t *testing.T) {
	t.Parallel()
	oldKey, _ := auth.NewKey()
	newKey, _ := auth.NewKey()
	keyed := func(key string) *config.Auth {
		return &config.Auth{APIKeys: []config.APIKey{{KeySHA256: auth.HashKey(key), Principal: "ci-bot"}}}
	}
	g := startAuthGateway(t, func(c *config.Config, _ string) { c.Auth = keyed(oldKey) }, httpRoute("fixture", "/mcp", fixtureHTTP(t, false)))
	url := g.URL + "/mcp"
	status := func(key string) int { return do(t, "POST", url, initBodyVersion("2025-11-25"), authz(key)).Status }
	if s := status(oldKey); s != http.StatusOK {
		t.Fatalf("old key before the reload: %d", s)
	}
	next := *g.cfg
	next.Auth = keyed(newKey)
	if err := g.Reload(context.Background(), &next); err != nil {
		t.Fatal(err)
	}
	if s, o := status(newKey), status(oldKey); s != http.StatusOK || o != http.StatusUnauthorized {
		t.Fatalf("after the reload: new key %d, old key %d; want 200, 401", s, o)
	}
	none := *g.cfg
	none.Auth = nil
	var rr *gateway.RestartRequired
	if err := g.Reload(context.Background(), &none); !errors.As(err, &rr) || !slices.Contains(rr.Paths, "auth") {
		t.Fatalf("reload dropping every credential: %v; want a restart required for auth", err)
	}
	if s := status(newKey); s != http.StatusOK {
		t.Fatalf("after the refused reload: %d", s)
	}
}

// TestAuthCredentialNotForwarded: whatever the client authenticates
// with never reaches the upstream (both eras, a legacy upstream and a
// modern one); the upstream's own configured header does.
func TestAuthCredentialNotForwarded(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[string][]string{} // upstream → Authorization values seen
	upstream := func(name string, stateless bool) string {
		ctx, cancel := context.WithCancel(context.Background())
		h := conformancefixture.HandlerWithOptions(ctx, stateless, nil)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen[name] = append(seen[name], r.Header.Get("Authorization")+"|"+r.Header.Get("X-Upstream-Key"))
			mu.Unlock()
			h.ServeHTTP(w, r)
		}))
		t.Cleanup(func() { cancel(); srv.Close() })
		return srv.URL + "/"
	}
	legacy := httpRoute("legacy", "/legacy/mcp", upstream("legacy", false))
	legacy.Upstream.HTTP.Headers = map[string]config.Secret{"X-Upstream-Key": "upstream-secret"}
	modern := httpRoute("modern", "/modern/mcp", upstream("modern", true))
	g, is, k1, audience := startOAuthGateway(t, nil, legacy, modern)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	token := is.token(t, k1, audience, "alice", nil)
	for _, path := range []string{"/legacy/mcp", "/modern/mcp"} {
		for _, v := range []string{"2025-11-25", "2026-07-28"} {
			_, hc := newBearerClient(token)
			cs := connectSDK(ctx, t, g.URL+path, v, hc)
			if err := callSimple(ctx, cs); err != nil {
				t.Fatalf("%s %s: %v", path, v, err)
			}
			_ = cs.Close()
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for name, hs := range seen {
		for _, h := range hs {
			authz, key, _ := strings.Cut(h, "|")
			if authz != "" {
				t.Errorf("upstream %s received Authorization %q", name, authz)
			}
			if name == "legacy" && key != "upstream-secret" {
				t.Errorf("upstream %s: its configured header missing (%q)", name, key)
			}
		}
		if len(hs) == 0 {
			t.Errorf("upstream %s received nothing", name)
		}
	}
	if len(seen) != 2 {
		t.Fatalf("upstreams reached: %v", seen)
	}
}
