package e2e

import (
	"net/http"
	"testing"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/testutil/testenv"
)

// BenchmarkBackends measures session creation (initialize + initialized)
// and a request in an existing session through mcpgate with each store
// backend, against the same go-sdk upstream:
//
//	go test ./test/e2e -run '^$' -bench Backends
func BenchmarkBackends(b *testing.B) {
	upstream := fixtureHTTP(b, false)
	backends := []struct {
		name  string
		store func(b *testing.B) config.Store
	}{
		{"memory", func(*testing.B) config.Store { return config.Store{Kind: config.StoreMemory} }},
		{"embedded", func(b *testing.B) config.Store {
			return config.Store{Kind: config.StoreEmbedded, DataDir: b.TempDir()}
		}},
		{"redis", func(b *testing.B) config.Store {
			requireRedis(b)
			prefix := "mcpgate-bench:" + session.NewID()[:12] + ":"
			b.Cleanup(func() { cleanupRedis(b, prefix) })
			return config.Store{Kind: config.StoreRedis, Redis: &config.RedisStore{Addr: redisAddr, Prefix: prefix}}
		}},
	}
	for _, be := range backends {
		st := be.store(b)
		g := startGateway(b, func(c *config.Config) {
			c.Store = st
			c.Sessions.IDKeys = []config.IDKey{{ID: "k1", Secret: config.Secret(testenv.IDKeySecret())}}
			c.Sessions.CreationRate.PerAddress = &config.Window{} // off: the benchmark creates many
			c.Sessions.Max = 1 << 20
		}, httpRoute("fixture", "/mcp", upstream))
		url := g.URL + "/mcp"
		b.Run(be.name+"/create", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sid := legacySession(b, url)
				do(b, "DELETE", url, "", map[string]string{"Mcp-Session-Id": sid})
			}
		})
		b.Run(be.name+"/request", func(b *testing.B) {
			sid := legacySession(b, url)
			h := map[string]string{"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-06-18"}
			b.ReportAllocs()
			for b.Loop() {
				if r := do(b, "POST", url, `{"jsonrpc":"2.0","id":1,"method":"ping"}`, h); r.Status != http.StatusOK {
					b.Fatalf("ping: %d %s", r.Status, r.Body)
				}
			}
		})
	}
}
