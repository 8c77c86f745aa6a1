package frontend

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/pipeline"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/memory"
	"github.com/mcpgate/mcpgate/internal/upstream/httpup"
)

// forgetful serves a go-sdk server over Streamable HTTP and can forget
// every upstream session at once (as a restarted server does), recording
// the initialize requests it receives.
type forgetful struct {
	server *mcp.Server
	cur    atomic.Pointer[mcp.StreamableHTTPHandler]
	mu     sync.Mutex
	inits  []string
}

func newForgetful(t *testing.T) (*forgetful, string) {
	s := mcp.NewServer(&mcp.Implementation{Name: "up", Version: "1"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "echo"}, func(_ context.Context, _ *mcp.CallToolRequest, in struct {
		Text string `json:"text"`
	}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text}}}, nil, nil
	})
	u := &forgetful{server: s}
	u.forget()
	ts := httptest.NewServer(u)
	t.Cleanup(func() {
		ts.Close()
		// Sessions of forgotten handlers are closed by nobody else.
		for ss := range s.Sessions() {
			_ = ss.Close()
		}
	})
	return u, ts.URL
}

func (u *forgetful) forget() {
	u.cur.Store(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return u.server }, nil))
}

func (u *forgetful) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if bytes.Contains(body, []byte(`"initialize"`)) {
			u.mu.Lock()
			u.inits = append(u.inits, string(body))
			u.mu.Unlock()
		}
	}
	u.cur.Load().ServeHTTP(w, r)
}

func (u *forgetful) initializes() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.inits)
}

// tally records what a test stage sees.
type tally struct {
	mu     sync.Mutex
	c2s    []string // kind:method
	s2c    []string
	events []*pipeline.Event
}

func (tl *tally) add(list *[]string, m *core.Message) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	*list = append(*list, m.Kind.String()+":"+m.Method)
}

func (tl *tally) snapshot() (c2s, s2c []string, events []*pipeline.Event) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return slices.Clone(tl.c2s), slices.Clone(tl.s2c), slices.Clone(tl.events)
}

// stages returns an "audit" stage that records both directions and the
// events, and a "policy" stage that renames the client in initialize.
func (tl *tally) stages() []pipeline.Stage {
	return []pipeline.Stage{
		{
			Name: "audit",
			ClientToServer: func(next core.Handler) core.Handler {
				return func(ctx context.Context, m *core.Message) (*core.Message, error) {
					tl.add(&tl.c2s, m)
					return next(ctx, m)
				}
			},
			ServerToClient: func(next core.Handler) core.Handler {
				return func(ctx context.Context, m *core.Message) (*core.Message, error) {
					tl.add(&tl.s2c, m)
					return next(ctx, m)
				}
			},
			Observe: func(_ context.Context, ev *pipeline.Event) {
				tl.mu.Lock()
				defer tl.mu.Unlock()
				tl.events = append(tl.events, ev)
			},
		},
		{
			Name: "policy",
			ClientToServer: func(next core.Handler) core.Handler {
				return func(ctx context.Context, m *core.Message) (*core.Message, error) {
					if m.Method == "initialize" {
						raw := bytes.Replace(m.Raw, []byte(`"name":"onepass-client"`), []byte(`"name":"renamed-by-policy"`), 1)
						if err := m.Replace(raw); err != nil {
							return nil, err
						}
					}
					return next(ctx, m)
				}
			},
		},
	}
}

// onePassGateway is a frontend in front of a forgetful go-sdk upstream, with
// a store, the tally's stages and a gateway-wide observer.
func onePassGateway(t *testing.T) (*tally, *forgetful, store.Store, string, *[]*pipeline.Event) {
	t.Helper()
	up, url := newForgetful(t)
	u, err := httpup.New(httpup.Options{URL: url}, "r", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = u.Close() })
	mgr := session.NewManager(session.Options{})
	t.Cleanup(func() { mgr.Close(context.Background()) })
	st := memory.New()
	t.Cleanup(func() { _ = st.Close() })
	tl := &tally{}
	var mu sync.Mutex
	var global []*pipeline.Event
	f, err := New(Options{Sessions: mgr, Observe: func(_ context.Context, ev *pipeline.Event) {
		mu.Lock()
		defer mu.Unlock()
		global = append(global, ev)
	}}, []*Route{{Name: "r", Path: "/mcp", Clients: EraAuto, Upstream: u, Stages: tl.stages(), RequestTimeout: 10 * time.Second, RetryTools: []string{"echo"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Provision(Provisions{Store: st}); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(f.Handler(ListenerPolicy{Loopback: true}))
	t.Cleanup(ts.Close)
	return tl, up, st, ts.URL + "/mcp", &global
}

// TestOnePass: what the chain rewrote is what a re-established upstream
// session gets and what the store keeps; the replay and the gateway's own
// notifications/initialized reach the observers as Originated events; a
// client's answer nobody waits for passes the client→server chain; and
// refusals before the chain reach both the route's and the gateway-wide
// observers.
func TestOnePass(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tl, up, st, url, global := onePassGateway(t)

	client := mcp.NewClient(&mcp.Implementation{Name: "onepass-client", Version: "1"}, nil)
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, DisableStandaloneSSE: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	call := func() {
		t.Helper()
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hi"}})
		if err != nil || res.IsError {
			t.Fatalf("CallTool = %v, %v", res, err)
		}
	}
	call()

	// The stored record holds the initialize the upstream got.
	rec, err := st.Get(ctx, cs.ID())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(rec.InitRaw, []byte("renamed-by-policy")) {
		t.Errorf("stored initialize %s, want the chain's rewrite", rec.InitRaw)
	}

	// The upstream forgets its sessions: the next call re-establishes one
	// with the rewritten initialize, not the client's original.
	up.forget()
	call()
	inits := up.initializes()
	if len(inits) != 2 {
		t.Fatalf("upstream got %d initialize requests, want 2", len(inits))
	}
	for i, body := range inits {
		if !strings.Contains(body, "renamed-by-policy") || strings.Contains(body, "onepass-client") {
			t.Errorf("initialize %d upstream: %s; want the chain's rewrite", i, body)
		}
	}
	c2s, _, events := tl.snapshot()
	var replay []string
	for _, ev := range events {
		if ev.Kind == pipeline.Originated && ev.Origin == "reestablish" {
			replay = append(replay, ev.Message.Direction.String()+":"+ev.Message.Kind.String()+":"+ev.Message.Method)
		}
	}
	want := []string{"client_to_server:request:initialize", "server_to_client:response:", "client_to_server:notification:notifications/initialized"}
	if !slices.Equal(replay, want) {
		t.Errorf("re-establishment events %v, want %v", replay, want)
	}
	if n := count(c2s, "request:initialize"); n != 1 {
		t.Errorf("the chain saw initialize %d times, want once (the replay is an event, not a second pass)", n)
	}

	// A client's answer to a server request nobody waits for passes the
	// chain on its way upstream.
	post := func(header http.Header, body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	sid := http.Header{"Mcp-Session-Id": {cs.ID()}, "Mcp-Protocol-Version": {"2025-11-25"}}
	if resp := post(sid, `{"jsonrpc":"2.0","id":"nobody-asked","result":{}}`); resp.StatusCode != http.StatusAccepted {
		t.Errorf("client response answered %d, want 202", resp.StatusCode)
	}
	c2s, _, _ = tl.snapshot()
	if n := count(c2s, "response:"); n != 1 {
		t.Errorf("the chain saw %d client responses, want 1: %v", n, c2s)
	}

	// Refusals before the chain are events for the route's observers and
	// the gateway-wide one.
	post(http.Header{"Origin": {"https://evil.example"}}, `{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	post(nil, `{"jsonrpc":"2.0","id":1,`)
	post(http.Header{"Mcp-Session-Id": {"not-a-session"}}, `{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	wantChecks := []string{pipeline.CheckForbidden, pipeline.CheckParse, pipeline.CheckSession}
	_, _, events = tl.snapshot()
	if got := refusedChecks(events); !slices.Equal(got, wantChecks) {
		t.Errorf("route observer saw refusals %v, want %v", got, wantChecks)
	}
	if got := refusedChecks(*global); !slices.Equal(got, wantChecks) {
		t.Errorf("gateway-wide observer saw refusals %v, want %v", got, wantChecks)
	}
	for _, ev := range events {
		if ev.Kind == pipeline.Refused && (ev.Route != "r" || ev.Err == nil || ev.RemoteAddr == "") {
			b, _ := json.Marshal(ev)
			t.Errorf("refusal event lacks route, error or address: %s", b)
		}
	}
}

func count(list []string, s string) int {
	n := 0
	for _, v := range list {
		if v == s {
			n++
		}
	}
	return n
}

func refusedChecks(events []*pipeline.Event) []string {
	var out []string
	for _, ev := range events {
		if ev.Kind == pipeline.Refused {
			out = append(out, ev.Check)
		}
	}
	return out
}
