package e2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/testutil/conformancefixture"
	"github.com/mcpgate/mcpgate/internal/testutil/nodetool"
)

// TestSSEPollingWithoutEventIDs: go-sdk without an event store closes a
// POST stream early (test_reconnection) with only a retry field, no event
// id, so the response can never be resumed. Directly the conformance
// scenario server-sse-polling passes with warnings; through mcpgate it
// must score no worse — the lost response is one request's JSON-RPC error,
// not an HTTP 502 that reads as a broken server.
func TestSSEPollingWithoutEventIDs(t *testing.T) {
	nodetool.Node(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// go-sdk's session handler with its defaults: no event store, so
	// stream events carry no ids.
	srv := conformancefixture.New(ctx)
	up := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil))
	t.Cleanup(up.Close)
	g := startGateway(t, nil, httpRoute("fixture", "/mcp", up.URL+"/"))

	direct := nodetool.RunConformance(ctx, t, up.URL+"/", "--scenario", "server-sse-polling")
	via := nodetool.RunConformance(ctx, t, g.URL+"/mcp", "--scenario", "server-sse-polling")
	d, v := direct.Scenarios["server-sse-polling"], via.Scenarios["server-sse-polling"]
	t.Logf("server-sse-polling directly: %d passed, %d failed, %d warnings; through mcpgate: %d passed, %d failed, %d warnings",
		d.Passed, d.Failed, d.Warnings, v.Passed, v.Failed, v.Warnings)
	if d.Failed > 0 {
		t.Fatalf("the scenario fails directly: %v", d.Failures)
	}
	if v.Passed < d.Passed || v.Failed > d.Failed || v.Warnings > d.Warnings {
		t.Errorf("through mcpgate the scenario scores worse than directly: %v\n%s", v.Failures, via.Output)
	}
}

// TestLostResponseRepeatedWhenSafe: when an upstream closes a request's
// stream with no event id to resume from, a request safe to repeat (a
// read) is sent again and the client gets its result; another (a tool
// call) gets a JSON-RPC error, and the session goes on.
func TestLostResponseRepeatedWhenSafe(t *testing.T) {
	t.Parallel()
	var reads, calls atomic.Int32
	srv := mcp.NewServer(&mcp.Implementation{Name: "polling", Version: "1"}, nil)
	srv.AddResource(&mcp.Resource{URI: "test://r", Name: "r"}, func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		if reads.Add(1) == 1 {
			req.Extra.CloseSSEStream(mcp.CloseSSEStreamArgs{RetryAfter: 10 * time.Millisecond})
		}
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: "test://r", Text: "read"}}}, nil
	})
	mcp.AddTool(srv, &mcp.Tool{Name: "act"}, func(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		if calls.Add(1) == 1 {
			req.Extra.CloseSSEStream(mcp.CloseSSEStreamArgs{RetryAfter: 10 * time.Millisecond})
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "acted"}}}, nil, nil
	})
	up := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil))
	t.Cleanup(up.Close)
	g := startGateway(t, nil, httpRoute("polling", "/mcp", up.URL+"/"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "c", Version: "1"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: g.URL + "/mcp", MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()

	rr, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "test://r"})
	if err != nil || len(rr.Contents) != 1 || rr.Contents[0].Text != "read" {
		t.Fatalf("resources/read after a lost response: %v, %v", rr, err)
	}
	if n := reads.Load(); n != 2 {
		t.Errorf("the server was asked %d times; want 2 (the read repeated once)", n)
	}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "act"}); err == nil || !strings.Contains(err.Error(), "may or may not have run") {
		t.Fatalf("a tool call whose response was lost: %v; want an error saying it may have run", err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("the tool ran %d times; want 1 (not repeated)", n)
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "act"})
	if err != nil || textOf(t, res) != "acted" {
		t.Fatalf("the session after a lost response: %v, %v", res, err)
	}
}
