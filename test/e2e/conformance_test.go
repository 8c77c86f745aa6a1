package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/testutil/nodetool"
)

// TestConformanceThroughGateway runs the official conformance suite's server
// scenarios against the fixture directly and through mcpgate, and requires
// the same outcome: every active legacy scenario passes both ways, and the
// 2026-07-28 requirement set passes through the gateway as it does directly.
func TestConformanceThroughGateway(t *testing.T) {
	t.Parallel()
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
			t.Parallel()
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

// TestConformanceAcrossTheBreak runs the conformance suite's server
// scenarios through mcpgate in front of a server of the other era: the
// 2026-07-28 requirement set against a legacy-only fixture, and the
// 2025-11-25 one against a modern-only fixture. Each is compared with the
// same suite run directly against a fixture of the scenarios' own era; the
// differences are the translation's, and docs/era-bridging.md explains
// each. A scenario that passes natively and fails through the bridge
// without an entry in knownBridgeGaps fails the test.
func TestConformanceAcrossTheBreak(t *testing.T) {
	t.Parallel()
	nodetool.Node(t)
	tests := []struct {
		name string
		// native is the era of the fixture the scenarios were written for;
		// the gateway fronts a fixture of the other one.
		nativeStateless bool
		args            []string
	}{
		{"2026-07-28 scenarios, legacy server", true, []string{"--requirements", "2026-07-28"}},
		{"2025-11-25 scenarios, modern server", false, []string{"--requirements", "2025-11-25"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			direct := nodetool.RunConformance(ctx, t, fixtureHTTP(t, tt.nativeStateless), tt.args...)
			route := httpRoute("fixture", "/mcp", fixtureHTTP(t, !tt.nativeStateless))
			route.Upstream.Era = config.EraLegacy
			if !tt.nativeStateless {
				route.Upstream.Era = config.EraModern
			}
			g := startGateway(t, nil, route)
			via := nodetool.RunConformance(ctx, t, g.URL+"/mcp", tt.args...)
			dp, df := direct.Totals()
			vp, vf := via.Totals()
			t.Logf("native: %d passed, %d failed; bridged through mcpgate: %d passed, %d failed", dp, df, vp, vf)
			if d := via.Diff(direct); d != "" {
				t.Logf("native and bridged results differ:\n%s", d)
			}
			native := direct.Failures()
			for _, f := range via.Failures() {
				if slices.Contains(native, f) {
					continue // fails without the bridge too
				}
				if !slices.ContainsFunc(knownBridgeGaps, func(g string) bool { return strings.HasPrefix(f, g) }) {
					t.Errorf("scenario fails only across the break, with no explanation in docs/era-bridging.md: %s", f)
				}
			}
		})
	}
}

// knownBridgeGaps are scenario failures across the break that
// docs/era-bridging.md explains.
var knownBridgeGaps = []string{
	// A legacy server's questions carry no key; the bridge names them
	// itself, and the scenario expects the fixture's own key.
	"input-required-result-basic-elicitation: sep-2322-elicitation-incomplete",
}
