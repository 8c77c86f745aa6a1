package frontend

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/session"
)

// TestPanicBecomesJSONRPCError: a bug reached while handling a request
// (here: a route without an upstream) answers that request with a JSON-RPC
// internal error and HTTP 500; the gateway keeps serving.
func TestPanicBecomesJSONRPCError(t *testing.T) {
	mgr := session.NewManager(session.Options{})
	defer mgr.Close(context.Background())
	f, err := New(Options{Sessions: mgr}, []*Route{{Name: "broken", Path: "/mcp", Clients: EraAuto}})
	if err != nil {
		t.Fatal(err)
	}
	h := f.Handler(ListenerPolicy{Loopback: true})
	for range 2 {
		body := `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`
		req := httptest.NewRequest("POST", "http://localhost/mcp", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("MCP-Protocol-Version", "2026-07-28")
		req.Header.Set("Mcp-Method", "tools/list")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), `"code":-32603`) {
			t.Fatalf("got %d %s", rec.Code, rec.Body.String())
		}
	}
}
