package e2e

import (
	"github.com/mcpgate/mcpgate/internal/testutil/testenv"
	"net/http"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/metrics/metricstest"
	"github.com/mcpgate/mcpgate/internal/session"
)

// TestStoreOutageCountedByOp: while Redis cannot be reached, the failures
// are counted under the operation that failed: the background flush of
// activity as op="touch" (it was logged, store_touch_flush_failed, but
// counted nowhere), and a refused creation as op="admit" (it failed at the
// shared creation rate window, counted under no operation).
func TestStoreOutageCountedByOp(t *testing.T) {
	t.Parallel()
	requireRedis(t)
	proxy := newCutProxy(t, "127.0.0.1:6379")
	prefix := "mcpgate-test:" + session.NewID()[:12] + ":"
	t.Cleanup(func() { cleanupRedis(t, prefix) })
	g, admin, _ := startAdminGateway(t, func(c *config.Config) {
		c.Store = config.Store{Kind: config.StoreRedis, FlushInterval: 50 * time.Millisecond,
			Redis: &config.RedisStore{Addr: proxy.ln.Addr().String(), Prefix: prefix}}
		c.Sessions.IDKeys = []config.IDKey{{ID: "k1", Secret: config.Secret(testenv.IDKeySecret())}}
	}, httpRoute("fixture", "/mcp", fixtureHTTP(t, false)))
	id := legacySession(t, g.URL+"/mcp")
	errorsOf := func(op string) float64 {
		fams, err := metricstest.Scrape(t.Context(), admin+"/metrics")
		if err != nil {
			t.Fatal(err)
		}
		v, ok := fams.Value("mcpgate_store_errors_total", "backend", "redis", "op", op)
		if !ok {
			t.Fatalf("mcpgate_store_errors_total{op=%q} missing", op)
		}
		return v
	}
	if n := errorsOf("touch") + errorsOf("admit"); n != 0 {
		t.Fatalf("store errors before the outage: %v", n)
	}

	proxy.setCut(true)
	if r := do(t, "POST", g.URL+"/mcp", initBody, nil); r.Status != http.StatusServiceUnavailable {
		t.Fatalf("initialize with the store down: %d %s", r.Status, r.Body)
	}
	if n := errorsOf("admit"); n != 1 {
		t.Errorf("refused creation counted %v times under op=admit; want 1", n)
	}
	// The session this replica holds keeps working; its activity (written
	// at most once a second) waits in memory, and each flush fails.
	ping := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	hdr := map[string]string{"Mcp-Session-Id": id, "MCP-Protocol-Version": "2025-06-18"}
	deadline := time.Now().Add(10 * time.Second)
	for errorsOf("touch") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no failed touch flush counted under op=touch within 10s")
		}
		if r := do(t, "POST", g.URL+"/mcp", ping, hdr); r.Status != http.StatusOK {
			t.Fatalf("a held session with the store down: %d %s", r.Status, r.Body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	proxy.setCut(false)
}
