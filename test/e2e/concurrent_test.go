package e2e

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestConcurrentSessionsIndependent: several sessions from one client
// address, over stdio upstreams (one process each), run the full scenario
// at once; each sees only its own progress, sampling and elicitation, and
// ending one leaves the others working.
func TestConcurrentSessionsIndependent(t *testing.T) {
	t.Parallel()
	g := startGateway(t, nil, stdioRoute("fixture", "/mcp", fixtureBin))
	const n = 4
	clients := make([]*sdkClient, n)
	sessions := make([]*mcp.ClientSession, n)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range n {
		clients[i] = newSDKClient()
		cs, err := clients[i].Connect(ctx, &mcp.StreamableClientTransport{Endpoint: g.URL + "/mcp", MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
		if err != nil {
			t.Fatal(err)
		}
		sessions[i] = cs
	}
	if got := g.Sessions().Len(); got != n {
		t.Fatalf("gateway sessions = %d, want %d", got, n)
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			t.Run("session", func(t *testing.T) { exercise(ctx, t, clients[i], sessions[i]) })
		})
	}
	wg.Wait()
	for i, c := range clients {
		if c.sampled.Load() != 1 || c.elicited.Load() != 1 {
			t.Errorf("client %d saw %d sampling and %d elicitation requests, want 1 each", i, c.sampled.Load(), c.elicited.Load())
		}
	}
	if err := sessions[0].Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "one session to end", func() bool { return g.Sessions().Len() == n-1 })
	for _, cs := range sessions[1:] {
		if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text"}); err != nil {
			t.Fatalf("a remaining session broke: %v", err)
		}
		_ = cs.Close()
	}
}
