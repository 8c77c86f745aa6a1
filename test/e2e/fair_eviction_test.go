package e2e

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/session"
)

// clientFrom is an HTTP client whose connections come from the loopback
// address local (127.0.0.0/8 is all loopback on Linux), so the gateway
// sees another client address.
func clientFrom(local string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

// TestBoundsEvictionSparesOtherAddresses reproduces the report with real
// go-sdk clients: sessions.max 50 with evict-idlest, client A (127.0.0.1)
// holds 10 sessions, client B (127.0.0.2) creates 60. A keeps all 10 and
// they keep working: B pushes out only its own sessions, under the global
// cap alone and under the default per-address cap (which holds B to 32).
func TestBoundsEvictionSparesOtherAddresses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		perAddr   *config.Cap
		wantBLive int
	}{
		{"global cap only", &config.Cap{Max: 0}, 40},
		{"default per-address cap", nil, config.DefaultMaxPerAddress},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startGateway(t, func(c *config.Config) {
				c.Sessions.Max = 50
				c.Sessions.WhenFull = "evict-idlest"
				c.Sessions.PerAddress = tc.perAddr
			}, httpRoute("fixture", "/mcp", fixtureHTTP(t, false)))
			url := g.URL + "/mcp"
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			const v = "2025-11-25"
			watch := watchGlobalCount(g.Sessions())
			var a []*mcp.ClientSession
			for range 10 {
				a = append(a, connectSDK(ctx, t, url, v, clientFrom("127.0.0.1")))
			}
			hb := clientFrom("127.0.0.2")
			var b []*mcp.ClientSession
			for range 60 {
				b = append(b, connectSDK(ctx, t, url, v, hb))
			}
			for i, cs := range a {
				res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text"})
				if err != nil || textOf(t, res) != simpleText {
					t.Errorf("A's session %d after B's 60 creations: %v", i, err)
				}
			}
			live := 0
			for _, cs := range b {
				if r := pingAs(t, url, cs.ID(), v); r.Status == http.StatusOK {
					live++
				}
			}
			if live != tc.wantBLive {
				t.Errorf("B holds %d live sessions; want %d", live, tc.wantBLive)
			}
			if r := pingAs(t, url, b[59].ID(), v); r.Status != http.StatusOK {
				t.Errorf("B's newest session: %d %s", r.Status, r.Body)
			}
			if n := g.Sessions().Count(session.ScopeAddress, "127.0.0.2"); tc.perAddr == nil && n != config.DefaultMaxPerAddress {
				t.Errorf("B's address count %d; want %d", n, config.DefaultMaxPerAddress)
			}
			if m := watch.Max(); m > 50 {
				t.Errorf("global count reached %d, cap 50", m)
			}
			t.Logf("B live %d of 60, total %d", live, g.Sessions().Len())
		})
	}
}
