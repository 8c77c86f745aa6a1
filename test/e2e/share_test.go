package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/config"
)

// shareClient is one of the sharing test's sessions and what reached it.
type shareClient struct {
	tag string
	cs  *mcp.ClientSession

	mu       sync.Mutex
	wrong    []string // messages that were not this session's
	progress int
	logs     int
	updated  chan string
}

func (c *shareClient) bad(format string, args ...any) {
	c.mu.Lock()
	c.wrong = append(c.wrong, fmt.Sprintf(format, args...))
	c.mu.Unlock()
}

// TestSharedStdioIsolation: 50 go-sdk sessions through the gateway share
// 3 stdio processes (max_shared 17). Every session uses the same request
// ids and the same progress token, and each runs a tool that reports
// progress, logs and asks it for a sample, while subscribing to a
// resource of its own and having it updated: every message must reach
// the one session it belongs to, and only that one.
func TestSharedStdioIsolation(t *testing.T) {
	t.Parallel()
	bin := shareServerBin
	route := stdioRoute("share", "/mcp", bin)
	route.Upstream.Share, route.Upstream.MaxShared = config.ShareRoute, 17
	g := startGateway(t, func(c *config.Config) {
		c.Sessions.PerAddress = &config.Cap{} // off: every session comes from 127.0.0.1
		c.Sessions.CreationRate.PerAddress = &config.Window{}
	}, route)

	const n = 50
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	clients := make([]*shareClient, n)
	var connected, done sync.WaitGroup
	errs := make(chan error, n)
	allIn := make(chan struct{})
	for i := range clients {
		c := &shareClient{tag: fmt.Sprintf("s%d", i), updated: make(chan string, 8)}
		clients[i] = c
		connected.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			errs <- c.run(ctx, g.URL+"/mcp", i%2 == 0, &connected, allIn)
		}()
	}
	connected.Wait()
	if got := stdioProcesses(t, g, "share"); got != 3 {
		t.Errorf("mcpgate_stdio_processes = %v with %d sessions, want 3", got, n)
	}
	close(allIn)
	done.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	for _, c := range clients {
		c.mu.Lock()
		for _, w := range c.wrong {
			t.Errorf("%s got %s", c.tag, w)
		}
		if c.progress != 3 {
			t.Errorf("%s got %d progress notifications, want 3", c.tag, c.progress)
		}
		c.mu.Unlock()
	}
	waitFor(t, "the processes to end", func() bool { return stdioProcesses(t, g, "share") == 0 })
}

// run is one session: connect, set a log level (info sessions get their
// own logs, error sessions none), subscribe, work, touch, unsubscribe.
func (c *shareClient) run(ctx context.Context, url string, info bool, connected *sync.WaitGroup, allIn <-chan struct{}) error {
	client := mcp.NewClient(&mcp.Implementation{Name: "share-test", Version: "1"}, &mcp.ClientOptions{
		CreateMessageHandler: func(_ context.Context, req *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
			text := ""
			if len(req.Params.Messages) > 0 {
				if tc, ok := req.Params.Messages[0].Content.(*mcp.TextContent); ok {
					text = tc.Text
				}
			}
			if text != c.tag {
				c.bad("a sampling request for %q", text)
			}
			if tok := req.Params.Meta["progressToken"]; tok != "tok" {
				c.bad("a sampling request naming progress token %v", tok)
			}
			return &mcp.CreateMessageResult{Model: "m", Role: "assistant", Content: &mcp.TextContent{Text: "ok-" + c.tag}}, nil
		},
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			if req.Params.ProgressToken != "tok" || req.Params.Message != c.tag {
				c.bad("progress %v %q", req.Params.ProgressToken, req.Params.Message)
			}
			c.mu.Lock()
			c.progress++
			c.mu.Unlock()
		},
		LoggingMessageHandler: func(_ context.Context, req *mcp.LoggingMessageRequest) {
			if !info || req.Params.Data != c.tag {
				c.bad("log %v (level %s)", req.Params.Data, req.Params.Level)
			}
			c.mu.Lock()
			c.logs++
			c.mu.Unlock()
		},
		ResourceUpdatedHandler: func(_ context.Context, req *mcp.ResourceUpdatedNotificationRequest) {
			if req.Params.URI != "res://"+c.tag {
				c.bad("an update of %s", req.Params.URI)
			}
			c.updated <- req.Params.URI
		},
	})
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	connected.Done()
	if err != nil {
		return fmt.Errorf("%s: connect: %w", c.tag, err)
	}
	defer cs.Close()
	<-allIn
	level := mcp.LoggingLevel("error")
	if info {
		level = "info"
	}
	if err := cs.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: level}); err != nil {
		return fmt.Errorf("%s: setLevel: %w", c.tag, err)
	}
	uri := "res://" + c.tag
	if err := cs.Subscribe(ctx, &mcp.SubscribeParams{URI: uri}); err != nil {
		return fmt.Errorf("%s: subscribe: %w", c.tag, err)
	}
	params := &mcp.CallToolParams{Name: "work", Arguments: map[string]any{"tag": c.tag, "steps": 3, "sample": true}}
	params.SetProgressToken("tok")
	res, err := cs.CallTool(ctx, params)
	if err != nil {
		return fmt.Errorf("%s: work: %w", c.tag, err)
	}
	if got := sharedText(res); got != c.tag+"|ok-"+c.tag {
		return fmt.Errorf("%s: work = %q", c.tag, got)
	}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "touch", Arguments: map[string]any{"uri": uri}}); err != nil {
		return fmt.Errorf("%s: touch: %w", c.tag, err)
	}
	select {
	case <-c.updated:
	case <-ctx.Done():
		return fmt.Errorf("%s: no update of its resource", c.tag)
	}
	if err := cs.Unsubscribe(ctx, &mcp.UnsubscribeParams{URI: uri}); err != nil {
		return fmt.Errorf("%s: unsubscribe: %w", c.tag, err)
	}
	if info {
		deadline := time.Now().Add(10 * time.Second)
		for {
			c.mu.Lock()
			logs := c.logs
			c.mu.Unlock()
			if logs >= 3 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: got %d of its 3 logs", c.tag, logs)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}

func sharedText(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if t, ok := c.(*mcp.TextContent); ok {
			b.WriteString(t.Text)
		}
	}
	return b.String()
}

// stdioProcesses reads mcpgate_stdio_processes{route}.
func stdioProcesses(t testing.TB, g *gw, route string) float64 {
	t.Helper()
	fams, err := g.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "mcpgate_stdio_processes" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "route" && l.GetValue() == route {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return 0
}

// TestSharedStdioModern: modern-era (2026-07-28) go-sdk sessions on a
// shared stdio route: every one sends the same ids and progress token,
// and gets its own results and only its own progress back.
func TestSharedStdioModern(t *testing.T) {
	t.Parallel()
	bin := shareServerBin
	route := stdioRoute("share", "/mcp", bin)
	route.Upstream.Share, route.Upstream.MaxShared = config.ShareRoute, 4
	g := startGateway(t, func(c *config.Config) {
		c.Sessions.PerAddress = &config.Cap{}
		c.Sessions.CreationRate.PerAddress = &config.Window{}
	}, route)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tag := fmt.Sprintf("m%d", i)
			var progress int
			var mu sync.Mutex
			all := make(chan struct{})
			client := mcp.NewClient(&mcp.Implementation{Name: "share-modern", Version: "1"}, &mcp.ClientOptions{
				ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
					if req.Params.ProgressToken != "tok" || req.Params.Message != tag {
						t.Errorf("%s got progress %v %q", tag, req.Params.ProgressToken, req.Params.Message)
					}
					mu.Lock()
					if progress++; progress == 6 {
						close(all)
					}
					mu.Unlock()
				},
			})
			cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: g.URL + "/mcp", MaxRetries: -1}, nil)
			if err != nil {
				t.Errorf("%s: connect: %v", tag, err)
				return
			}
			defer cs.Close()
			for range 3 {
				params := &mcp.CallToolParams{Name: "work", Arguments: map[string]any{"tag": tag, "steps": 2, "sample": false}}
				params.SetProgressToken("tok")
				res, err := cs.CallTool(ctx, params)
				if err != nil {
					t.Errorf("%s: work: %v", tag, err)
					return
				}
				if got := sharedText(res); got != tag+"|" {
					t.Errorf("%s: work = %q", tag, got)
				}
			}
			// go-sdk runs notification handlers apart from the call
			// they belong to: the last call's progress may be handled
			// after the call returns. Every one arrives.
			select {
			case <-all:
			case <-ctx.Done():
			}
			mu.Lock()
			defer mu.Unlock()
			if progress != 6 {
				t.Errorf("%s: %d progress notifications, want 6", tag, progress)
			}
		}()
	}
	wg.Wait()
	if got := stdioProcesses(t, g, "share"); got > 3 {
		t.Errorf("mcpgate_stdio_processes = %v for 10 sessions with max_shared 4, want at most 3", got)
	}
}

// TestSharedHTTP: legacy go-sdk sessions sharing upstream sessions of a
// Streamable HTTP server (max_shared 3), all at once: tools, progress,
// sampling and elicitation each reach the session whose call caused
// them (each client counts exactly one sample and one elicitation).
func TestSharedHTTP(t *testing.T) {
	t.Parallel()
	route := httpRoute("fixture", "/mcp", fixtureHTTP(t, false))
	route.Upstream.Share, route.Upstream.MaxShared = config.ShareRoute, 3
	g := startGateway(t, nil, route)
	t.Run("sessions", func(t *testing.T) {
		for i := range 6 {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				c := newSDKClient()
				cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: g.URL + "/mcp", MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				defer cs.Close()
				exercise(ctx, t, c, cs)
				if n := c.progress.Load(); n != 3 {
					t.Errorf("progress notifications = %d, want 3", n)
				}
			})
		}
	})
}
