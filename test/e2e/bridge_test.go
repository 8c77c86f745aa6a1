package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
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
	// route makes a pairing's route: an HTTP fixture of its own, since a
	// fixture's counters (test_cancellations) are shared by every session
	// it serves, and one pairing must not count another's cancellation.
	upstreams := []struct {
		name  string
		route func() config.Route
	}{
		{"legacy-http", func() config.Route {
			return pin(httpRoute("fixture", "/mcp", fixtureHTTPWith(t, false, watchFast)), config.EraLegacy)
		}},
		{"modern-http", func() config.Route {
			return pin(httpRoute("fixture", "/mcp", fixtureHTTPWith(t, true, watchFast)), config.EraModern)
		}},
		{"legacy-stdio", func() config.Route {
			return pin(stdioRoute("fixture", "/mcp", fixtureBin, watchFastArg), config.EraLegacy)
		}},
		{"modern-stdio", func() config.Route {
			return pin(stdioRoute("fixture", "/mcp", fixtureBin, watchFastArg), config.EraModern)
		}},
	}
	clients := []string{"2025-11-25", "2026-07-28"}
	for _, up := range upstreams {
		for _, version := range clients {
			g := startGateway(t, nil, up.route())
			t.Run(up.name+"/client-"+version, func(t *testing.T) {
				t.Parallel()
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				c := newSDKClient()
				// waiting closes when test_wait_for_cancellation reports
				// that it waits: the call has reached the server.
				waiting, waitingOnce := make(chan struct{}), new(sync.Once)
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
					ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) {
						if r.Params.ProgressToken == waitingToken {
							waitingOnce.Do(func() { close(waiting) })
							return
						}
						c.progress.Add(1)
					},
					ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) { toolsChanged.Add(1) },
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
				// Cancelled only once the server reports that the call waits
				// (it waits 30s): cancelled before it arrives, the server
				// would have nothing to see.
				cctx, ccancel := context.WithCancel(ctx)
				called := make(chan error, 1)
				go func() {
					params := &mcp.CallToolParams{Name: "test_wait_for_cancellation"}
					params.SetProgressToken(waitingToken)
					_, err := cs.CallTool(cctx, params)
					called <- err
				}()
				select {
				case <-waiting:
				case err := <-called:
					ccancel()
					t.Fatalf("the slow call ended before the server waited: %v", err)
				}
				ccancel()
				if err := <-called; err == nil {
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

// waitingToken is the progress token of TestEraPairings' cancelled call:
// its progress says the call reached the server.
const waitingToken = "pairing-waiting"
