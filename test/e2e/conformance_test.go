package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/testutil/nodetool"
)

// TestConformanceThroughGateway runs the official conformance suite's server
// scenarios against the fixture directly and through mcpgate, and requires
// the same outcome: every active legacy scenario passes both ways, and the
// 2026-07-28 requirement set passes through the gateway as it does directly.
func TestConformanceThroughGateway(t *testing.T) {
	nodetool.Node(t) // fails under CI=true, skips elsewhere, when Node is missing
	tests := []struct {
		name      string
		stateless bool
		args      []string
	}{
		{"legacy active suite", false, nil},
		{"2026-07-28 requirements", true, []string{"--requirements", "2026-07-28"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			upstream := fixtureHTTP(t, tt.stateless)
			direct := nodetool.RunConformance(ctx, t, upstream, tt.args...)
			g := startGateway(t, nil, httpRoute("fixture", "/mcp", upstream))
			via := nodetool.RunConformance(ctx, t, g.URL+"/mcp", tt.args...)
			dp, df := direct.Totals()
			vp, vf := via.Totals()
			t.Logf("direct: %d passed, %d failed; through mcpgate: %d passed, %d failed", dp, df, vp, vf)
			if f := direct.Failures(); len(f) > 0 {
				t.Errorf("fixture fails scored scenarios directly: %v", f)
			}
			if f := via.Failures(); len(f) > 0 {
				t.Errorf("scored scenarios failing through mcpgate: %v", f)
			}
			if via.ExitCode != 0 {
				t.Errorf("conformance exit code through mcpgate = %d", via.ExitCode)
			}
			if d := via.Diff(direct); d != "" {
				t.Errorf("direct and through-gateway results differ:\n%s", d)
			}
			if len(via.Scenarios) != len(direct.Scenarios) {
				t.Errorf("scenarios run: direct %d, through mcpgate %d", len(direct.Scenarios), len(via.Scenarios))
			}
		})
	}
}
