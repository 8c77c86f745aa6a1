package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/testutil/everything"
)

// TestTypeScriptClientThroughGateway drives the npm reference server
// (server-everything) through mcpgate with the TypeScript SDK client, with
// the server behind the gateway over Streamable HTTP and over stdio.
func TestTypeScriptClientThroughGateway(t *testing.T) {
	t.Parallel()
	cmd, args := everything.StdioCommand(t)
	upstreams := map[string]config.Route{
		"http":  httpRoute("everything", "/mcp", everything.StartHTTP(t)),
		"stdio": stdioRoute("everything", "/mcp", cmd, args...),
	}
	for name, route := range upstreams {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
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

// TestTypeScriptClientModernServer: the TypeScript SDK client, which speaks
// only the legacy era, through mcpgate to a go-sdk server that speaks only
// 2026-07-28: initialize is answered from server/discover, and the server's
// input_required results reach the client as sampling, elicitation and
// roots requests.
func TestTypeScriptClientModernServer(t *testing.T) {
	t.Parallel()
	route := httpRoute("fixture", "/mcp", fixtureHTTP(t, true))
	route.Upstream.Era = config.EraModern
	g := startGateway(t, nil, route)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep := runTSClient(ctx, t, 0, nil, "fixture.mjs", g.URL+"/mcp")
	if core.EraOf(rep.ProtocolVersion) != core.EraLegacy || len(rep.Steps) < 11 {
		t.Errorf("protocol %q, %d steps", rep.ProtocolVersion, len(rep.Steps))
	}
}

// TestGoSDKModernClientEverythingStdio: a go-sdk client speaking
// 2026-07-28 through mcpgate to the npm reference server over stdio, which
// speaks only the legacy era.
func TestGoSDKModernClientEverythingStdio(t *testing.T) {
	t.Parallel()
	cmd, args := everything.StdioCommand(t)
	g := startGateway(t, nil, stdioRoute("everything", "/mcp", cmd, args...))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := newSDKClient()
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: g.URL + "/mcp", MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: "2026-07-28"})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer cs.Close()
	if v := cs.InitializeResult().ProtocolVersion; v != "2026-07-28" {
		t.Fatalf("negotiated %q", v)
	}
	if n := cs.InitializeResult().ServerInfo; n == nil || !strings.Contains(n.Name, "everything") {
		t.Errorf("serverInfo %+v; want server-everything's", n)
	}
	tools, err := cs.ListTools(ctx, nil)
	if err != nil || len(tools.Tools) < 5 {
		t.Fatalf("tools/list: %v, %v", tools, err)
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"message": "across the break"}})
	if err != nil || !strings.Contains(textOf(t, res), "across the break") {
		t.Fatalf("echo: %v, %v", res, err)
	}
	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "get-sum", Arguments: map[string]any{"a": 2, "b": 3}})
	if err != nil || !strings.Contains(textOf(t, res), "5") {
		t.Fatalf("get-sum: %v, %v", textOf(t, res), err)
	}
	rl, err := cs.ListResources(ctx, nil)
	if err != nil || len(rl.Resources) == 0 {
		t.Fatalf("resources/list: %v, %v", rl, err)
	}
	if _, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: rl.Resources[0].URI}); err != nil {
		t.Fatalf("resources/read %s: %v", rl.Resources[0].URI, err)
	}
	pl, err := cs.ListPrompts(ctx, nil)
	if err != nil || len(pl.Prompts) == 0 {
		t.Fatalf("prompts/list: %v, %v", pl, err)
	}
}
