package main

import (
	"os"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/testutil/nodetool"
	"github.com/mcpgate/mcpgate/internal/testutil/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// tiny is a load that exercises every measurement in well under a second
// per side.
var tiny = options{rounds: 2, round: 150 * time.Millisecond, sessions: 2, callers: 4, profileCalls: 200}

// check asserts what every scenario's pair of results must show: calls
// without errors on both sides, and the allocation figures of the mcpgate
// side taken.
func check(t *testing.T, rs []result) {
	t.Helper()
	if len(rs) != 2 || rs[0].Gateway || !rs[1].Gateway {
		t.Fatalf("results = %+v, want baseline then mcpgate", rs)
	}
	for _, r := range rs {
		if r.Calls == 0 || r.Errors != 0 || r.Throughput <= 0 || r.P50 <= 0 || r.P99 < r.P50 {
			t.Errorf("%s %s: %d calls, %d errors (%s), %.0f calls/s, p50 %.0f µs, p99 %.0f µs", r.Scenario, r.Name, r.Calls, r.Errors, r.FirstError, r.Throughput, r.P50, r.P99)
		}
	}
	gw := rs[1]
	if gw.Ratio <= 0 {
		t.Errorf("ratio = %v", gw.Ratio)
	}
	// The gateway allocates on every proxied call (it decodes each message
	// at least), and what it allocates in its own code is part of what the
	// process allocates more than on the baseline side.
	if gw.CodeAllocs < 1 || gw.CodeAllocsHTTP > gw.CodeAllocs {
		t.Errorf("in mcpgate code %.1f allocs/call, of it net/http %.1f", gw.CodeAllocs, gw.CodeAllocsHTTP)
	}
	if gw.AddedAllocs < gw.CodeAllocs/2 {
		t.Errorf("added %.1f allocs/call, less than half of the %.1f counted in mcpgate code", gw.AddedAllocs, gw.CodeAllocs)
	}
}

func TestHTTPScenario(t *testing.T) {
	check(t, httpScenario("http", false, "2025-11-25").measure(tiny))
}

// TestAuditScenario: both sides are gateways; the audited one allocates
// more per call (its records), and its records reach the file.
func TestAuditScenario(t *testing.T) {
	rs := auditScenario().measure(tiny)
	if len(rs) != 2 || rs[0].Gateway || !rs[1].Gateway {
		t.Fatalf("results = %+v", rs)
	}
	for _, r := range rs {
		if r.Calls == 0 || r.Errors != 0 || r.Throughput <= 0 {
			t.Errorf("%s: %d calls, %d errors (%s)", r.Name, r.Calls, r.Errors, r.FirstError)
		}
	}
	if rs[1].AddedAllocs <= 0 || rs[1].Ratio <= 0 {
		t.Errorf("audited: %.1f added allocs/call, ratio %.2f", rs[1].AddedAllocs, rs[1].Ratio)
	}
}

// TestProfileCountsOnlyMcpgate runs the profiled count on a direct side,
// whose calls never enter mcpgate code: what it counts is only the idle
// gateway's background work, far below one allocation per call.
func TestProfileCountsOnlyMcpgate(t *testing.T) {
	s := httpScenario("http", false, "2025-11-25")
	defer s.cleanup()
	defer s.mcpgate.stop()
	l := connect(s.name, s.baseline, s.version, tiny)
	defer l.close()
	if all, _ := l.codeAllocs(300); all > 0.5 {
		t.Errorf("direct calls: %.2f allocs/call counted in mcpgate code, want ~0", all)
	}
}

func TestStdioScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("builds examples/echo-server and starts supergateway")
	}
	o := tiny
	o.node = nodetool.Node(t)
	o.supergateway = nodetool.Bin(t, "supergateway", "dist/index.js")
	check(t, stdioScenario(o).measure(o))
}
