package mcpgate_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate"
	"github.com/mcpgate/mcpgate/internal/testutil/testenv"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestClusterOnRedis: two programs embedding the same server share a Redis
// store; a session made on one is served when its client reaches the other
// (forwarded over the cluster hop to the replica holding its server
// session).
func TestClusterOnRedis(t *testing.T) {
	t.Parallel()
	addr := testenv.Redis(t)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	prefix := "mcpgate-lib-" + hex.EncodeToString(b) + ":"
	secret := testenv.IDKeySecret()
	replica := func() (*mcpgate.Handler, string) {
		h, err := mcpgate.NewHandler(func(*http.Request) *mcp.Server { return newServer() }, &mcpgate.Options{
			Store:    mcpgate.Store{Kind: "redis", Redis: &mcpgate.RedisStore{Addr: addr, Prefix: prefix}},
			Sessions: mcpgate.Sessions{IDKeys: []mcpgate.IDKey{{ID: "k1", Secret: secret}}},
			Cluster:  mcpgate.Cluster{Listen: freeAddr(t)},
		})
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(h)
		t.Cleanup(func() { ts.Close(); _ = h.Close(context.Background()) })
		return h, ts.URL + "/mcp"
	}
	ha, urlA := replica()
	hb, urlB := replica()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	sid := initialize(t, ctx, urlA)
	if ha.Sessions() != 1 {
		t.Fatalf("replica A holds %d sessions", ha.Sessions())
	}
	// The client now reaches replica B with A's session id.
	got := callWhoami(t, ctx, urlB, sid)
	if got != sid+" anonymous" {
		t.Fatalf("through replica B the session answers %q, want %q", got, sid+" anonymous")
	}
	if a, b := ha.Sessions(), hb.Sessions(); a != 1 || b != 0 {
		t.Fatalf("sessions held: A %d, B %d; want the session to stay with A, B forwarding", a, b)
	}
}

// callWhoami sends notifications/initialized and tools/call whoami in
// session sid with bare HTTP and returns the tool's text.
func callWhoami(t *testing.T, ctx context.Context, url, sid string) string {
	t.Helper()
	send := func(body string) *http.Response {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Session-Id", sid)
		req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	r := send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	r.Body.Close()
	r = send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami","arguments":{}}}`)
	defer r.Body.Close()
	raw, _ := io.ReadAll(r.Body)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("tools/call: HTTP %d %s", r.StatusCode, raw)
	}
	body := string(raw)
	if i := strings.Index(body, "data: "); i >= 0 {
		body = strings.TrimSpace(body[i+6:])
	}
	var m struct {
		Result struct {
			Content []struct{ Text string } `json:"content"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(body), &m); err != nil || len(m.Result.Content) != 1 {
		t.Fatalf("tools/call answer %s", raw)
	}
	return m.Result.Content[0].Text
}
