package e2e

import (
	"context"
	"fmt"
	"github.com/mcpgate/mcpgate/internal/testutil/testenv"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/session"
)

// TestClusterDeleteEndsEverywhere: two replicas on one Redis, a legacy
// session over an HTTP upstream that both hold a copy of. A DELETE on one
// replica ends it on the other too, in both orders of events:
//
//   - a call in flight on the other replica when the DELETE lands gets a
//     JSON-RPC answer with its id (here: the session ended), never HTTP 202
//     with no body;
//   - once the DELETE has answered 204, a call on the other replica gets
//     404 and never reaches the upstream, even before that replica has
//     heard the announcement.
func TestClusterDeleteEndsEverywhere(t *testing.T) {
	t.Parallel()
	requireRedis(t)
	s := mcp.NewServer(&mcp.Implementation{Name: "counting", Version: "1"}, nil)
	var calls atomic.Int64
	started, release := make(chan struct{}, 1), make(chan struct{})
	mcp.AddTool(s, &mcp.Tool{Name: "count"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		calls.Add(1)
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "counted"}}}, nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "block"}, func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		started <- struct{}{}
		// go-sdk does not cancel a call whose session is deleted; it
		// waits for it, so the test lets it go at the end.
		select {
		case <-ctx.Done():
		case <-release:
		}
		return nil, nil, ctx.Err()
	})
	up := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil))
	t.Cleanup(up.Close)
	var releaseOnce sync.Once
	letGo := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(letGo)
	prefix := "mcpgate-test:" + session.NewID()[:12] + ":"
	t.Cleanup(func() { cleanupRedis(t, prefix) })
	secret := testenv.IDKeySecret() // shared by the replicas
	withRedis := func(c *config.Config) {
		c.Store = config.Store{Kind: config.StoreRedis, Redis: &config.RedisStore{Addr: "127.0.0.1:6379", Prefix: prefix}}
		c.Sessions.IDKeys = []config.IDKey{{ID: "k1", Secret: config.Secret(secret)}}
	}
	a := startGateway(t, withRedis, httpRoute("counting", "/mcp", up.URL))
	b := startGateway(t, withRedis, httpRoute("counting", "/mcp", up.URL))

	const initialize = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`
	open := func() (string, map[string]string) {
		r := do(t, "POST", a.URL+"/mcp", initialize, nil)
		id := r.Header.Get("Mcp-Session-Id")
		if r.Status != http.StatusOK || id == "" {
			t.Fatalf("initialize: %d %s", r.Status, r.Body)
		}
		hdr := map[string]string{"Mcp-Session-Id": id, "MCP-Protocol-Version": "2025-11-25"}
		if r := do(t, "POST", a.URL+"/mcp", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, hdr); r.Status != http.StatusAccepted {
			t.Fatalf("initialized: %d %s", r.Status, r.Body)
		}
		return id, hdr
	}
	call := func(tool string, n int) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":{}}}`, n, tool)
	}

	t.Run("in flight", func(t *testing.T) {
		_, hdr := open()
		type answer struct {
			status int
			body   string
			err    error
		}
		got := make(chan answer, 1)
		go func() {
			req, _ := http.NewRequest("POST", b.URL+"/mcp", strings.NewReader(call("block", 2)))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			for k, v := range hdr {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				got <- answer{err: err}
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			got <- answer{resp.StatusCode, string(body), err}
		}()
		<-started // the call runs upstream through the other replica
		if r := do(t, "DELETE", a.URL+"/mcp", "", hdr); r.Status != http.StatusNoContent {
			t.Fatalf("DELETE: %d %s", r.Status, r.Body)
		}
		ans := <-got
		letGo()
		if ans.err != nil {
			t.Fatal(ans.err)
		}
		if ans.status == http.StatusAccepted || !strings.Contains(ans.body, `"id":2`) {
			t.Errorf("call in flight when the session was deleted elsewhere: %d %q; want a JSON-RPC answer with id 2", ans.status, ans.body)
		}
	})

	t.Run("after 204", func(t *testing.T) {
		for range 20 {
			_, hdr := open()
			// The other replica holds a copy: it served a call.
			if r := do(t, "POST", b.URL+"/mcp", call("count", 2), hdr); r.Status != http.StatusOK || !strings.Contains(r.Body, "counted") {
				t.Fatalf("call through the other replica: %d %s", r.Status, r.Body)
			}
			before := calls.Load()
			if r := do(t, "DELETE", a.URL+"/mcp", "", hdr); r.Status != http.StatusNoContent {
				t.Fatalf("DELETE: %d %s", r.Status, r.Body)
			}
			r := do(t, "POST", b.URL+"/mcp", call("count", 3), hdr)
			if r.Status != http.StatusNotFound || calls.Load() != before {
				t.Fatalf("call on the other replica right after DELETE answered 204: %d %s, %d upstream calls; want 404 and none",
					r.Status, r.Body, calls.Load()-before)
			}
		}
	})
}
