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

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/testutil/conformancefixture"
)

// restartable is an HTTP upstream whose server can be restarted: a new
// handler, which knows none of the old sessions (their ids get 404).
type restartable struct {
	h atomic.Pointer[http.Handler]
}

func (r *restartable) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	(*r.h.Load()).ServeHTTP(w, req)
}

func (r *restartable) restart(ctx context.Context) {
	h := conformancefixture.Handler(ctx, false)
	r.h.Store(&h)
}

// TestModernClientLegacyServerRestart: a modern client of a stateful
// legacy HTTP server that restarts. The bridge's upstream session is gone;
// a call that is safe to repeat (tools/list, a read) is repeated on a new
// one transparently, as for legacy clients; a tool call gets an error
// saying it may or may not have run; and the session goes on.
func TestModernClientLegacyServerRestart(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	up := &restartable{}
	up.restart(ctx)
	srv := httptest.NewServer(up)
	t.Cleanup(srv.Close)
	route := httpRoute("fixture", "/mcp", srv.URL+"/")
	route.Upstream.Era = config.EraLegacy
	g := startGateway(t, nil, route)

	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	defer rcancel()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "modern", Version: "1"}, nil).Connect(rctx,
		&mcp.StreamableClientTransport{Endpoint: g.URL + "/mcp", MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: "2026-07-28"})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if _, err := cs.ListTools(rctx, nil); err != nil {
		t.Fatal(err)
	}

	up.restart(ctx)
	if _, err := cs.ListTools(rctx, nil); err != nil {
		t.Fatalf("tools/list after the upstream restarted: %v; want it repeated on a new upstream session", err)
	}
	up.restart(ctx)
	if _, err := cs.ReadResource(rctx, &mcp.ReadResourceParams{URI: "test://static-text"}); err != nil {
		t.Fatalf("resources/read after the upstream restarted: %v", err)
	}
	up.restart(ctx)
	_, err = cs.CallTool(rctx, &mcp.CallToolParams{Name: "test_simple_text"})
	if err == nil || !strings.Contains(err.Error(), "may or may not have run") {
		t.Fatalf("tools/call after the upstream restarted: %v; want an error saying it may or may not have run", err)
	}
	res, err := cs.CallTool(rctx, &mcp.CallToolParams{Name: "test_simple_text"})
	if err != nil || textOf(t, res) == "" {
		t.Fatalf("the next tool call: %v, %v", res, err)
	}
}
