package e2e

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/frontend"
	"github.com/mcpgate/mcpgate/internal/gateway"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/testutil/testenv"
)

// headerAuth is a test Authenticator: X-Test-User names the principal
// (none: anonymous), X-Test-Tenant its tenant, X-Test-Groups its groups,
// X-Test-Token the validated bearer token;
// the user "denied" is refused with a Bearer challenge.
func headerAuth(r *http.Request) (frontend.Identity, *core.Error) {
	user := r.Header.Get("X-Test-User")
	switch user {
	case "":
		return frontend.AnonymousIdentity(), nil
	case "denied":
		e := core.NewError(core.CodeInvalidRequest, "unauthorized: bad credentials")
		e.Header = http.Header{"Www-Authenticate": {`Bearer realm="mcpgate-test"`}}
		return frontend.Identity{}, e
	}
	var groups []string
	if g := r.Header.Get("X-Test-Groups"); g != "" {
		groups = strings.Split(g, ",")
	}
	return frontend.Identity{
		Principal: "user:" + user, Tenant: r.Header.Get("X-Test-Tenant"), Groups: groups,
		Claims: map[string]any{"sub": user, "scope": []any{"read"}},
		Token:  r.Header.Get("X-Test-Token"),
	}, nil
}

// identityGateway is a running gateway with headerAuth, stopped by stop
// (and at the end of the test), recording the SessionInfo of every
// session it creates or brings back.
type identityGateway struct {
	*gw
	stop func()
	mu   sync.Mutex
	seen []*core.SessionInfo
}

func startIdentityGateway(t *testing.T, mutate func(*config.Config), routes ...config.Route) *identityGateway {
	t.Helper()
	cfg := &config.Config{Listeners: []config.Listener{{Address: "127.0.0.1:0"}}, Routes: routes}
	cfg.Server.ShutdownTimeout = 5 * time.Second
	cfg.Store.Kind = config.StoreMemory
	if mutate != nil {
		mutate(cfg)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ig := &identityGateway{}
	record := func(info *core.SessionInfo) {
		ig.mu.Lock()
		ig.seen = append(ig.seen, info)
		ig.mu.Unlock()
	}
	g, err := gateway.New(cfg, gateway.Options{
		Logger: testLogger(t), Authenticate: headerAuth,
		SessionHooks: []session.Hooks{{Created: record, Resumed: func(info *core.SessionInfo, _ string) { record(info) }}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ig.stop = runGateway(t, g)
	ig.gw = &gw{Gateway: g, URL: "http://" + g.Addrs()[0].String()}
	return ig
}

// info is the SessionInfo the gateway recorded for session id.
func (ig *identityGateway) info(t *testing.T, id string) *core.SessionInfo {
	t.Helper()
	ig.mu.Lock()
	defer ig.mu.Unlock()
	for _, i := range ig.seen {
		if i.ID == id {
			return i
		}
	}
	t.Fatalf("no session %s was created", core.Fingerprint(id))
	return nil
}

// asUser is an HTTP client whose requests carry X-Test-User: user.
func asUser(user string) *http.Client {
	return &http.Client{Transport: headerTransport{"X-Test-User": user}}
}

type headerTransport map[string]string

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h {
		r.Header.Set(k, v)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// with returns hdr plus the extra header pairs.
func with(hdr map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range hdr {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// wantNotFound fails unless r is the answer to an unknown session.
func wantNotFound(t *testing.T, what string, r rawResp) {
	t.Helper()
	if r.Status != http.StatusNotFound || r.Code != core.CodeSessionNotFound {
		t.Fatalf("%s: %d (code %d) %s; want 404 with JSON-RPC %d, as for an unknown session", what, r.Status, r.Code, r.Body, core.CodeSessionNotFound)
	}
}

// TestSessionOwnerLegacy: the identity the Authenticator gives a go-sdk
// client flows into its session's SessionInfo; another principal (or the
// same principal in another tenant) presenting that Mcp-Session-Id on
// POST, GET or DELETE is answered exactly as for an unknown session, and
// the owner's session goes on. Refused credentials get 401 with the
// challenge before any session is looked up.
func TestSessionOwnerLegacy(t *testing.T) {
	t.Parallel()
	g := startIdentityGateway(t, nil, httpRoute("fixture", "/mcp", fixtureHTTP(t, false)))
	url := g.URL + "/mcp"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hc := &http.Client{Transport: headerTransport{"X-Test-User": "alice", "X-Test-Groups": "admins,ops"}}
	cs := connectSDK(ctx, t, url, "2025-11-25", hc)
	id := cs.ID()
	info := g.info(t, id)
	if info.Principal != "user:alice" || !slices.Equal(info.Groups, []string{"admins", "ops"}) || info.Claims["sub"] != "alice" {
		t.Fatalf("session info: principal %q groups %v claims %v; want user:alice, [admins ops], sub alice", info.Principal, info.Groups, info.Claims)
	}

	hdr := sessHdr(id, "2025-11-25")
	ping := `{"jsonrpc":"2.0","id":"p","method":"ping"}`
	wantNotFound(t, "bob's POST with alice's session", do(t, "POST", url, ping, with(hdr, "X-Test-User", "bob")))
	wantNotFound(t, "an anonymous POST with alice's session", do(t, "POST", url, ping, hdr))
	wantNotFound(t, "alice of another tenant", do(t, "POST", url, ping, with(hdr, "X-Test-User", "alice", "X-Test-Tenant", "other")))
	wantNotFound(t, "bob's GET with alice's session", do(t, "GET", url, "", with(hdr, "X-Test-User", "bob", "Accept", "text/event-stream")))
	wantNotFound(t, "bob's DELETE of alice's session", do(t, "DELETE", url, "", with(hdr, "X-Test-User", "bob")))
	unknown := do(t, "POST", url, ping, with(hdr, "X-Test-User", "bob", "Mcp-Session-Id", session.NewID()))
	if theirs := do(t, "POST", url, ping, with(hdr, "X-Test-User", "bob")); theirs.Body != unknown.Body || theirs.Status != unknown.Status {
		t.Errorf("another's session answers %d %s, an unknown one %d %s: they must not be told apart", theirs.Status, theirs.Body, unknown.Status, unknown.Body)
	}

	denied := do(t, "POST", url, ping, with(hdr, "X-Test-User", "denied"))
	if denied.Status != http.StatusUnauthorized || !strings.Contains(denied.Header.Get("WWW-Authenticate"), "Bearer") || denied.Code != core.CodeInvalidRequest {
		t.Fatalf("refused credentials: %d (code %d, WWW-Authenticate %q) %s; want 401 with the challenge and a JSON-RPC error",
			denied.Status, denied.Code, denied.Header.Get("WWW-Authenticate"), denied.Body)
	}

	// The owner's session is intact: bob's DELETE ended nothing.
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text", Arguments: map[string]any{}})
	if err != nil || res.IsError {
		t.Fatalf("alice's call after the refusals: %v %v", res, err)
	}
	if n := g.Sessions().Len(); n != 1 {
		t.Fatalf("%d sessions; want alice's one", n)
	}
}

// TestModernSessionOwner: another principal presenting a modern session's
// Mcpgate-Session key gets 404 and the owner keeps using it; keyless
// requests of two principals from one address get a session each, and
// each principal's later keyless requests join its own.
func TestModernSessionOwner(t *testing.T) {
	t.Parallel()
	g := startIdentityGateway(t, nil, stdioRoute("fixture", "/mcp", fixtureBin))
	url := g.URL + "/mcp"
	params := `{"_meta":` + modernMeta("identity") + `}`
	alice := modernDo(t, url, "tools/list", params, map[string]string{"X-Test-User": "alice"})
	key := alice.Header.Get("Mcpgate-Session")
	if alice.Status != http.StatusOK || key == "" {
		t.Fatalf("alice's first request: %d %s (key %q)", alice.Status, alice.Body, key)
	}
	if p := g.info(t, key).Principal; p != "user:alice" {
		t.Fatalf("modern session principal %q; want user:alice", p)
	}
	wantNotFound(t, "bob with alice's key", modernDo(t, url, "tools/list", params, map[string]string{"X-Test-User": "bob", "Mcpgate-Session": key}))
	if r := modernDo(t, url, "tools/list", params, map[string]string{"X-Test-User": "alice", "Mcpgate-Session": key}); r.Status != http.StatusOK || r.Header.Get("Mcpgate-Session") != "" {
		t.Fatalf("alice with her key: %d %s (new key %q); want 200 in her session", r.Status, r.Body, r.Header.Get("Mcpgate-Session"))
	}

	bob := modernDo(t, url, "tools/list", params, map[string]string{"X-Test-User": "bob"})
	bobKey := bob.Header.Get("Mcpgate-Session")
	if bob.Status != http.StatusOK || bobKey == "" || bobKey == key {
		t.Fatalf("bob's keyless request from alice's address: %d %s (key %q); want a session of his own", bob.Status, bob.Body, bobKey)
	}
	if p := g.info(t, bobKey).Principal; p != "user:bob" {
		t.Fatalf("bob's session principal %q", p)
	}
	for _, user := range []string{"alice", "bob"} {
		r := modernDo(t, url, "tools/list", params, map[string]string{"X-Test-User": user})
		if r.Status != http.StatusOK || r.Header.Get("Mcpgate-Session") != "" {
			t.Fatalf("%s's second keyless request: %d %s (key %q); want it to join %[1]s's session", user, r.Status, r.Body, r.Header.Get("Mcpgate-Session"))
		}
	}
	if n := g.Sessions().Len(); n != 2 {
		t.Fatalf("%d sessions; want alice's and bob's", n)
	}
}

// TestSessionTrustedProxies: behind a trusted proxy, the client address
// is the one the proxy forwards for, so two clients behind it have
// per-address creation limits of their own and their sessions record
// their addresses; a peer that is not a trusted proxy has its
// X-Forwarded-For ignored, so a spoofed header cannot dodge the limit.
func TestSessionTrustedProxies(t *testing.T) {
	t.Parallel()
	up := fixtureHTTP(t, false)
	limitOne := func(proxies ...string) func(*config.Config) {
		return func(c *config.Config) {
			c.Listeners[0].TrustedProxies = proxies
			c.Sessions.CreationRate.PerAddress = &config.Window{Limit: 1, Window: time.Hour}
		}
	}
	initialize := func(url string, hdr map[string]string) rawResp {
		return do(t, "POST", url, initBodyVersion("2025-11-25"), hdr)
	}

	t.Run("trusted", func(t *testing.T) {
		t.Parallel()
		g := startIdentityGateway(t, limitOne("127.0.0.0/8", "::1"), httpRoute("fixture", "/mcp", up))
		url := g.URL + "/mcp"
		a := initialize(url, map[string]string{"X-Forwarded-For": "203.0.113.9, 198.51.100.1"})
		b := initialize(url, map[string]string{"Forwarded": `for="[2001:db8::7]:4711";proto=https`})
		for name, r := range map[string]rawResp{"client A": a, "client B": b} {
			if r.Status != http.StatusOK {
				t.Fatalf("%s's first session: %d %s", name, r.Status, r.Body)
			}
		}
		if addr := g.info(t, a.Header.Get("Mcp-Session-Id")).RemoteAddr; addr != "198.51.100.1" {
			t.Errorf("client A's session address %q; want 198.51.100.1 (the hop the trusted proxy saw)", addr)
		}
		if addr := g.info(t, b.Header.Get("Mcp-Session-Id")).RemoteAddr; addr != "2001:db8::7" {
			t.Errorf("client B's session address %q; want 2001:db8::7", addr)
		}
		if r := initialize(url, map[string]string{"X-Forwarded-For": "198.51.100.1"}); r.Status != http.StatusTooManyRequests {
			t.Fatalf("client A's second session: %d %s; want 429 (its own per-address limit)", r.Status, r.Body)
		}
	})

	t.Run("untrusted", func(t *testing.T) {
		t.Parallel()
		g := startIdentityGateway(t, limitOne("10.0.0.0/8"), httpRoute("fixture", "/mcp", up))
		url := g.URL + "/mcp"
		first := initialize(url, map[string]string{"X-Forwarded-For": "198.51.100.1"})
		if first.Status != http.StatusOK {
			t.Fatalf("first session: %d %s", first.Status, first.Body)
		}
		if addr := g.info(t, first.Header.Get("Mcp-Session-Id")).RemoteAddr; !strings.HasPrefix(addr, "127.0.0.1:") {
			t.Errorf("session address %q from an untrusted peer; want the peer's own", addr)
		}
		for _, spoof := range []map[string]string{{"X-Forwarded-For": "198.51.100.2"}, {"Forwarded": "for=198.51.100.3"}} {
			if r := initialize(url, spoof); r.Status != http.StatusTooManyRequests {
				t.Fatalf("second session with a spoofed %v: %d %s; want 429, the header ignored", spoof, r.Status, r.Body)
			}
		}
	})
}

// TestRestoreKeepsOwner: a legacy session restored from the embedded
// store after a restart still belongs to its principal: another principal
// presenting its id gets 404, the owner continues in it.
func TestRestoreKeepsOwner(t *testing.T) {
	t.Parallel()
	up := fixtureHTTP(t, false)
	dir := t.TempDir()
	embedded := func(c *config.Config) { c.Store = config.Store{Kind: config.StoreEmbedded, DataDir: dir} }
	first := startIdentityGateway(t, embedded, httpRoute("fixture", "/mcp", up))
	hdr := map[string]string{"X-Test-User": "alice", "X-Test-Tenant": "acme", "X-Test-Groups": "ops"}
	r := do(t, "POST", first.URL+"/mcp", initBodyVersion("2025-11-25"), hdr)
	id := r.Header.Get("Mcp-Session-Id")
	if r.Status != http.StatusOK || id == "" {
		t.Fatalf("initialize: %d %s", r.Status, r.Body)
	}
	hdr = with(hdr, "Mcp-Session-Id", id, "MCP-Protocol-Version", "2025-11-25")
	if n := do(t, "POST", first.URL+"/mcp", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, hdr); n.Status != http.StatusAccepted {
		t.Fatalf("initialized: %d %s", n.Status, n.Body)
	}
	first.stop()

	second := startIdentityGateway(t, embedded, httpRoute("fixture", "/mcp", up))
	url := second.URL + "/mcp"
	info := second.info(t, id) // restored at start
	if info.Principal != "user:alice" || info.Tenant != "acme" || !slices.Equal(info.Groups, []string{"ops"}) || info.Claims["sub"] != "alice" {
		t.Fatalf("restored session: principal %q tenant %q groups %v claims %v; want alice's identity", info.Principal, info.Tenant, info.Groups, info.Claims)
	}
	ping := `{"jsonrpc":"2.0","id":"p","method":"ping"}`
	wantNotFound(t, "bob with the restored session", do(t, "POST", url, ping, with(hdr, "X-Test-User", "bob")))
	wantNotFound(t, "alice of another tenant", do(t, "POST", url, ping, with(hdr, "X-Test-Tenant", "")))
	if r := do(t, "POST", url, ping, hdr); r.Status != http.StatusOK {
		t.Fatalf("alice's ping in her restored session: %d %s", r.Status, r.Body)
	}
}

// TestClusterFetchKeepsOwner: a legacy session created on one replica is
// fetched by another from the shared store only for its owner: another
// principal gets 404 there (and brings nothing over); the owner is served,
// and the fetched session refuses the other principal too.
func TestClusterFetchKeepsOwner(t *testing.T) {
	t.Parallel()
	requireRedis(t)
	up := fixtureHTTP(t, false)
	prefix := "mcpgate-test:" + session.NewID()[:12] + ":"
	t.Cleanup(func() { cleanupRedis(t, prefix) })
	secret := idKeys(testenv.IDKeySecret()) // shared by the replicas
	withRedis := func(c *config.Config) {
		c.Store = config.Store{Kind: config.StoreRedis, Redis: &config.RedisStore{Addr: "127.0.0.1:6379", Prefix: prefix}}
		secret(c)
	}
	a := startIdentityGateway(t, withRedis, httpRoute("fixture", "/mcp", up))
	b := startIdentityGateway(t, withRedis, httpRoute("fixture", "/mcp", up))
	alice := map[string]string{"X-Test-User": "alice"}
	r := do(t, "POST", a.URL+"/mcp", initBodyVersion("2025-11-25"), alice)
	id := r.Header.Get("Mcp-Session-Id")
	if r.Status != http.StatusOK || id == "" {
		t.Fatalf("initialize on replica A: %d %s", r.Status, r.Body)
	}
	alice = with(alice, "Mcp-Session-Id", id, "MCP-Protocol-Version", "2025-11-25")
	if n := do(t, "POST", a.URL+"/mcp", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, alice); n.Status != http.StatusAccepted {
		t.Fatalf("initialized: %d %s", n.Status, n.Body)
	}
	ping := `{"jsonrpc":"2.0","id":"p","method":"ping"}`
	bob := with(alice, "X-Test-User", "bob")
	wantNotFound(t, "bob on replica B", do(t, "POST", b.URL+"/mcp", ping, bob))
	if n := b.Sessions().Len(); n != 0 {
		t.Fatalf("replica B holds %d sessions after bob's request; want none fetched for him", n)
	}
	if r := do(t, "POST", b.URL+"/mcp", ping, alice); r.Status != http.StatusOK {
		t.Fatalf("alice on replica B: %d %s", r.Status, r.Body)
	}
	if p := b.info(t, id).Principal; p != "user:alice" {
		t.Fatalf("fetched session principal %q; want user:alice", p)
	}
	wantNotFound(t, "bob on replica B after the fetch", do(t, "POST", b.URL+"/mcp", ping, bob))
	if r := do(t, "POST", a.URL+"/mcp", ping, alice); r.Status != http.StatusOK {
		t.Fatalf("alice back on replica A: %d %s", r.Status, r.Body)
	}
}
