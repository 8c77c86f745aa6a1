package e2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

type benchEcho struct {
	Text string `json:"text"`
}

// BenchmarkToolsCall compares a go-sdk client calling a small echo tool
// directly and through mcpgate, in one run, for both eras:
//
//	go test ./test/e2e -run '^$' -bench ToolsCall -count 10 | benchstat -
func BenchmarkToolsCall(b *testing.B) {
	for _, era := range []struct {
		name      string
		stateless bool
		version   string
	}{{"legacy", false, "2025-11-25"}, {"modern", true, "2026-07-28"}} {
		s := mcp.NewServer(&mcp.Implementation{Name: "bench", Version: "1"}, nil)
		mcp.AddTool(s, &mcp.Tool{Name: "echo"}, func(_ context.Context, _ *mcp.CallToolRequest, in benchEcho) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text}}}, nil, nil
		})
		up := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s },
			&mcp.StreamableHTTPOptions{Stateless: era.stateless, JSONResponse: true}))
		g := startGateway(b, nil, httpRoute("bench", "/mcp", up.URL+"/"))
		for _, target := range []struct{ name, url string }{{"direct", up.URL + "/"}, {"mcpgate", g.URL + "/mcp"}} {
			b.Run(era.name+"/"+target.name, func(b *testing.B) {
				ctx := context.Background()
				c := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil)
				cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: target.url, MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: era.version})
				if err != nil {
					b.Fatal(err)
				}
				defer cs.Close()
				args := &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hello"}}
				b.ReportAllocs()
				for b.Loop() {
					if _, err := cs.CallTool(ctx, args); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		up.Close()
	}
}
