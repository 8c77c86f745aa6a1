package e2e

import (
	"context"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/core"
)

// TestSandboxedStdioOutOfMemory: a sandboxed server that allocates past
// its address-space limit dies; its client is told the session ended and
// the gateway serves the next session as before.
func TestSandboxedStdioOutOfMemory(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("the sandbox is Linux's")
	}
	route := stdioRoute("boxed", "/mcp", stdioServerBin)
	route.Upstream.Stdio.Sandbox = &config.Sandbox{Rlimits: config.Rlimits{AddressSpace: 3 << 30, OpenFiles: 128}}
	g := startGateway(t, nil, route)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs := connectSDK(ctx, t, g.URL+"/mcp", "2025-11-25", nil)
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "alloc", Arguments: map[string]any{"mib": 16}})
	if err != nil || res.IsError {
		t.Fatalf("a small allocation: %v %v", res, err)
	}
	// Raw, so the answer to this request is what is checked (the
	// client's own GET stream ends at the same moment).
	r := do(t, "POST", g.URL+"/mcp", `{"jsonrpc":"2.0","id":"big","method":"tools/call","params":{"name":"alloc","arguments":{"mib":4096}}}`,
		sessHdr(cs.ID(), "2025-11-25"))
	if r.Status != http.StatusNotFound || r.Code != core.CodeSessionNotFound || !strings.Contains(r.Msg, "session ended") {
		t.Fatalf("allocation past the limit: %d (code %d) %s; want the session to end with a clear error", r.Status, r.Code, r.Body)
	}
	next := connectSDK(ctx, t, g.URL+"/mcp", "2025-11-25", nil)
	res, err = next.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "fine"}})
	if err != nil || textOf(t, res) != "fine" {
		t.Fatalf("the next session: %v %v", res, err)
	}
}
