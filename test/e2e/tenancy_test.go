package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/auth"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/core"
)

// TestTenantsNeverSeeEachOther: two tenants, each with a principal named
// "ops" (the same name, two principals), under concurrent load on one
// route and one shared upstream. Each client's results and progress
// notifications are its own; a tenant at its session cap is refused
// while the other still opens sessions; a session id or modern key of one
// tenant is, to the other, an unknown session (404, nothing revealed) and
// leaves the owner's session working.
func TestTenantsNeverSeeEachOther(t *testing.T) {
	t.Parallel()
	acme, _ := auth.NewKey()
	globex, _ := auth.NewKey()
	const perTenant = 3
	g := startAuthGateway(t, func(c *config.Config, _ string) {
		c.Auth = &config.Auth{APIKeys: []config.APIKey{
			{KeySHA256: auth.HashKey(acme), Principal: "ops", Tenant: "acme"},
			{KeySHA256: auth.HashKey(globex), Principal: "ops", Tenant: "globex"},
		}}
		c.Sessions.PerTenant = config.Cap{Max: perTenant, WhenFull: "reject"}
	}, httpRoute("fixture", "/mcp", fixtureHTTP(t, false)))
	url := g.URL + "/mcp"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// acme fills its cap; globex opens one session fewer than its own.
	type client struct {
		tenant string
		cs     *mcp.ClientSession
		mu     sync.Mutex
		tokens []string // progress tokens of the notifications it received
	}
	var clients []*client
	open := func(tenant, key string) {
		c := &client{tenant: tenant}
		sdk := mcp.NewClient(&mcp.Implementation{Name: "tenant-" + tenant, Version: "1"}, &mcp.ClientOptions{
			ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) {
				c.mu.Lock()
				c.tokens = append(c.tokens, fmt.Sprint(r.Params.ProgressToken))
				c.mu.Unlock()
			},
		})
		_, hc := newBearerClient(key)
		cs, err := sdk.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, MaxRetries: -1, HTTPClient: hc},
			&mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
		if err != nil {
			t.Fatalf("%s connects: %v", tenant, err)
		}
		t.Cleanup(func() { _ = cs.Close() })
		c.cs = cs
		clients = append(clients, c)
	}
	for range perTenant {
		open("acme", acme)
	}
	for range perTenant - 1 {
		open("globex", globex)
	}

	// Load: every client calls the progress tool with tokens of its own,
	// while acme keeps trying to open more sessions than its cap allows.
	const calls = 15
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range calls {
				token := fmt.Sprintf("%s-%d-%d", c.tenant, i, k)
				p := &mcp.CallToolParams{Name: "test_tool_with_progress"}
				p.SetProgressToken(token)
				res, err := c.cs.CallTool(ctx, p)
				if err != nil {
					t.Errorf("%s client %d call %d: %v", c.tenant, i, k, err)
					return
				}
				if got := res.Content[0].(*mcp.TextContent).Text; got != token {
					t.Errorf("%s client %d call %d: result %q; want its own token %q", c.tenant, i, k, got, token)
				}
			}
		}()
	}
	refused := 0
	for range 10 {
		r := do(t, "POST", url, initBodyVersion("2025-11-25"), authz(acme))
		if r.Status != http.StatusServiceUnavailable || r.Code != core.CodeSessionCap {
			t.Fatalf("acme's session past its tenant cap: %d %d %s; want 503 %d", r.Status, r.Code, r.Body, core.CodeSessionCap)
		}
		refused++
	}
	// globex is not exhausted by acme: its last session opens under load.
	hdr := legacySessionAs(t, url, globex)
	if r := do(t, "POST", url, `{"jsonrpc":"2.0","id":"p","method":"ping"}`, hdr); r.Status != http.StatusOK {
		t.Fatalf("globex's ping while acme is at its cap: %d %s", r.Status, r.Body)
	}
	wg.Wait()

	// Every notification a client received was for one of its own calls.
	for i, c := range clients {
		prefix := fmt.Sprintf("%s-%d-", c.tenant, i)
		c.mu.Lock()
		if len(c.tokens) == 0 {
			t.Errorf("%s client %d received no progress notification", c.tenant, i)
		}
		for _, tok := range c.tokens {
			if !strings.HasPrefix(tok, prefix) {
				t.Errorf("%s client %d received progress %q of another session", c.tenant, i, tok)
			}
		}
		c.mu.Unlock()
	}

	// Same principal name, other tenant: an acme session id is unknown to
	// globex's ops on every verb, and acme's session goes on.
	id := clients[0].cs.ID()
	asGlobex := with(sessHdr(id, "2025-11-25"), "Authorization", "Bearer "+globex)
	ping := `{"jsonrpc":"2.0","id":"p","method":"ping"}`
	wantNotFound(t, "globex's POST on acme's session", do(t, "POST", url, ping, asGlobex))
	wantNotFound(t, "globex's GET on acme's session", do(t, "GET", url, "", with(asGlobex, "Accept", "text/event-stream")))
	wantNotFound(t, "globex's resumption of acme's stream", do(t, "GET", url, "", with(asGlobex, "Accept", "text/event-stream", "Last-Event-ID", "0_0")))
	wantNotFound(t, "globex's DELETE of acme's session", do(t, "DELETE", url, "", asGlobex))
	if n := len(g.hijacks()); n != 4 {
		t.Fatalf("%d session_hijack_refused records; want 4", n)
	}
	if _, err := clients[0].cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text"}); err != nil {
		t.Fatalf("acme's call after globex's attempts: %v", err)
	}

	// The sessions the gateway made carry their tenant; the same principal
	// name never joins two tenants' sessions.
	perTenantSeen := map[string]int{}
	for _, info := range g.created() {
		if info.Principal != "ops" {
			t.Fatalf("session of principal %q", info.Principal)
		}
		perTenantSeen[info.Tenant]++
	}
	if perTenantSeen["acme"] != perTenant || perTenantSeen["globex"] != perTenant {
		t.Fatalf("sessions per tenant %v; want %d each", perTenantSeen, perTenant)
	}

	// Modern clients are keyed by principal and tenant: keyless requests of
	// the two "ops" land in two sessions, and one's key is unknown to the
	// other. Each tenant ends one session first to make room under its cap.
	if err := clients[1].cs.Close(); err != nil {
		t.Fatal(err)
	}
	if r := do(t, "DELETE", url, "", hdr); r.Status != http.StatusNoContent {
		t.Fatalf("globex's DELETE of its own session: %d %s", r.Status, r.Body)
	}
	params := `{"_meta":` + modernMeta("tenants") + `}`
	a := modernDo(t, url, "tools/list", params, authz(acme))
	b := modernDo(t, url, "tools/list", params, authz(globex))
	ka, kb := a.Header.Get("Mcpgate-Session"), b.Header.Get("Mcpgate-Session")
	if a.Status != http.StatusOK || b.Status != http.StatusOK || ka == "" || kb == "" || ka == kb {
		t.Fatalf("modern sessions: acme %d key %q, globex %d key %q; want two sessions", a.Status, ka, b.Status, kb)
	}
	wantNotFound(t, "globex with acme's modern key", modernDo(t, url, "tools/list", params, with(authz(globex), "Mcpgate-Session", ka)))
	if r := modernDo(t, url, "tools/list", params, with(authz(acme), "Mcpgate-Session", ka)); r.Status != http.StatusOK {
		t.Fatalf("acme with its own key: %d %s", r.Status, r.Body)
	}
}
