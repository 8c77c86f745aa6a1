package e2e

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/gateway"
)

// TestGracefulShutdownDrains: a request in flight when the gateway is told
// to stop still gets its answer, sessions end (upstream sessions deleted),
// and Run returns within the shutdown timeout.
func TestGracefulShutdownDrains(t *testing.T) {
	t.Parallel()
	s := mcp.NewServer(&mcp.Implementation{Name: "slow", Version: "1"}, nil)
	started := make(chan struct{}, 1)
	mcp.AddTool(s, &mcp.Tool{Name: "slow"}, func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		started <- struct{}{}
		select {
		case <-time.After(700 * time.Millisecond):
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "finished"}}}, nil, nil
	})
	up := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil))
	defer up.Close()

	cfg := &config.Config{Listeners: []config.Listener{{Address: "127.0.0.1:0"}}, Routes: []config.Route{httpRoute("slow", "/mcp", up.URL)}}
	cfg.Server.ShutdownTimeout = 5 * time.Second
	cfg.Store.Kind = config.StoreMemory
	cfg.SetDefaults()
	g, err := gateway.New(cfg, gateway.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	url := "http://" + g.Addrs()[0].String() + "/mcp"

	c := mcp.NewClient(&mcp.Implementation{Name: "c", Version: "1"}, nil)
	// No standalone GET stream: go-sdk opens it in the background after
	// initialize, and one that had not connected yet when the listener
	// closed would fail the client (MaxRetries -1) whatever the drain does;
	// this test is about the POST in flight.
	cs, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: url, MaxRetries: -1, DisableStandaloneSSE: true}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatal(err)
	}
	result := make(chan error, 1)
	go func() {
		res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "slow"})
		if err == nil && textOf(t, res) != "finished" {
			err = context.Canceled
		}
		result <- err
	}()
	<-started
	begin := time.Now()
	stop()
	if err := <-result; err != nil {
		t.Fatalf("in-flight call during shutdown: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("shutdown took %s, budget 5s", d)
	}
	if n := g.Sessions().Len(); n != 0 {
		t.Errorf("%d sessions left after shutdown", n)
	}
	waitFor(t, "upstream session deleted", func() bool {
		n := 0
		for range s.Sessions() {
			n++
		}
		return n == 0
	})
}
