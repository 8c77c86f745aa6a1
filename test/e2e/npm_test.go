package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/testutil/everything"
)

// TestTypeScriptClientThroughGateway drives the npm reference server
// (server-everything) through mcpgate with the TypeScript SDK client, with
// the server behind the gateway over Streamable HTTP and over stdio.
func TestTypeScriptClientThroughGateway(t *testing.T) {
	cmd, args := everything.StdioCommand(t)
	upstreams := map[string]config.Route{
		"http":  httpRoute("everything", "/mcp", everything.StartHTTP(t)),
		"stdio": stdioRoute("everything", "/mcp", cmd, args...),
	}
	for name, route := range upstreams {
		t.Run(name, func(t *testing.T) {
			g := startGateway(t, nil, route)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			rep := everything.RunClient(ctx, t, g.URL+"/mcp")
			rep.AssertAllOK(t)
			if rep.HTTP.AfterDeleteStatus != 404 {
				t.Errorf("request after DELETE got %d, want 404", rep.HTTP.AfterDeleteStatus)
			}
			waitFor(t, "sessions to end", func() bool { return g.Sessions().Len() == 0 })
		})
	}
}
