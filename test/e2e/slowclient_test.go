package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/config"
)

// TestSlowClientDoesNotBlockOthers: one client asks for a tool that
// streams megabytes of log notifications and never reads its response;
// another session keeps calling tools at full speed meanwhile, and the
// stalled stream is dropped after the write timeout instead of holding
// the gateway. Not parallel: it bounds the latency of calls, which other
// tests' load would measure too.
func TestSlowClientDoesNotBlockOthers(t *testing.T) {
	s := mcp.NewServer(&mcp.Implementation{Name: "flood", Version: "1"}, &mcp.ServerOptions{})
	mcp.AddTool(s, &mcp.Tool{Name: "flood"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		chunk := strings.Repeat("x", 64<<10)
		for i := range 200 { // ~12 MiB, far beyond any socket buffer
			if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: req.Params.GetProgressToken(), Progress: float64(i), Message: chunk}); err != nil {
				return nil, nil, err
			}
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "flooded"}}}, nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "echo"}, func(_ context.Context, _ *mcp.CallToolRequest, in benchEcho) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text}}}, nil, nil
	})
	up := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil))
	t.Cleanup(up.Close) // after the gateway's own cleanup, which closes its upstream streams
	g := startGateway(t, func(c *config.Config) { c.Server.WriteTimeout = time.Second }, httpRoute("flood", "/mcp", up.URL))
	url := g.URL + "/mcp"

	// The stalled client: a raw connection that sends the call and never reads.
	sid := legacySession(t, url)
	conn, err := net.Dial("tcp", strings.TrimPrefix(g.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4 << 10)
	}
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"flood","arguments":{},"_meta":{"progressToken":"f"}}}`
	fmt.Fprintf(conn, "POST /mcp HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMcp-Session-Id: %s\r\nMCP-Protocol-Version: 2025-06-18\r\nContent-Length: %d\r\n\r\n%s",
		strings.TrimPrefix(g.URL, "http://"), sid, len(body), body)

	// Another session keeps working, quickly, while the flood is stuck.
	c := newSDKClient()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	var worst time.Duration
	for i := range 50 {
		start := time.Now()
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": fmt.Sprint(i)}})
		if err != nil || textOf(t, res) != fmt.Sprint(i) {
			t.Fatalf("call %d while another client stalls: %v", i, err)
		}
		worst = max(worst, time.Since(start))
	}
	if worst > 500*time.Millisecond {
		t.Errorf("a call took %s while another client stalled", worst)
	}
	// The stalled stream is let go: its session is still usable by a
	// well-behaved request (the flood finished upstream, into the stream's
	// bounded history, or was dropped).
	waitFor(t, "the stalled session to answer again", func() bool {
		r := do(t, "POST", url, `{"jsonrpc":"2.0","id":2,"method":"ping"}`, map[string]string{"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-06-18"})
		return r.Status == http.StatusOK
	})
	t.Logf("worst call latency while another client stalled: %s", worst)
}
