package e2e

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/logs"
)

// TestComponentLogLevels: a real gateway's components log at their own
// levels: the pipeline's exchange records at debug while the session
// manager stays at the global warn; raising the session manager's level
// at run time lets its lines through. Every line about the session names
// its fingerprint, principal and route.
func TestComponentLogLevels(t *testing.T) {
	t.Parallel()
	lines := new(logLines)
	global := new(slog.LevelVar)
	global.Set(slog.LevelWarn)
	levels := logs.NewLevels(global, config.Components...)
	if err := levels.Set("pipeline", slog.LevelDebug); err != nil {
		t.Fatal(err)
	}
	log := slog.New(levels.Handler(slog.NewJSONHandler(lines, &slog.HandlerOptions{Level: slog.Level(-8)})))
	g := startGatewayLogging(t, log, nil, httpRoute("fixture", "/mcp", fixtureHTTP(t, false)))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := newSDKClient().Connect(ctx, &mcp.StreamableClientTransport{Endpoint: g.URL + "/mcp", MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text"}); err != nil {
		t.Fatal(err)
	}
	exchanges := lines.records("mcp_exchange")
	if len(exchanges) == 0 {
		t.Fatal("no mcp_exchange record at the pipeline's debug level")
	}
	for _, r := range exchanges {
		if r["component"] != "pipeline" || r["session"] == "" || r["session"] == nil || r["route"] != "fixture" || r["principal"] == nil {
			t.Errorf("exchange record without its component, session, principal or route: %v", r)
		}
	}
	if n := len(lines.records("session_created")); n != 0 {
		t.Errorf("%d session_created records at the global warn level", n)
	}
	if err := levels.Set("session", slog.LevelInfo); err != nil {
		t.Fatal(err)
	}
	if err := cs.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the end", func() bool { return g.Sessions().Len() == 0 })
	waitFor(t, "session_ended at the session manager's info level", func() bool { return len(lines.records("session_ended")) == 1 })
	r := lines.records("session_ended")[0]
	if r["component"] != "session" || r["route"] != "fixture" || r["principal"] != "anonymous" || !strings.Contains(r["reason"].(string), "deleted") {
		t.Errorf("session_ended record: %v", r)
	}
}
