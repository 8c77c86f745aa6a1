package httpup_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream/httpup"
)

// TestResponseHeaderTimeoutSparesRequests: a go-sdk server without an event
// store sends no headers for an SSE tool call until its first event, so a
// tool that runs longer than response_header_timeout must still succeed;
// the timeout bounds only exchanges that are not client requests.
func TestResponseHeaderTimeoutSparesRequests(t *testing.T) {
	e := newEverything(t)
	mcp.AddTool(e.Server, &mcp.Tool{Name: "slow"}, func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
		return textResult("slow done"), nil, nil
	})
	ts, _ := sdkServer(t, e.Server, nil)
	u, err := httpup.New(httpup.Options{URL: ts.URL, ResponseHeaderTimeout: 100 * time.Millisecond}, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = u.Close() })
	c := open(t, u, core.EraLegacy, newSink())
	initialize(t, c, core.Version20251125)
	resp, err := c.RoundTrip(ctxT(t), msg(t, `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"slow","arguments":{}}}`), nil)
	if err != nil {
		t.Fatalf("slow tool through a 100ms header timeout: %v", err)
	}
	if got := toolText(t, resp); got != "slow done" {
		t.Fatalf("slow tool = %q", got)
	}
}

// TestResponseHeaderTimeoutBoundsProbe: an upstream that never sends
// headers fails the probe after response_header_timeout, and the failure is
// not cached.
func TestResponseHeaderTimeoutBoundsProbe(t *testing.T) {
	hold := make(chan struct{})
	ts, _ := serve(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-hold }))
	defer close(hold)
	u, err := httpup.New(httpup.Options{URL: ts.URL, ResponseHeaderTimeout: 100 * time.Millisecond}, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = u.Close() })
	start := time.Now()
	if _, err := u.Probe(ctxT(t)); err == nil {
		t.Fatal("probe of a silent upstream succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("probe took %s", d)
	}
}
