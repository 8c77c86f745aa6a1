package e2e

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/config"
)

// TestModernProgressSharedSession: modern clients at one address share one
// anonymous session and, on a stdio route, one process. Each counts its
// request ids from 1 and names its progress "cd"; each call must still
// succeed and receive exactly its own progress notifications, through the
// bridge (the server pinned legacy: one legacy session carries every
// client's calls). Each round is a new pair of clients, as command-line
// clients would be.
func TestModernProgressSharedSession(t *testing.T) {
	t.Parallel()
	bin := buildEchoServer(t)
	for _, era := range []string{config.EraLegacy} {
		t.Run("upstream-"+era, func(t *testing.T) {
			t.Parallel()
			route := stdioRoute("echo", "/mcp", bin)
			route.Upstream.Era = era
			g := startGateway(t, nil, route)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			const from, rounds, clients = 5, 3, 2
			for round := range rounds {
				var wg sync.WaitGroup
				for k := range clients {
					wg.Add(1)
					go func() {
						defer wg.Done()
						var got atomic.Int32
						c := mcp.NewClient(&mcp.Implementation{Name: "progress", Version: "1"}, &mcp.ClientOptions{
							ProgressNotificationHandler: func(context.Context, *mcp.ProgressNotificationClientRequest) { got.Add(1) },
						})
						cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: g.URL + "/mcp", MaxRetries: -1},
							&mcp.ClientSessionOptions{ProtocolVersion: "2026-07-28"})
						if err != nil {
							t.Error(err)
							return
						}
						defer cs.Close()
						p := &mcp.CallToolParams{Name: "countdown", Arguments: map[string]any{"from": from}}
						p.SetProgressToken("cd")
						if _, err := cs.CallTool(ctx, p); err != nil {
							t.Errorf("round %d, client %d: %v", round, k, err)
							return
						}
						// go-sdk's client hands notifications to their
						// handler asynchronously: some may still be on their
						// way when CallTool returns.
						deadline := time.Now().Add(5 * time.Second)
						for got.Load() < from && time.Now().Before(deadline) {
							time.Sleep(10 * time.Millisecond)
						}
						time.Sleep(50 * time.Millisecond) // a doubled one would arrive now
						if n := got.Load(); n != from {
							t.Errorf("round %d, client %d: %d progress notifications; want %d", round, k, n, from)
						}
					}()
				}
				wg.Wait()
			}
		})
	}
}
