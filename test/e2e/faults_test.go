package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/goleak"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/metrics/metricstest"
)

// TestUpstreamFaults is the fault-injection suite: each upstream fault
// through the real gateway with two go-sdk sessions, one affected and one
// not. The affected session learns what happened in a clear error, the
// other is untouched, the gateway serves a new session afterwards, and
// nothing leaks once the gateways stop. It is not parallel with the rest
// of the package, so the leak check sees only its own goroutines; its
// faults run in parallel with each other.
func TestUpstreamFaults(t *testing.T) {
	opts := []goleak.Option{goleak.IgnoreCurrent(),
		// The stdio spawners live as long as the process (see startCmd).
		goleak.IgnoreTopFunction("github.com/mcpgate/mcpgate/internal/upstream/stdio.spawnLoop"),
		// Idle keep-alive connections of http.DefaultClient (raw requests).
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
	}
	t.Run("group", func(t *testing.T) {
		for _, f := range stdioFaults {
			t.Run("stdio/"+f.name, func(t *testing.T) {
				t.Parallel()
				route := stdioRoute("faulty", "/mcp", stdioServerBin)
				if f.route != nil {
					f.route(&route)
				}
				runFault(t, route, f)
			})
		}
		for _, f := range httpFaults {
			t.Run("http/"+f.name, func(t *testing.T) {
				t.Parallel()
				route := httpRoute("faulty", "/mcp", startFaultyHTTP(t))
				route.Upstream.Era = config.EraLegacy
				if f.route != nil {
					f.route(&route)
				}
				runFault(t, route, f)
			})
		}
	})
	http.DefaultClient.CloseIdleConnections()
	goleak.VerifyNone(t, opts...)
}

// fault is one upstream fault: the affected session calls tool (with
// args) and wants an error containing want (a tool result containing it
// when result is set); ends says the session ends with it, reason naming
// the reason counted. A go-sdk client reports an HTTP error status, or a
// session that ends, without the JSON-RPC error the gateway sent: raw,
// when set, is what that error's message must hold, read by a raw
// session that meets the same fault (each of its parts).
type fault struct {
	name   string
	route  func(*config.Route)
	tool   string
	args   map[string]any
	want   string
	result bool
	ends   bool
	reason string
	raw    []string
	status int // the raw answer's HTTP status
}

var stdioFaults = []fault{
	{name: "crash", tool: "crash", args: map[string]any{"code": 3}, want: "calling \"tools/call\"", ends: true, reason: "upstream_gone",
		raw: []string{"session ended: the upstream server or its session is gone"}, status: http.StatusNotFound},
	{name: "hang", route: func(r *config.Route) {
		r.RequestTimeout = 300 * time.Millisecond
		r.Upstream.Stdio.ShutdownGrace = 100 * time.Millisecond // it ignores its closed stdin
	}, tool: "hang", want: "request timed out after 300ms"},
	{name: "garbage", tool: "garbage", want: "after garbage", result: true},
	{name: "stderr flood", tool: "flood", args: map[string]any{"n": 20000}, want: "flooded 20000", result: true},
	{name: "memory cap", route: func(r *config.Route) {
		r.Upstream.Stdio.Sandbox = &config.Sandbox{Memory: 64 << 20}
	}, tool: "grow", args: map[string]any{"mib": 256}, want: "calling \"tools/call\"", ends: true, reason: "resource_limit",
		// Sampled: "resident memory ... over the cap"; in a cgroup: "ran out
		// of memory under its cap".
		raw: []string{"session ended (resource_limit): the upstream process was killed for a resource cap: ", "cap sandbox.memory 64 MiB"}, status: http.StatusNotFound},
}

var httpFaults = []fault{
	{name: "5xx", tool: "fail", want: "Bad Gateway", raw: []string{"upstream answered HTTP 500 Internal Server Error"}, status: http.StatusBadGateway},
	{name: "reset", tool: "reset", want: "Bad Gateway", raw: []string{"upstream request failed"}, status: http.StatusBadGateway},
	{name: "stall mid-stream", route: func(r *config.Route) { r.RequestTimeout = 300 * time.Millisecond }, tool: "stall",
		want: "request timed out after 300ms"},
	{name: "session lost", tool: "lose", want: "not safe to repeat"},
}

func runFault(t *testing.T, route config.Route, f fault) {
	g := startGateway(t, nil, route)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	url := g.URL + "/mcp"
	const v = "2025-11-25"
	affected := connectSDK(ctx, t, url, v, nil)
	other := connectSDK(ctx, t, url, v, nil)
	echo := func(cs *mcp.ClientSession, what string) {
		t.Helper()
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": what}})
		if err != nil || res.IsError || textOf(t, res) != what {
			t.Fatalf("echo on %s: %v %+v", what, err, res)
		}
	}
	echo(other, "before")
	echo(affected, "before")

	args := f.args
	if args == nil {
		args = map[string]any{}
	}
	res, err := affected.CallTool(ctx, &mcp.CallToolParams{Name: f.tool, Arguments: args})
	switch {
	case f.result:
		if err != nil || res.IsError || !strings.Contains(textOf(t, res), f.want) {
			t.Fatalf("%s: %v %+v, want a result with %q", f.tool, err, res, f.want)
		}
	case err == nil:
		t.Fatalf("%s: %s, want an error with %q", f.tool, textOf(t, res), f.want)
	case !strings.Contains(err.Error(), f.want):
		t.Fatalf("%s: %v, want an error with %q", f.tool, err, f.want)
	default:
		t.Logf("the affected session was told: %v", err)
	}

	echo(other, "after")
	if f.raw != nil {
		sid := legacySession(t, url)
		body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": map[string]any{"name": f.tool, "arguments": args}})
		r := do(t, "POST", url, string(body), sessHdr(sid, "2025-06-18"))
		for _, want := range f.raw {
			if r.Status != f.status || !strings.Contains(r.Msg, want) || string(r.ID) != "9" {
				t.Errorf("raw %s: %d %s; want %d and an error with %q", f.tool, r.Status, r.Body, f.status, want)
			}
		}
		if !f.ends {
			do(t, "DELETE", url, "", sessHdr(sid, "2025-06-18"))
		}
	}
	if f.ends {
		ended := 1
		if f.raw != nil {
			ended = 2
		}
		// The manager drops a session before its Ended hooks count it.
		waitFor(t, "the affected sessions counted as ended with reason "+f.reason, func() bool {
			fams, err := metricstest.Gather(g.Metrics())
			if err != nil {
				t.Fatal(err)
			}
			n, _ := fams.Value("mcpgate_sessions_ended_total", "route", "faulty", "reason", f.reason)
			return n == float64(ended) && g.Sessions().Len() == 1
		})
		next := connectSDK(ctx, t, url, v, nil)
		echo(next, "a new session")
	} else {
		echo(affected, "the affected session goes on")
		waitFor(t, "both sessions alone", func() bool { return g.Sessions().Len() == 2 })
	}
}

// startFaultyHTTP serves a go-sdk Streamable HTTP server (tools echo,
// fail, reset, stall, lose) behind a handler that injects the faults the
// tools name: fail is answered 500, reset has its connection closed
// before any answer, stall gets an event stream that opens and then
// never goes on, and lose makes the upstream forget the session it came
// on (404 from then on).
func startFaultyHTTP(t *testing.T) string {
	t.Helper()
	s := mcp.NewServer(&mcp.Implementation{Name: "faulty", Version: "1"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "echo"}, func(_ context.Context, _ *mcp.CallToolRequest, in struct {
		Text string `json:"text"`
	}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text}}}, nil, nil
	})
	for _, name := range []string{"fail", "reset", "stall", "lose"} {
		mcp.AddTool(s, &mcp.Tool{Name: name}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "the fault was not injected"}}}, nil, nil
		})
	}
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
	var mu sync.Mutex
	lost := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sid := r.Header.Get("Mcp-Session-Id")
		mu.Lock()
		gone := lost[sid]
		mu.Unlock()
		if gone {
			http.Error(w, "session not found", http.StatusNotFound)
			return
		}
		if name, ok := toolCalled(r); ok {
			switch name {
			case "fail":
				http.Error(w, "internal error", http.StatusInternalServerError)
				return
			case "reset":
				conn, _, err := http.NewResponseController(w).Hijack()
				if err == nil {
					_ = conn.Close()
				}
				return
			case "stall":
				w.Header().Set("Content-Type", "text/event-stream")
				w.WriteHeader(http.StatusOK)
				_, _ = io.WriteString(w, ": the stream opens\n\n")
				_ = http.NewResponseController(w).Flush()
				<-r.Context().Done()
				return
			case "lose":
				mu.Lock()
				lost[sid] = true
				mu.Unlock()
				http.Error(w, "session not found", http.StatusNotFound)
				return
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		srv.Close()
		// The go-sdk sessions behind the ones it lost end too.
		mu.Lock()
		defer mu.Unlock()
		for sid := range lost {
			r := httptest.NewRequest(http.MethodDelete, "/", nil)
			r.Header.Set("Mcp-Session-Id", sid)
			h.ServeHTTP(httptest.NewRecorder(), r)
		}
	})
	return srv.URL + "/"
}
