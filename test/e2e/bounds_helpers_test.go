package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/testutil/nodetool"
)

// initBodyVersion is an initialize request asking for protocol version v.
func initBodyVersion(v string) string {
	return `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"` + v + `","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`
}

// sessionAt opens a raw legacy session at protocol version v and returns its id.
func sessionAt(t testing.TB, url, v string) string {
	t.Helper()
	r := do(t, "POST", url, initBodyVersion(v), nil)
	id := r.Header.Get("Mcp-Session-Id")
	if r.Status != http.StatusOK || id == "" {
		t.Fatalf("initialize: %d %s", r.Status, r.Body)
	}
	if n := do(t, "POST", url, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, sessHdr(id, v)); n.Status != http.StatusAccepted {
		t.Fatalf("initialized: %d %s", n.Status, n.Body)
	}
	return id
}

func sessHdr(id, version string) map[string]string {
	return map[string]string{"Mcp-Session-Id": id, "MCP-Protocol-Version": version}
}

// pingAs sends a ping on session id and returns the raw answer.
func pingAs(t testing.TB, url, id, version string) rawResp {
	t.Helper()
	return do(t, "POST", url, `{"jsonrpc":"2.0","id":"p","method":"ping"}`, sessHdr(id, version))
}

// retryAfter parses a Retry-After header in seconds; -1 when absent or not
// a number.
func retryAfter(h http.Header) int {
	v := h.Get("Retry-After")
	n, err := strconv.Atoi(v)
	if v == "" || err != nil {
		return -1
	}
	return n
}

// openStream sends a request and returns the response without reading its
// body (for SSE streams). The caller closes the body; closing it early
// drops the connection.
func openStream(t testing.TB, ctx context.Context, method, url, body string, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	// A transport of its own: closing the body must close this connection,
	// not return it to a pool shared with other requests.
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// capWatch samples a session manager's global count (live plus reserved
// sessions, read under the admission lock, so every sample is exact) until
// stopped, and remembers the largest value seen.
type capWatch struct {
	max  atomic.Int64
	stop chan struct{}
	done chan struct{}
}

func watchGlobalCount(m *session.Manager) *capWatch {
	w := &capWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			if n := int64(m.Count(session.ScopeGlobal, "")); n > w.max.Load() {
				w.max.Store(n)
			}
			select {
			case <-w.stop:
				return
			default:
				time.Sleep(50 * time.Microsecond)
			}
		}
	}()
	return w
}

// Max stops the watch and returns the largest count seen.
func (w *capWatch) Max() int {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	return int(w.max.Load())
}

// connectSDK connects a go-sdk client to url at protocol version v.
func connectSDK(ctx context.Context, t testing.TB, url, v string, hc *http.Client) *mcp.ClientSession {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "e2e-bounds", Version: "1.0.0"}, nil)
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, MaxRetries: -1, HTTPClient: hc}, &mcp.ClientSessionOptions{ProtocolVersion: v})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

// buildEchoServer builds examples/echo-server and returns the binary.
func buildEchoServer(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "echo-server")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/mcpgate/mcpgate/examples/echo-server").CombinedOutput()
	if err != nil {
		t.Fatalf("building examples/echo-server: %v\n%s", err, out)
	}
	return bin
}

// lossyUpstream is a stateful go-sdk server behind a handler that can
// forget an upstream session, as a restarted server would: once armed with
// a method, the next POST of that method on a session it has not forgotten
// yet is answered 404, and so is every later request with that session id
// (the go-sdk session behind it is never reached again).
type lossyUpstream struct {
	URL string
	// Bumps counts runs of the side-effecting tool "bump".
	Bumps atomic.Int32

	h         http.Handler
	inits     atomic.Int32
	mu        sync.Mutex
	armed     string // the JSON-RPC method whose next request loses its session
	forgotten map[string]bool
	lost      []string // methods of the requests that were answered 404 on arming
}

type bumpArgs struct {
	By int `json:"by"`
}

func startLossyUpstream(t testing.TB) *lossyUpstream {
	t.Helper()
	u := &lossyUpstream{forgotten: map[string]bool{}}
	s := mcp.NewServer(&mcp.Implementation{Name: "lossy", Version: "1.0.0"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "read_bumps", Description: "read-only", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
		func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: strconv.Itoa(int(u.Bumps.Load()))}}}, nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "bump", Description: "side effect: adds to a counter"},
		func(_ context.Context, _ *mcp.CallToolRequest, in bumpArgs) (*mcp.CallToolResult, any, error) {
			n := u.Bumps.Add(int32(max(in.By, 1)))
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "bumped to " + strconv.Itoa(int(n))}}}, nil, nil
		})
	u.h = mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
	srv := httptest.NewServer(u)
	t.Cleanup(srv.Close)
	u.URL = srv.URL + "/"
	return u
}

func (u *lossyUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sid := r.Header.Get("Mcp-Session-Id")
	method := ""
	if r.Method == http.MethodPost {
		body, _ := io.ReadAll(r.Body)
		var env struct {
			Method string `json:"method"`
		}
		_ = json.Unmarshal(body, &env)
		method = env.Method
		if method == "initialize" {
			u.inits.Add(1)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	if sid != "" {
		u.mu.Lock()
		forget := u.forgotten[sid]
		if !forget && method != "" && u.armed == method {
			u.armed = ""
			u.forgotten[sid] = true
			u.lost = append(u.lost, r.Method+" "+method)
			forget = true
		}
		u.mu.Unlock()
		if forget {
			http.Error(w, "session not found", http.StatusNotFound)
			return
		}
	}
	u.h.ServeHTTP(w, r)
}

// arm makes the next request of method on a live upstream session lose
// that session.
func (u *lossyUpstream) arm(method string) {
	u.mu.Lock()
	u.armed = method
	u.mu.Unlock()
}

// Inits is how many initialize requests reached the upstream.
func (u *lossyUpstream) Inits() int { return int(u.inits.Load()) }

// Lost returns the requests that were answered 404 when armed.
func (u *lossyUpstream) Lost() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.lost...)
}

// tsEvictedScript returns test/e2e/tsclient/evicted.mjs and the directory
// holding the node_modules it must load the SDK from.
func tsEvictedScript(t testing.TB) (script, nodeRoot string) {
	t.Helper()
	script = filepath.Join(nodetool.Root(t), "test", "e2e", "tsclient", "evicted.mjs")
	sdkPkg := nodetool.Bin(t, "@modelcontextprotocol/sdk", "package.json")
	// .../node_modules/@modelcontextprotocol/sdk/package.json → the directory above node_modules.
	return script, filepath.Dir(filepath.Dir(filepath.Dir(filepath.Dir(sdkPkg))))
}
