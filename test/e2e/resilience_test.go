package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/metrics/metricstest"
)

// flakyUpstream is a go-sdk Streamable HTTP server whose tool calls can be
// made to fail with an HTTP status before the server sees them, counting
// the calls that reach it by tool.
type flakyUpstream struct {
	URL   string
	mu    sync.Mutex
	queue map[string][]int // statuses for the next calls of a tool
	all   int              // a status for every tool call, 0 for none
	posts map[string]int
	runs  sync.Map
}

func newFlakyUpstream(t *testing.T) *flakyUpstream {
	t.Helper()
	fu := &flakyUpstream{queue: map[string][]int{}, posts: map[string]int{}}
	s := mcp.NewServer(&mcp.Implementation{Name: "flaky", Version: "1"}, nil)
	for _, tl := range []*mcp.Tool{{Name: "lookup", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}}, {Name: "charge"}} {
		name := tl.Name
		mcp.AddTool(s, tl, func(_ context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			v, _ := fu.runs.LoadOrStore(name, new(atomic.Int64))
			v.(*atomic.Int64).Add(1)
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: name + " ok"}}}, nil, nil
		})
	}
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{JSONResponse: true})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if name, ok := toolCalled(r); ok {
			fu.mu.Lock()
			fu.posts[name]++
			status := fu.all
			if q := fu.queue[name]; len(q) > 0 {
				status, fu.queue[name] = q[0], q[1:]
			}
			fu.mu.Unlock()
			if status != 0 {
				http.Error(w, http.StatusText(status), status)
				return
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	fu.URL = srv.URL
	return fu
}

// toolCalled is the tool a POST to an upstream calls (tools/call), its
// body read and put back for the handler behind.
func toolCalled(r *http.Request) (string, bool) {
	if r.Method != http.MethodPost {
		return "", false
	}
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	var m struct {
		Method string `json:"method"`
		Params struct {
			Name string `json:"name"`
		} `json:"params"`
	}
	_ = json.Unmarshal(body, &m)
	return m.Params.Name, m.Method == "tools/call"
}

func (fu *flakyUpstream) calls(tool string) int {
	fu.mu.Lock()
	defer fu.mu.Unlock()
	return fu.posts[tool]
}

// TestResilienceThroughGateway: a go-sdk client through a gateway whose
// route retries and has a breaker. A read-only tool (trusted annotation)
// survives two 503s; a tool that is not idempotent reaches the server
// exactly once and its caller gets the error; then the upstream fails
// every call, the breaker opens and the client is refused at once with
// -32018 naming the route, while the metrics show it.
func TestResilienceThroughGateway(t *testing.T) {
	t.Parallel()
	fu := newFlakyUpstream(t)
	route := httpRoute("payments", "/mcp", fu.URL)
	route.TrustAnnotations = true
	route.Upstream.Retry = &config.Retry{Attempts: 3, Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
	route.Upstream.Breaker = &config.Breaker{FailureRatio: 0.5, MinRequests: 10, Window: time.Minute, OpenFor: time.Hour}
	g := startGateway(t, nil, route)
	ctx := t.Context()
	c := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "1"}, nil)
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: g.URL + "/mcp", MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if _, err := cs.ListTools(ctx, nil); err != nil { // the catalog learns the annotations
		t.Fatal(err)
	}

	fu.mu.Lock()
	fu.queue["lookup"] = []int{503, 503}
	fu.queue["charge"] = []int{503}
	fu.mu.Unlock()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "lookup", Arguments: map[string]any{}})
	if err != nil || res.IsError {
		t.Fatalf("lookup after two 503s: %v %+v", err, res)
	}
	if n := fu.calls("lookup"); n != 3 {
		t.Errorf("lookup reached the server %d times, want 3", n)
	}
	_, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "charge", Arguments: map[string]any{}})
	if err == nil {
		t.Fatal("charge succeeded through a 503")
	}
	if n := fu.calls("charge"); n != 1 {
		t.Errorf("charge (not idempotent) reached the server %d times, want exactly 1", n)
	}

	raw := legacySession(t, g.URL+"/mcp") // a second session, raw, to read the refusal's body
	fu.mu.Lock()
	fu.all = http.StatusBadGateway
	fu.mu.Unlock()
	for i := 0; ; i++ {
		if i > 30 {
			t.Fatalf("the breaker did not open: last error %v", err)
		}
		_, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "charge", Arguments: map[string]any{}})
		// go-sdk reports an HTTP 503 as a transport rejection.
		if err != nil && strings.Contains(err.Error(), "Service Unavailable") {
			break
		}
	}
	reached := fu.calls("charge") + fu.calls("lookup")
	start := time.Now()
	r := do(t, "POST", g.URL+"/mcp", `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"lookup","arguments":{}}}`,
		map[string]string{"Mcp-Session-Id": raw, "MCP-Protocol-Version": "2025-06-18"})
	took := time.Since(start)
	if r.Status != http.StatusServiceUnavailable || r.Code != -32018 || r.Header.Get("Retry-After") == "" ||
		!strings.Contains(r.Msg, `route "payments"`) || !strings.Contains(r.Msg, "tries it again in") {
		t.Fatalf("with the breaker open: %d Retry-After %q %s", r.Status, r.Header.Get("Retry-After"), r.Body)
	}
	var data map[string]any
	if json.Unmarshal(r.Data, &data) != nil || data["route"] != "payments" || data["breaker"] != "open" {
		t.Errorf("error data = %s", r.Data)
	}
	if n := fu.calls("charge") + fu.calls("lookup"); n != reached {
		t.Errorf("%d calls reached the server with the breaker open", n-reached)
	}
	t.Logf("refused through the gateway in %v (a loopback HTTP round trip)", took)

	fams, err := metricstest.Gather(g.Metrics())
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := fams.Value("mcpgate_breaker_state", "route", "payments"); v != 2 {
		t.Errorf("mcpgate_breaker_state{route=payments} = %v, want 2", v)
	}
	if v, _ := fams.Value("mcpgate_retries_total", "route", "payments", "reason", "503"); v != 2 {
		t.Errorf("mcpgate_retries_total{reason=503} = %v, want 2", v)
	}
}
