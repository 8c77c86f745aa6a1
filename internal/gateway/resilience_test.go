package gateway

import (
	"testing"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/metrics/metricstest"
	"github.com/mcpgate/mcpgate/internal/upstream/bridge"
	"github.com/mcpgate/mcpgate/internal/upstream/resilient"
)

// TestResilienceWrapper: a route with retry or breaker gets the
// resilient wrapper under its bridge, one without gets none (no cost);
// the breaker's gauge is registered on the gateway's registry.
func TestResilienceWrapper(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, func(c *config.Config) {
		plain := c.Routes[0]
		c.Routes[0].Name = "guarded"
		c.Routes[0].Upstream.Retry = &config.Retry{}
		c.Routes[0].Upstream.Breaker = &config.Breaker{}
		plain.Name, plain.Path = "plain", "/plain/mcp"
		c.Routes = append(c.Routes, plain)
	})
	g, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range g.live.routes {
		_, wrapped := r.up.(*bridge.Upstream).Inner().(*resilient.Upstream)
		if want := r.cfg.Name == "guarded"; wrapped != want {
			t.Errorf("route %s: wrapped %v, want %v", r.cfg.Name, wrapped, want)
		}
	}
	fams, err := metricstest.Gather(g.Metrics())
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := fams.Value("mcpgate_breaker_state", "route", "guarded"); !ok || v != 0 {
		t.Errorf("mcpgate_breaker_state{route=guarded} = %v (%v), want 0", v, ok)
	}
	if _, ok := fams.Value("mcpgate_breaker_state", "route", "plain"); ok {
		t.Error("a route without a breaker shows a breaker state")
	}
}
