package resilient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/mcpgate/mcpgate/internal/catalog"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/metrics/metricstest"
	"github.com/mcpgate/mcpgate/internal/upstream"
	"github.com/mcpgate/mcpgate/internal/upstream/httpup"
	"github.com/mcpgate/mcpgate/internal/upstream/stdio"
)

// serverBin is the go-sdk stdio test server of the stdio package's tests
// (it has a tool that crashes the process), built by TestMain.
var serverBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mcpgate-resilient-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	serverBin = filepath.Join(dir, "server")
	build := exec.Command("go", "build", "-o", serverBin, "../stdio/testdata/server")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the test server:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	if code == 0 {
		// The stdio spawners live as long as the process, on purpose.
		if err := goleak.Find(goleak.IgnoreTopFunction("github.com/mcpgate/mcpgate/internal/upstream/stdio.spawnLoop"),
			goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"), goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop")); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// wait bounds every blocking step of a test.
const wait = 10 * time.Second

// fault is what the upstream does to one request instead of answering it.
type fault struct {
	// status answers with this HTTP status (and retryAfter, when set),
	// before the server sees the request; rpcBody gives it a JSON-RPC
	// error body.
	status     int
	retryAfter string
	rpcBody    bool
	// reset breaks the connection (RST) before the server sees it; after
	// does so once the server has handled the request.
	reset, after bool
	// eof closes the connection cleanly after the server handled the
	// request, without an answer.
	eof bool
	// stall holds the request until the client gives up; midStream does
	// so after answering 200 with an SSE stream and a comment.
	stall, midStream bool
}

func (f fault) String() string {
	switch {
	case f.status != 0:
		return strconv.Itoa(f.status)
	case f.reset && f.after:
		return "reset-after-handling"
	case f.reset:
		return "reset"
	case f.eof:
		return "eof-after-handling"
	case f.stall && f.midStream:
		return "stall-mid-stream"
	case f.stall:
		return "stall"
	}
	return "none"
}

// faulty is a go-sdk Streamable HTTP server behind a handler that counts
// the requests reaching it by JSON-RPC method (tools/call by tool: key
// "tools/call:name") and applies the faults queued for them.
type faulty struct {
	ts     *httptest.Server
	inner  http.Handler
	mu     sync.Mutex
	queue  map[string][]fault // consumed one per request
	always map[string]*fault
	posts  map[string]int
	// only, when set, limits faults to this upstream session.
	only string
	// ids are the JSON-RPC ids of the requests, in arrival order.
	ids []string
	// runs counts tool executions by name.
	runs sync.Map // name → *atomic.Int64
}

func newFaulty(t testing.TB) *faulty {
	t.Helper()
	s := mcp.NewServer(&mcp.Implementation{Name: "faulty", Version: "1"}, nil)
	f := &faulty{queue: map[string][]fault{}, always: map[string]*fault{}, posts: map[string]int{}}
	tool := func(name string, ann *mcp.ToolAnnotations, isError bool) {
		mcp.AddTool(s, &mcp.Tool{Name: name, Annotations: ann},
			func(_ context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
				f.ran(name).Add(1)
				return &mcp.CallToolResult{IsError: isError, Content: []mcp.Content{&mcp.TextContent{Text: name + " done"}}}, nil, nil
			})
	}
	tool("read", &mcp.ToolAnnotations{ReadOnlyHint: true}, false)
	tool("write", nil, false)
	tool("fails", nil, true)
	f.inner = mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{JSONResponse: true})
	f.ts = httptest.NewServer(f)
	t.Cleanup(f.ts.Close)
	return f
}

func (f *faulty) ran(name string) *atomic.Int64 {
	v, _ := f.runs.LoadOrStore(name, new(atomic.Int64))
	return v.(*atomic.Int64)
}

// key is a request body's method, "tools/call:name" for tool calls.
func key(body []byte) string {
	var m struct {
		Method string `json:"method"`
		Params struct {
			Name string `json:"name"`
		} `json:"params"`
	}
	_ = json.Unmarshal(body, &m)
	if m.Method == "tools/call" {
		return m.Method + ":" + m.Params.Name
	}
	return m.Method
}

// fail queues faults for the next requests of k.
func (f *faulty) fail(k string, fs ...fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queue[k] = append(f.queue[k], fs...)
}

// failAlways applies fl to every request of k until cleared (nil).
func (f *faulty) failAlways(k string, fl *fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.always[k] = fl
}

func (f *faulty) count(k string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.posts[k]
}

func (f *faulty) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		f.inner.ServeHTTP(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	k := key(body)
	var env struct {
		ID json.RawMessage `json:"id"`
	}
	_ = json.Unmarshal(body, &env)
	f.mu.Lock()
	f.posts[k]++
	if len(env.ID) > 0 {
		f.ids = append(f.ids, string(env.ID))
	}
	var fl *fault
	if f.only == "" || r.Header.Get("Mcp-Session-Id") == f.only {
		if q := f.queue[k]; len(q) > 0 {
			fl, f.queue[k] = &q[0], q[1:]
		} else if a := f.always[k]; a != nil {
			fl = a
		}
	}
	f.mu.Unlock()
	if fl == nil {
		f.inner.ServeHTTP(w, r)
		return
	}
	switch {
	case fl.status != 0:
		if fl.retryAfter != "" {
			w.Header().Set("Retry-After", fl.retryAfter)
		}
		if fl.rpcBody {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(fl.status)
			_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"busy"}}`)
			return
		}
		http.Error(w, http.StatusText(fl.status), fl.status)
	case fl.stall:
		if fl.midStream {
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, ": stalled\n\n")
			http.NewResponseController(w).Flush()
		}
		<-r.Context().Done()
	case fl.reset && !fl.after:
		hijack(w, true)
	default: // handled, then the answer is lost
		f.inner.ServeHTTP(httptest.NewRecorder(), r)
		hijack(w, fl.reset)
	}
}

// hijack closes the client's connection, with an RST when reset.
func hijack(w http.ResponseWriter, reset bool) {
	c, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	if tc, ok := c.(*net.TCPConn); ok && reset {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// sink records what a Conn hands over outside requests.
type sink struct{ closed chan error }

func newSink() *sink                  { return &sink{closed: make(chan error, 4)} }
func (s *sink) Deliver(*core.Message) {}
func (s *sink) Closed(err error)      { s.closed <- err }

func ctxT(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

func msg(t testing.TB, raw string) *core.Message {
	t.Helper()
	m, err := core.Decode([]byte(raw))
	if err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	return m
}

var seq atomic.Int64

// call is a request of method (a tools/call of name when name is set).
func call(t testing.TB, method, name string) *core.Message {
	id := strconv.FormatInt(seq.Add(1), 10)
	if name != "" {
		return msg(t, `{"jsonrpc":"2.0","id":`+id+`,"method":"tools/call","params":{"name":"`+name+`","arguments":{}}}`)
	}
	return msg(t, `{"jsonrpc":"2.0","id":`+id+`,"method":"`+method+`","params":{}}`)
}

// testRetry repeats every class quickly.
func testRetry() *Retry {
	return &Retry{Attempts: 3, Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Jitter: true, Budget: 5 * time.Second,
		On: Of(ClassConnect, ClassReset, ClassTimeout, Class502, Class503, Class504, Class429)}
}

// fixture is a wrapper over an HTTP upstream with its own metrics.
type fixture struct {
	up  *Upstream
	reg *prometheus.Registry
	srv *faulty
}

func newFixture(t testing.TB, srv *faulty, o Options) *fixture {
	t.Helper()
	inner, err := httpup.New(httpup.Options{URL: srv.ts.URL}, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if o.Route == "" {
		o.Route = "test"
	}
	o.Metrics = m
	u := New(inner, o)
	t.Cleanup(func() { _ = u.Close() })
	return &fixture{up: u, reg: reg, srv: srv}
}

// session opens a legacy session, initializes it and lists its tools
// into its catalog, as the gateway does.
func (fx *fixture) session(t testing.TB) upstream.Conn {
	t.Helper()
	cat := catalog.New()
	c, err := fx.up.Open(ctxT(t), upstream.OpenParams{Session: &core.SessionInfo{ID: "s", Route: "test"}, Era: core.EraLegacy, Catalog: cat}, newSink())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	resp, err := c.RoundTrip(ctxT(t), msg(t, `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`), nil)
	if err != nil || resp.Kind != core.KindResponse {
		t.Fatalf("initialize: %v %v", resp, err)
	}
	if err := c.Send(ctxT(t), msg(t, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)); err != nil {
		t.Fatal(err)
	}
	gen := cat.Gen()
	list, err := c.RoundTrip(ctxT(t), call(t, "tools/list", ""), nil)
	if err != nil || list.Kind != core.KindResponse {
		t.Fatalf("tools/list: %v %v", list, err)
	}
	cat.Observe(gen, list.Result)
	if tl := cat.Tool("read"); tl == nil || !tl.ReadOnly {
		t.Fatalf("the catalog does not know read as read-only: %s", list.Result)
	}
	return c
}

func (fx *fixture) metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	fams, err := metricstest.Gather(fx.reg)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := fams.Value(name, labels...)
	return v
}

// newStdio is a stdio upstream of the crashing test server.
func newStdio(t testing.TB) upstream.Upstream {
	t.Helper()
	u := stdio.New(stdio.Options{Command: serverBin, Args: []string{"-legacy"}, ShutdownGrace: time.Second}, "stdio-test", nil)
	return u
}

func newMetrics(t testing.TB) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	return m, reg
}

var metricstestGather = metricstest.Gather
