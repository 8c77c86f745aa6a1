package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/testutil/conformancefixture"
)

// TestEraPairings: the same scenarios for every pairing of client era and
// server era — legacy↔legacy, modern↔modern, a modern client of a legacy
// server, a legacy client of a modern server — with go-sdk clients pinned
// to 2025-11-25 and 2026-07-28, through mcpgate, to go-sdk servers over
// Streamable HTTP and over stdio, each pinned to one era so that nothing
// but the gateway can bridge them.
//
// Every pairing has its own gateway and upstream, so they run in parallel.
func TestEraPairings(t *testing.T) {
	t.Parallel()
	pin := func(r config.Route, era string) config.Route {
		r.Upstream.Era = era
		return r
	}
	upstreams := []struct {
		name  string
		route config.Route
	}{
		{"legacy-http", pin(httpRoute("fixture", "/mcp", fixtureHTTPWith(t, false, watchFast)), config.EraLegacy)},
		{"modern-http", pin(httpRoute("fixture", "/mcp", fixtureHTTPWith(t, true, watchFast)), config.EraModern)},
		{"legacy-stdio", pin(stdioRoute("fixture", "/mcp", fixtureBin, watchFastArg), config.EraLegacy)},
		{"modern-stdio", pin(stdioRoute("fixture", "/mcp", fixtureBin, watchFastArg), config.EraModern)},
	}
	clients := []string{"2025-11-25", "2026-07-28"}
	for _, up := range upstreams {
		g := startGateway(t, nil, up.route)
		for _, version := range clients {
			t.Run(up.name+"/client-"+version, func(t *testing.T) {
				t.Parallel()
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				c := newSDKClient()
				var toolsChanged, updated atomic.Int32
				c.Client = mcp.NewClient(&mcp.Implementation{Name: "pairing-client", Version: "1.0.0"}, &mcp.ClientOptions{
					CreateMessageHandler: func(_ context.Context, _ *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
						c.sampled.Add(1)
						return &mcp.CreateMessageResult{Model: "e2e-model", Role: "assistant", Content: &mcp.TextContent{Text: "forty-two"}}, nil
					},
					ElicitationHandler: func(_ context.Context, _ *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
						c.elicited.Add(1)
						return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"username": "gopher"}}, nil
					},
					ProgressNotificationHandler: func(context.Context, *mcp.ProgressNotificationClientRequest) { c.progress.Add(1) },
					ToolListChangedHandler:      func(context.Context, *mcp.ToolListChangedRequest) { toolsChanged.Add(1) },
					ResourceUpdatedHandler: func(_ context.Context, r *mcp.ResourceUpdatedNotificationRequest) {
						if r.Params.URI == conformancefixture.WatchedResourceURI {
							updated.Add(1)
						}
					},
				})
				c.AddRoots(&mcp.Root{URI: "file:///workspace", Name: "workspace"})
				cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: g.URL + "/mcp", MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: version})
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				defer cs.Close()
				if got := cs.InitializeResult().ProtocolVersion; got != version {
					t.Fatalf("negotiated %q through the gateway; want %q", got, version)
				}
				// tools, progress, sampling, elicitation, resources, prompts
				exercise(ctx, t, c, cs)

				res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_input_required_result_list_roots"})
				if err != nil || !strings.Contains(textOf(t, res), "file:///workspace") {
					t.Errorf("roots round trip: %q, %v", textOf(t, res), err)
				}

				// A list change reaches the client: on the GET stream for a
				// legacy client, on subscriptions/listen for a modern one.
				if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_trigger_tool_change"}); err != nil {
					t.Fatalf("trigger tool change: %v", err)
				}
				waitFor(t, "notifications/tools/list_changed", func() bool { return toolsChanged.Load() >= 1 })

				// A resource subscription: resources/subscribe for a legacy
				// client, subscriptions/listen for a modern one; the fixture
				// changes the watched resource every watchEvery.
				if err := cs.Subscribe(ctx, &mcp.SubscribeParams{URI: conformancefixture.WatchedResourceURI}); err != nil {
					t.Fatalf("subscribe: %v", err)
				}
				waitFor(t, "notifications/resources/updated", func() bool { return updated.Load() >= 1 })

				// Cancellation: the client gives up on a slow call; the
				// server hears of it (notifications/cancelled, or its
				// stream closed), and the session goes on.
				cancellations := func() string {
					res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_cancellations"})
					if err != nil {
						t.Fatal(err)
					}
					return textOf(t, res)
				}
				var before int
				if _, err := fmt.Sscanf(cancellations(), "cancelled=%d", &before); err != nil {
					t.Fatal(err)
				}
				want := fmt.Sprintf("cancelled=%d", before+1)
				// Long enough for the call to reach the server on a loaded
				// machine (it waits 30s): cancelled before it arrives, the
				// server would have nothing to see.
				cctx, ccancel := context.WithTimeout(ctx, 1500*time.Millisecond)
				_, err = cs.CallTool(cctx, &mcp.CallToolParams{Name: "test_wait_for_cancellation"})
				ccancel()
				if err == nil {
					t.Fatal("the slow call was not cancelled")
				}
				if up.name == "modern-http" {
					// go-sdk v1.8's stateless handler does not stop a tool when
					// its response stream closes (the modern era's cancellation;
					// the same happens without mcpgate), so only the session
					// going on is checked there.
					if got := cancellations(); got != want && got != fmt.Sprintf("cancelled=%d", before) {
						t.Fatalf("cancellations = %q", got)
					}
				} else {
					waitFor(t, "the server to see the cancellation", func() bool { return cancellations() == want })
				}
			})
		}
	}
}

// TestListenOutlivesRequestTimeout: a subscriptions/listen stream is not a
// request that times out; it lasts as long as the client listens, natively
// and through the bridge.
func TestListenOutlivesRequestTimeout(t *testing.T) {
	t.Parallel()
	for name, route := range map[string]config.Route{
		"modern server": httpRoute("fixture", "/mcp", fixtureHTTP(t, true)),
		"legacy server": httpRoute("fixture", "/mcp", fixtureHTTP(t, false)),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			route.RequestTimeout = time.Second
			if name == "legacy server" {
				route.Upstream.Era = config.EraLegacy
			}
			g := startGateway(t, nil, route)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var changed atomic.Int32
			c := mcp.NewClient(&mcp.Implementation{Name: "listener", Version: "1"}, &mcp.ClientOptions{
				ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) { changed.Add(1) },
			})
			cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: g.URL + "/mcp", MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: "2026-07-28"})
			if err != nil {
				t.Fatal(err)
			}
			defer cs.Close()
			time.Sleep(1500 * time.Millisecond) // past the route's request timeout
			if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_trigger_tool_change"}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "a list change on the listen stream opened before the timeout", func() bool { return changed.Load() >= 1 })
		})
	}
}
