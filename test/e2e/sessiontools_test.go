package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/config"
)

// sessionToolsUpstream is a go-sdk server listing two tools a page, one of
// them named as mcpgate's own, and two resources, one of them with an
// mcpgate:// URI.
func sessionToolsUpstream(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(sessionToolsUpstreamHandler())
	t.Cleanup(srv.Close)
	return srv.URL
}

func sessionToolsUpstreamHandler() http.Handler {
	s := mcp.NewServer(&mcp.Implementation{Name: "st-upstream", Version: "1"}, &mcp.ServerOptions{PageSize: 2})
	for _, name := range []string{"echo", "search", "danger", "mcpgate_session_status", "zeta"} {
		mcp.AddTool(s, &mcp.Tool{Name: name}, func(_ context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "upstream " + name}}}, nil, nil
		})
	}
	for _, uri := range []string{"file:///a.txt", "mcpgate://fake"} {
		s.AddResource(&mcp.Resource{URI: uri, Name: uri}, func(_ context.Context, r *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: r.Params.URI, Text: "upstream"}}}, nil
		})
	}
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
}

// structured decodes a tool result's structured content.
func structured(t *testing.T, res *mcp.CallToolResult, v any) {
	t.Helper()
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("structured content %s: %v", b, err)
	}
}

type stStatus struct {
	Session     string   `json:"session"`
	Route       string   `json:"route"`
	Era         string   `json:"era"`
	AgeSeconds  int64    `json:"age_seconds"`
	IdleTimeout string   `json:"idle_timeout"`
	TTL         string   `json:"ttl"`
	DeniedTools []string `json:"denied_tools"`
	Quotas      []struct {
		Quota      string `json:"quota"`
		Limit      string `json:"limit"`
		Max        int64  `json:"max"`
		Used       int64  `json:"used"`
		Tightened  bool   `json:"tightened"`
		Configured int64  `json:"configured_max"`
	} `json:"quotas"`
}

func (s stStatus) used(limit string) (used, max int64) {
	for _, q := range s.Quotas {
		if q.Limit == limit {
			return q.Used, q.Max
		}
	}
	return -1, -1
}

// TestSessionTools: mcpgate's tools and resources inside sessions of a
// route with session_tools, through a real gateway, with go-sdk clients
// of both eras: merged lists with pagination intact, the status, a
// tightening that holds and one that would loosen, the resources and an
// update notification, the end of the session; a route without
// session_tools shows nothing of it.
func TestSessionTools(t *testing.T) {
	t.Parallel()
	up := sessionToolsUpstream(t)
	withTools := httpRoute("tools", "/mcp", up)
	withTools.SessionTools = true
	withTools.IdleTimeout = time.Hour
	withTools.TTL = 2 * time.Hour
	plain := httpRoute("plain", "/plain", up)
	g := startGateway(t, func(cfg *config.Config) {
		cfg.Quotas = []config.Quota{{Name: "per-session", Requests: 100, ToolCalls: 20, Match: config.QuotaMatch{Routes: []string{"tools"}}}}
	}, withTools, plain)

	for _, version := range []string{"2025-11-25", "2026-07-28"} {
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var updated, listChanged atomic.Int32
			c := mcp.NewClient(&mcp.Implementation{Name: "st-client", Version: "1"}, &mcp.ClientOptions{
				ResourceUpdatedHandler: func(_ context.Context, r *mcp.ResourceUpdatedNotificationRequest) {
					if r.Params.URI == "mcpgate://session" {
						updated.Add(1)
					}
				},
				ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) { listChanged.Add(1) },
			})
			cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: g.URL + "/mcp", MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: version})
			if err != nil {
				t.Fatal(err)
			}
			defer cs.Close()

			// Lists: every upstream tool but the one named as ours, ours
			// once, on the last page only.
			names := listToolNames(ctx, t, cs)
			want := []string{"danger", "echo", "mcpgate_session_end", "mcpgate_session_status", "mcpgate_session_tighten", "search", "zeta"}
			if !slices.Equal(names, want) {
				t.Fatalf("tools = %v, want %v", names, want)
			}
			page, err := cs.ListTools(ctx, &mcp.ListToolsParams{})
			if err != nil {
				t.Fatal(err)
			}
			if page.NextCursor == "" || len(page.Tools) != 2 {
				t.Fatalf("first page: %d tools, cursor %q; want the upstream's page of 2 with a cursor", len(page.Tools), page.NextCursor)
			}
			for _, tool := range page.Tools {
				if strings.HasPrefix(tool.Name, "mcpgate_") {
					t.Errorf("first page lists %s", tool.Name)
				}
			}
			var uris []string
			for r, err := range cs.Resources(ctx, nil) {
				if err != nil {
					t.Fatal(err)
				}
				uris = append(uris, r.URI)
			}
			slices.Sort(uris)
			if want := []string{"file:///a.txt", "mcpgate://health", "mcpgate://session"}; !slices.Equal(uris, want) {
				t.Fatalf("resources = %v, want %v", uris, want)
			}

			// The status.
			status := func() stStatus {
				t.Helper()
				res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "mcpgate_session_status"})
				if err != nil || res.IsError {
					t.Fatalf("status: %v %v", err, res)
				}
				var s stStatus
				structured(t, res, &s)
				if !strings.Contains(textOf(t, res), s.Session) {
					t.Errorf("status text %q does not name the session", textOf(t, res))
				}
				return s
			}
			s := status()
			if len(s.Session) != 12 || s.Route != "tools" || s.IdleTimeout != "1h0m0s" || s.TTL != "2h0m0s" {
				t.Fatalf("status = %+v", s)
			}
			if used, max := s.used("requests"); used < 1 || max != 100 {
				t.Fatalf("requests %d of %d", used, max)
			}
			// Our own tools spend no budget.
			if used, _ := s.used("tool_calls"); used != 0 {
				t.Fatalf("tool_calls used %d after only mcpgate tools", used)
			}

			// A subscription to mcpgate://session; a call changes its
			// usage, and the client hears of it.
			if err := cs.Subscribe(ctx, &mcp.SubscribeParams{URI: "mcpgate://session"}); err != nil {
				t.Fatalf("subscribe: %v", err)
			}
			if res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo"}); err != nil || res.IsError || textOf(t, res) != "upstream echo" {
				t.Fatalf("echo: %v %v", err, res)
			}
			waitFor(t, "notifications/resources/updated for mcpgate://session", func() bool { return updated.Load() >= 1 })

			// Tighten: deny a tool, lower tool_calls to two more, shorten
			// the idle timeout.
			used, _ := status().used("tool_calls")
			res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "mcpgate_session_tighten", Arguments: map[string]any{
				"deny_tools": []string{"dang*"}, "idle_timeout": "10m",
				"quotas": []map[string]any{{"limit": "tool_calls", "max": used + 2}},
			}})
			if err != nil || res.IsError {
				t.Fatalf("tighten: %v %s", err, textOf(t, res))
			}
			var after stStatus
			structured(t, res, &after)
			if after.IdleTimeout != "10m0s" || !slices.Equal(after.DeniedTools, []string{"dang*"}) {
				t.Fatalf("after tightening: %+v", after)
			}
			// The client hears its list changed: on the request's stream
			// (legacy), on its subscriptions/listen stream (modern).
			waitFor(t, "notifications/tools/list_changed after the denial", func() bool { return listChanged.Load() >= 1 })
			if names := listToolNames(ctx, t, cs); slices.Contains(names, "danger") {
				t.Errorf("denied tool still listed: %v", names)
			}
			if res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "danger"}); err != nil || !res.IsError || !strings.Contains(textOf(t, res), "denied") {
				t.Errorf("denied tool call: %v %v", err, res)
			}
			for i := range 2 {
				if res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo"}); err != nil || res.IsError {
					t.Fatalf("call %d within the lowered limit: %v %v", i+1, err, res)
				}
			}
			if res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo"}); err != nil || !res.IsError || !strings.Contains(textOf(t, res), "tool_calls") {
				t.Fatalf("call over the lowered limit: %v %v", err, res)
			}

			// Loosening is refused, whole.
			for _, args := range []map[string]any{
				{"quotas": []map[string]any{{"limit": "tool_calls", "max": 1000}}},
				{"idle_timeout": "2h"},
				{"ttl": "5h", "idle_timeout": "1m"},
			} {
				res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "mcpgate_session_tighten", Arguments: args})
				if err != nil || !res.IsError || !strings.Contains(textOf(t, res), "raise") {
					t.Fatalf("loosening %v: %v %v", args, err, res)
				}
			}
			if s := status(); s.IdleTimeout != "10m0s" || s.TTL != "2h0m0s" {
				t.Fatalf("a refused tightening changed the limits: %+v", s)
			}

			// The resources, read.
			rr, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "mcpgate://session"})
			if err != nil || len(rr.Contents) != 1 || !strings.Contains(rr.Contents[0].Text, `"dang*"`) {
				t.Fatalf("read mcpgate://session: %v %v", err, rr)
			}
			rr, err = cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "mcpgate://health"})
			if err != nil || len(rr.Contents) != 1 {
				t.Fatalf("read mcpgate://health: %v", err)
			}
			var h struct {
				Route    string `json:"route"`
				Upstream struct {
					Status string `json:"status"`
				} `json:"upstream"`
				Gateway struct {
					Status string `json:"status"`
				} `json:"gateway"`
			}
			if err := json.Unmarshal([]byte(rr.Contents[0].Text), &h); err != nil || h.Route != "tools" || h.Upstream.Status != "up" || h.Gateway.Status != "ready" {
				t.Fatalf("health = %s (%v)", rr.Contents[0].Text, err)
			}
			if _, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "mcpgate://fake"}); err == nil {
				t.Error("read of an upstream resource named as ours succeeded")
			}

			// The end: the response arrives, then the session is gone.
			res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "mcpgate_session_end"})
			if err != nil || res.IsError {
				t.Fatalf("end: %v %v", err, res)
			}
			var ended struct {
				Ended bool `json:"ended"`
			}
			structured(t, res, &ended)
			if !ended.Ended {
				t.Fatal("end result does not say ended")
			}
			waitFor(t, "the session to end", func() bool {
				for _, sess := range g.Sessions().List() {
					if sess.Info().Route == "tools" && sess.Info().ClientName == "st-client" && sess.Info().Era.String() == eraName(version) {
						return false
					}
				}
				return true
			})
			if version == "2025-11-25" {
				if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo"}); err == nil {
					t.Error("a call after the end succeeded")
				}
			}

			// A route without session_tools: nothing of it.
			pc, err := mcp.NewClient(&mcp.Implementation{Name: "plain-client", Version: "1"}, nil).
				Connect(ctx, &mcp.StreamableClientTransport{Endpoint: g.URL + "/plain", MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: version})
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			names = listToolNames(ctx, t, pc)
			if want := []string{"danger", "echo", "mcpgate_session_status", "search", "zeta"}; !slices.Equal(names, want) {
				t.Errorf("plain route tools = %v, want the upstream's %v", names, want)
			}
			res, err = pc.CallTool(ctx, &mcp.CallToolParams{Name: "mcpgate_session_status"})
			if err != nil || textOf(t, res) != "upstream mcpgate_session_status" {
				t.Errorf("plain route: mcpgate_session_status answered %v %v, want the upstream's", err, res)
			}
		})
	}
}

func eraName(version string) string {
	if version == "2026-07-28" {
		return "modern"
	}
	return "legacy"
}

// TestSessionHealthResource: a client subscribed to mcpgate://health
// hears when the route's upstream goes down and when it comes back, in
// both eras.
func TestSessionHealthResource(t *testing.T) {
	t.Parallel()
	inner := sessionToolsUpstreamHandler()
	var down atomic.Bool
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() && r.Method == http.MethodPost {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(up.Close)
	rt := httpRoute("tools", "/mcp", up.URL)
	rt.SessionTools = true
	g := startGateway(t, nil, rt)
	// One session at a time: the upstream's health is the route's.
	for _, version := range []string{"2025-11-25", "2026-07-28"} {
		t.Run(version, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			updates := make(chan struct{}, 16)
			c := mcp.NewClient(&mcp.Implementation{Name: "health-client", Version: "1"}, &mcp.ClientOptions{
				ResourceUpdatedHandler: func(_ context.Context, r *mcp.ResourceUpdatedNotificationRequest) {
					if r.Params.URI == "mcpgate://health" {
						updates <- struct{}{}
					}
				},
			})
			cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: g.URL + "/mcp", MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: version})
			if err != nil {
				t.Fatal(err)
			}
			defer cs.Close()
			health := func() string {
				t.Helper()
				rr, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "mcpgate://health"})
				if err != nil {
					t.Fatal(err)
				}
				var h struct {
					Upstream struct {
						Status string `json:"status"`
					} `json:"upstream"`
				}
				if err := json.Unmarshal([]byte(rr.Contents[0].Text), &h); err != nil {
					t.Fatal(err)
				}
				return h.Upstream.Status
			}
			if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo"}); err != nil {
				t.Fatal(err)
			}
			if got := health(); got != "up" {
				t.Fatalf("health %q, want up", got)
			}
			if err := cs.Subscribe(ctx, &mcp.SubscribeParams{URI: "mcpgate://health"}); err != nil {
				t.Fatal(err)
			}
			wait := func(what string) {
				t.Helper()
				select {
				case <-updates:
				case <-ctx.Done():
					t.Fatalf("no notifications/resources/updated when the upstream went %s", what)
				}
			}
			down.Store(true)
			if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo"}); err == nil {
				t.Fatal("a call to a down upstream succeeded")
			}
			wait("down")
			if got := health(); got != "down" {
				t.Fatalf("health %q, want down", got)
			}
			down.Store(false)
			if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo"}); err != nil {
				t.Fatal(err)
			}
			wait("up")
			if got := health(); got != "up" {
				t.Fatalf("health %q, want up", got)
			}
		})
	}
}
