package e2e

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/config"
)

// sdkClient is a go-sdk client that answers sampling and elicitation and
// counts progress notifications.
type sdkClient struct {
	*mcp.Client
	sampled, elicited, progress atomic.Int32
}

func newSDKClient() *sdkClient {
	c := &sdkClient{}
	c.Client = mcp.NewClient(&mcp.Implementation{Name: "e2e-client", Version: "1.0.0"}, &mcp.ClientOptions{
		CreateMessageHandler: func(_ context.Context, req *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
			c.sampled.Add(1)
			return &mcp.CreateMessageResult{Model: "e2e-model", Role: "assistant", Content: &mcp.TextContent{Text: "forty-two"}}, nil
		},
		ElicitationHandler: func(_ context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			c.elicited.Add(1)
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"username": "gopher"}}, nil
		},
		ProgressNotificationHandler: func(context.Context, *mcp.ProgressNotificationClientRequest) {
			c.progress.Add(1)
		},
	})
	return c
}

func textOf(t testing.TB, res *mcp.CallToolResult) string {
	t.Helper()
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// exercise runs the scenario every pairing must pass: tools, progress,
// sampling, elicitation, resources, prompts.
func exercise(ctx context.Context, t *testing.T, c *sdkClient, cs *mcp.ClientSession) {
	t.Helper()
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	if len(tools.Tools) < 10 {
		t.Errorf("tools/list returned %d tools", len(tools.Tools))
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text"})
	if err != nil || textOf(t, res) != "This is a simple text response for testing." {
		t.Fatalf("test_simple_text = %v, %v", res, err)
	}
	params := &mcp.CallToolParams{Name: "test_tool_with_progress"}
	params.SetProgressToken("tok-1")
	if _, err := cs.CallTool(ctx, params); err != nil {
		t.Fatalf("progress tool: %v", err)
	}
	waitFor(t, "progress notifications", func() bool { return c.progress.Load() >= 3 })
	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_sampling", Arguments: map[string]any{"prompt": "the answer?"}})
	if err != nil || !strings.Contains(textOf(t, res), "forty-two") || c.sampled.Load() != 1 {
		t.Fatalf("sampling round trip: %v %v (sampled %d)", textOf(t, res), err, c.sampled.Load())
	}
	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_elicitation", Arguments: map[string]any{"message": "name?"}})
	if err != nil || !strings.Contains(textOf(t, res), "gopher") || c.elicited.Load() != 1 {
		t.Fatalf("elicitation round trip: %v %v", textOf(t, res), err)
	}
	rr, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "test://static-text"})
	if err != nil || len(rr.Contents) != 1 || rr.Contents[0].Text == "" {
		t.Fatalf("resources/read: %v, %v", rr, err)
	}
	pr, err := cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: "test_simple_prompt"})
	if err != nil || len(pr.Messages) == 0 {
		t.Fatalf("prompts/get: %v, %v", pr, err)
	}
}

// TestGoSDKLegacyEra: go-sdk clients pinned to each session-era revision,
// through mcpgate, to a go-sdk server over Streamable HTTP and over stdio.
func TestGoSDKLegacyEra(t *testing.T) {
	t.Parallel()
	upstreams := map[string]config.Route{
		"http":  httpRoute("fixture", "/mcp", fixtureHTTP(t, false)),
		"stdio": stdioRoute("fixture", "/mcp", fixtureBin),
	}
	for upName, route := range upstreams {
		g := startGateway(t, nil, route)
		for _, version := range []string{"2025-03-26", "2025-06-18", "2025-11-25"} {
			t.Run(upName+"/"+version, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				c := newSDKClient()
				cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: g.URL + "/mcp", MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: version})
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				if got := cs.InitializeResult().ProtocolVersion; got != version {
					t.Errorf("negotiated %q, want %q", got, version)
				}
				if g.Sessions().Len() != 1 {
					t.Errorf("gateway sessions = %d, want 1", g.Sessions().Len())
				}
				exercise(ctx, t, c, cs)
				if err := cs.Close(); err != nil {
					t.Errorf("close: %v", err)
				}
				waitFor(t, "session end", func() bool { return g.Sessions().Len() == 0 })
			})
		}
	}
}

// TestGoSDKModernEra: a go-sdk client speaking 2026-07-28 through mcpgate to
// a stateless go-sdk server; sampling and elicitation travel as MRTR
// input_required results, untouched by the gateway.
func TestGoSDKModernEra(t *testing.T) {
	t.Parallel()
	g := startGateway(t, nil, httpRoute("fixture", "/mcp", fixtureHTTP(t, true)))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := newSDKClient()
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: g.URL + "/mcp", MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: "2026-07-28"})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer cs.Close()
	if got := cs.InitializeResult().ProtocolVersion; got != "2026-07-28" {
		t.Fatalf("negotiated %q, want 2026-07-28", got)
	}
	exercise(ctx, t, c, cs)
	if n := g.Sessions().Len(); n < 1 {
		t.Errorf("modern traffic formed no gateway session")
	}
}
