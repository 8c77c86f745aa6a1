package e2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestLegacyClientModernOnlyServer: a go-sdk server restricted to
// 2026-07-28 still answers a handshake-era initialize (with 2025-11-25) and
// then refuses everything else. Its server/discover lists no legacy
// version, so mcpgate (era probed, not pinned) serves a legacy client of it
// through the bridge instead of forwarding initialize natively.
func TestLegacyClientModernOnlyServer(t *testing.T) {
	t.Parallel()
	// (go-sdk's session handler restricted to 2026-07-28 serves nothing at
	// all: its discover lists no version and it refuses modern requests.)
	srv := mcp.NewServer(&mcp.Implementation{Name: "modern-only", Version: "1.0.0"},
		&mcp.ServerOptions{SupportedProtocolVersions: []string{"2026-07-28"}})
	mcp.AddTool(srv, &mcp.Tool{Name: "echo"}, func(_ context.Context, _ *mcp.CallToolRequest, in struct {
		Text string `json:"text"`
	}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text}}}, nil, nil
	})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, &mcp.StreamableHTTPOptions{Stateless: true})
	up := httptest.NewServer(h)
	t.Cleanup(up.Close)
	g := startGateway(t, nil, httpRoute("modern-only", "/mcp", up.URL+"/"))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := mcp.NewClient(&mcp.Implementation{Name: "legacy-client", Version: "1.0.0"}, nil)
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: g.URL + "/mcp", MaxRetries: -1},
		&mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatalf("connect through mcpgate: %v", err)
	}
	defer cs.Close()
	if v := cs.InitializeResult().ProtocolVersion; v != "2025-11-25" {
		t.Fatalf("negotiated %q; want 2025-11-25", v)
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "across"}})
	if err != nil || textOf(t, res) != "across" {
		t.Fatalf("echo: %v, %v", res, err)
	}
}
