package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
)

// TestStdioProcessDeath: a stdio server that dies ends its session: the
// request in flight gets a clear error with 404, and the session id answers
// 404 afterwards, so the client knows to start again.
func TestStdioProcessDeath(t *testing.T) {
	t.Parallel()
	// Answers initialize, swallows the initialized notification, then exits
	// on the next message, like a crashing server.
	script := `read -r line; printf '%s\n' '{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"dies","version":"1"}}}'; read -r line; read -r line; echo "fatal: out of cheese" >&2; exit 3`
	route := stdioRoute("dies", "/mcp", "sh", "-c", script)
	route.Upstream.Era = config.EraLegacy
	g := startGateway(t, nil, route)
	url := g.URL + "/mcp"
	sid := legacySession(t, url)
	h := map[string]string{"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-06-18"}
	r := do(t, "POST", url, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x","arguments":{}}}`, h)
	if r.Status != http.StatusNotFound || r.Code != -32011 || string(r.ID) != "2" {
		t.Fatalf("request to a dead server: %d %s", r.Status, r.Body)
	}
	waitFor(t, "session end", func() bool { return g.Sessions().Len() == 0 })
	if r := do(t, "POST", url, `{"jsonrpc":"2.0","id":3,"method":"ping"}`, h); r.Status != http.StatusNotFound {
		t.Fatalf("after death: %d %s", r.Status, r.Body)
	}
}

// TestModernStreamCloseCancelsUpstream: in the 2026-07-28 era, a client that
// closes its response stream cancels the request; mcpgate closes its own
// upstream stream in turn.
func TestModernStreamCloseCancelsUpstream(t *testing.T) {
	t.Parallel()
	started, cancelled := make(chan struct{}, 1), make(chan struct{}, 1)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		_ = json.Unmarshal(body, &req)
		w.Header().Set("Content-Type", "application/json")
		switch req.Method {
		case "server/discover":
			_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":` + string(req.ID) + `,"result":{"supportedVersions":["2026-07-28"],"capabilities":{"tools":{}},"serverInfo":{"name":"blocker","version":"1"},"resultType":"complete"}}`))
		case "tools/call":
			started <- struct{}{}
			<-r.Context().Done()
			cancelled <- struct{}{}
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":` + string(req.ID) + `,"error":{"code":-32601,"message":"no"}}`))
		}
	}))
	t.Cleanup(upstream.Close)
	g := startGateway(t, nil, httpRoute("blocker", "/mcp", upstream.URL))

	ctx, cancel := context.WithCancel(context.Background())
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"block","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	req, _ := http.NewRequestWithContext(ctx, "POST", g.URL+"/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", "tools/call")
	req.Header.Set("Mcp-Name", "block")
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		errc <- err
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the call never reached the upstream")
	}
	cancel()
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("closing the client stream did not cancel the upstream request")
	}
	<-errc
}
