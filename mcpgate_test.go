package mcpgate_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate"
)

type whoIn struct{}

// newServer is an embedded server whose tool names the session it runs in.
func newServer(versions ...string) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "embedded", Version: "1"}, &mcp.ServerOptions{SupportedProtocolVersions: versions})
	mcp.AddTool(s, &mcp.Tool{Name: "whoami"}, func(ctx context.Context, _ *mcp.CallToolRequest, _ whoIn) (*mcp.CallToolResult, any, error) {
		text := "no session"
		if ss := mcpgate.SessionFromContext(ctx); ss != nil {
			text = ss.ID + " " + ss.Principal
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}, nil, nil
	})
	return s
}

func handler(t *testing.T, opts *mcpgate.Options, versions ...string) (*mcpgate.Handler, string) {
	t.Helper()
	h, err := mcpgate.NewHandler(func(*http.Request) *mcp.Server { return newServer(versions...) }, opts)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(func() {
		ts.Close()
		_ = h.Close(context.Background())
	})
	return h, ts.URL + "/mcp"
}

func connect(ctx context.Context, url, version string) (*mcp.ClientSession, error) {
	c := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil)
	return c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url}, &mcp.ClientSessionOptions{ProtocolVersion: version})
}

// initialize opens a legacy session with a bare initialize (no GET stream,
// so nothing keeps it active) and returns its id.
func initialize(t *testing.T, ctx context.Context, url string) string {
	t.Helper()
	body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bare","version":"1"}}}`
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	id := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || id == "" {
		t.Fatalf("initialize: %d, session %q", resp.StatusCode, id)
	}
	return id
}

func whoami(t *testing.T, ctx context.Context, cs *mcp.ClientSession) string {
	t.Helper()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "whoami", Arguments: map[string]any{}})
	if err != nil {
		t.Fatalf("tools/call: %v", err)
	}
	if res.IsError || len(res.Content) != 1 {
		t.Fatalf("tools/call result %+v", res)
	}
	return res.Content[0].(*mcp.TextContent).Text
}

const legacy, modern = "2025-11-25", "2026-07-28"

func TestBothEras(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		versions []string
	}{
		{"dual-era server", nil},
		{"modern-only server", []string{modern}},
		{"legacy-only server", []string{legacy, "2025-06-18", "2025-03-26"}},
	} {
		for _, client := range []string{legacy, modern} {
			t.Run(tc.name+"/client "+client, func(t *testing.T) {
				t.Parallel()
				_, url := handler(t, nil, tc.versions...)
				ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
				defer cancel()
				cs, err := connect(ctx, url, client)
				if err != nil {
					t.Fatal(err)
				}
				defer cs.Close()
				got := whoami(t, ctx, cs)
				if strings.HasPrefix(got, "no session") || !strings.HasSuffix(got, " anonymous") {
					t.Fatalf("whoami = %q: the handler does not see its mcpgate session", got)
				}
				if client == legacy && !strings.HasPrefix(got, cs.ID()+" ") {
					t.Fatalf("whoami = %q, want the client's session id %q", got, cs.ID())
				}
			})
		}
	}
}

// TestCapExactUnderConcurrency: 1,000 concurrent creations against a cap
// of 100 with eviction leave exactly 100 sessions, never more.
func TestCapExactUnderConcurrency(t *testing.T) {
	t.Parallel()
	const total, max = 1000, 100
	var created, evicted, ended atomic.Int64
	var h *mcpgate.Handler
	var over atomic.Int64
	opts := &mcpgate.Options{
		Sessions: mcpgate.Sessions{Max: max, WhenFull: "evict-oldest",
			PerAddress:   &mcpgate.Cap{Max: 0},
			CreationRate: mcpgate.CreationRate{PerAddress: &mcpgate.Window{Limit: 0}}},
		Hooks: mcpgate.Hooks{
			Created: func(*mcpgate.Session) {
				created.Add(1)
				if n := h.Sessions(); n > max {
					over.Store(int64(n))
				}
			},
			Evicted: func(*mcpgate.Session) { evicted.Add(1) },
			Ended:   func(*mcpgate.Session, string) { ended.Add(1) },
		},
	}
	h, url := handler(t, opts)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"flood","version":"1"}}}`
	var wg sync.WaitGroup
	var ok atomic.Int64
	var mu sync.Mutex
	codes := map[int]int{}
	tr := &http.Transport{MaxIdleConnsPerHost: 200}
	defer tr.CloseIdleConnections()
	for range total {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && resp.Header.Get("Mcp-Session-Id") != "" {
				ok.Add(1)
			} else {
				mu.Lock()
				codes[resp.StatusCode]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	// A creation that finds the cap full of sessions still being created
	// (nothing evictable yet) is refused with 503; every other one gets a
	// session, and the cap evicts exactly what it must.
	if ok.Load()+int64(codes[http.StatusServiceUnavailable]) != total || created.Load() != ok.Load() {
		t.Fatalf("%d of %d creations answered with a session, %d created; refusals by status: %v", ok.Load(), total, created.Load(), codes)
	}
	if n := h.Sessions(); n != max {
		t.Fatalf("%d live sessions after %d creations, want exactly %d", n, total, max)
	}
	if n := over.Load(); n != 0 {
		t.Fatalf("%d live sessions seen at a creation, above the cap %d", n, max)
	}
	if evicted.Load() != created.Load()-max {
		t.Fatalf("%d evictions of %d sessions created, want %d", evicted.Load(), created.Load(), created.Load()-max)
	}
}

func TestCreationRateLimit(t *testing.T) {
	t.Parallel()
	_, url := handler(t, &mcpgate.Options{Sessions: mcpgate.Sessions{CreationRate: mcpgate.CreationRate{PerAddress: &mcpgate.Window{Limit: 3, Window: time.Hour}}}})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for i := range 3 {
		cs, err := connect(ctx, url, legacy)
		if err != nil {
			t.Fatalf("session %d: %v", i+1, err)
		}
		defer cs.Close()
	}
	if _, err := connect(ctx, url, legacy); err == nil || !strings.Contains(err.Error(), "429") && !strings.Contains(strings.ToLower(err.Error()), "too many") {
		t.Fatalf("a 4th session within the window: %v, want 429", err)
	}
}

func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	endedIdle := make(chan string, 1)
	h, url := handler(t, &mcpgate.Options{Sessions: mcpgate.Sessions{IdleTimeout: 300 * time.Millisecond},
		Hooks: mcpgate.Hooks{Ended: func(s *mcpgate.Session, reason string) {
			if reason == "idle_timeout" {
				endedIdle <- s.ID
			}
		}}})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	sid := initialize(t, ctx, url)
	select {
	case id := <-endedIdle:
		if id != sid {
			t.Fatalf("session %q ended idle, want %q", id, sid)
		}
	case <-ctx.Done():
		t.Fatal("the idle session was not ended")
	}
	if n := h.Sessions(); n != 0 {
		t.Fatalf("%d live sessions after the idle timeout", n)
	}
}

// swap serves whichever handler is current, so that a client keeps its
// address across a restart.
type swap struct {
	h atomic.Pointer[mcpgate.Handler]
}

func (s *swap) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.h.Load().ServeHTTP(w, r) }

func TestRestartWithEmbeddedStore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	opts := &mcpgate.Options{Store: mcpgate.Store{Kind: "embedded", DataDir: dir}}
	getServer := func(*http.Request) *mcp.Server { return newServer() }
	h1, err := mcpgate.NewHandler(getServer, opts)
	if err != nil {
		t.Fatal(err)
	}
	sw := &swap{}
	sw.h.Store(h1)
	ts := httptest.NewServer(sw)
	defer ts.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cs, err := connect(ctx, ts.URL+"/mcp", legacy)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	before := whoami(t, ctx, cs)
	if err := h1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	resumed := make(chan string, 1)
	o2 := *opts
	o2.Hooks.Resumed = func(s *mcpgate.Session, how string) {
		select {
		case resumed <- how:
		default:
		}
	}
	h2, err := mcpgate.NewHandler(getServer, &o2)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close(context.Background())
	sw.h.Store(h2)
	if n := h2.Sessions(); n != 1 {
		t.Fatalf("%d sessions restored, want 1", n)
	}
	if after := whoami(t, ctx, cs); after != before {
		t.Fatalf("after the restart the session answers %q, before %q", after, before)
	}
	select {
	case how := <-resumed:
		if how != "restart" {
			t.Fatalf("resumed by %q, want restart", how)
		}
	case <-ctx.Done():
		t.Fatal("no Resumed hook after the restart")
	}
}

func TestMetricsScrape(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, url := handler(t, &mcpgate.Options{Admin: mcpgate.Admin{Listen: addr}})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cs, err := connect(ctx, url, legacy)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	whoami(t, ctx, cs)
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), "mcpgate_store_up") {
		t.Fatalf("/metrics: %d\n%.500s", resp.StatusCode, b)
	}
}

func TestOptionsRefused(t *testing.T) {
	t.Parallel()
	get := func(*http.Request) *mcp.Server { return newServer() }
	for _, tc := range []struct {
		name, want string
		o          *mcpgate.Options
	}{
		{"negative cap", "sessions.max", &mcpgate.Options{Sessions: mcpgate.Sessions{Max: -1}}},
		{"bad policy", "sessions.when_full", &mcpgate.Options{Sessions: mcpgate.Sessions{WhenFull: "drop-all"}}},
		{"routes", "routes", &mcpgate.Options{Routes: []mcpgate.Route{{Path: "/x"}}}},
		{"redis without the cluster hop", "cluster.listen", &mcpgate.Options{Store: mcpgate.Store{Kind: "redis"},
			Sessions: mcpgate.Sessions{IDKeys: []mcpgate.IDKey{{ID: "k1", Secret: "Zk3q9VbX2mP7wLr4Tn8Yc1Hd6Jf0Gs5Qa9Ue2Ko7Ri"}}}}},
	} {
		if _, err := mcpgate.NewHandler(get, tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: NewHandler said %v, want a refusal naming %s", tc.name, err, tc.want)
		}
	}
	if _, err := mcpgate.NewHandler(nil, nil); err == nil {
		t.Error("NewHandler accepted a nil getServer")
	}
}

// TestGetServerRequest: getServer gets the request that creates the
// session, whatever path the handler is mounted at; a nil server refuses
// the session.
func TestGetServerRequest(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []string
	h, err := mcpgate.NewHandler(func(r *http.Request) *mcp.Server {
		mu.Lock()
		seen = append(seen, r.Header.Get("X-Tenant-Hint"))
		mu.Unlock()
		if r.Header.Get("X-Tenant-Hint") == "refused" {
			return nil
		}
		return newServer()
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(context.Background())
	mux := http.NewServeMux()
	mux.Handle("/tools/v1/mcp", h)
	ts := httptest.NewServer(mux)
	defer ts.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for _, hint := range []string{"blue", "refused"} {
		c := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil)
		hc := &http.Client{Transport: headerTransport{"X-Tenant-Hint", hint}}
		cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: ts.URL + "/tools/v1/mcp", HTTPClient: hc, MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: legacy})
		if hint == "refused" {
			if err == nil {
				cs.Close()
				t.Fatal("a session getServer refused was created")
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		whoami(t, ctx, cs)
		cs.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	found := false
	for _, s := range seen {
		found = found || s == "blue"
	}
	if !found {
		t.Fatalf("getServer saw the hints %q, never the creating request's", seen)
	}
}

type headerTransport struct{ k, v string }

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(h.k, h.v)
	return http.DefaultTransport.RoundTrip(r)
}

func TestLoadOptions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, text string) string {
		p := dir + "/" + name
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	o, err := mcpgate.LoadOptions(write("ok.yaml", "sessions:\n  max: 2\n  when_full: reject\n  per_address: {max: 0}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if o.Sessions.Max != 2 || o.Store.Kind != "memory" || len(o.Routes) != 0 || len(o.Listeners) != 0 {
		t.Fatalf("loaded %+v, store %q", o.Sessions, o.Store.Kind)
	}
	h, url := handler(t, o)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	initialize(t, ctx, url)
	initialize(t, ctx, url)
	if _, err := connect(ctx, url, legacy); err == nil {
		t.Fatal("a third session under a cap of 2 with reject")
	}
	if n := h.Sessions(); n != 2 {
		t.Fatalf("%d sessions, want 2", n)
	}
	if err := h.Close(ctx); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(url, "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || h.Sessions() != 0 {
		t.Fatalf("after Close: HTTP %d, %d sessions", resp.StatusCode, h.Sessions())
	}

	_, err = mcpgate.LoadOptions(write("bad.yaml", "sessions:\n  max: 2\n  when_full: sometimes\n"))
	if err == nil || !strings.Contains(err.Error(), "sessions.when_full") || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("bad when_full: %v, want its path and line", err)
	}
	if _, err := mcpgate.LoadOptions(write("routes.yaml", "routes:\n  - path: /mcp\n    upstream: {http: {url: 'http://127.0.0.1:1/mcp'}}\n")); err == nil || !strings.Contains(err.Error(), "routes") {
		t.Fatalf("a file with routes: %v, want a refusal naming them", err)
	}
}

// TestCapWithClients: 1,000 go-sdk clients connect at once to a server
// capped at 100 sessions with eviction; afterwards exactly 100 of them are
// still served, and every other one learns its session is gone.
func TestCapWithClients(t *testing.T) {
	t.Parallel()
	const total, max = 1000, 100
	var evicted, created atomic.Int64
	h, url := handler(t, &mcpgate.Options{
		Sessions: mcpgate.Sessions{Max: max, WhenFull: "evict-oldest", PerAddress: &mcpgate.Cap{},
			CreationRate: mcpgate.CreationRate{PerAddress: &mcpgate.Window{}}},
		Hooks: mcpgate.Hooks{Created: func(*mcpgate.Session) { created.Add(1) }, Evicted: func(*mcpgate.Session) { evicted.Add(1) }},
	})
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	sessions := make([]*mcp.ClientSession, total)
	var wg sync.WaitGroup
	for i := range total {
		wg.Go(func() {
			c := mcp.NewClient(&mcp.Implementation{Name: "crowd", Version: "1"}, nil)
			cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: legacy})
			if err == nil {
				sessions[i] = cs
			}
		})
	}
	wg.Wait()
	if n := h.Sessions(); n != max {
		t.Fatalf("%d live sessions after %d connections, want exactly %d", n, total, max)
	}
	if e, c := evicted.Load(), created.Load(); e != c-max {
		t.Fatalf("%d evictions of %d sessions created, want %d", e, c, c-max)
	}
	var served atomic.Int64
	for _, cs := range sessions {
		if cs == nil {
			continue
		}
		wg.Go(func() {
			defer cs.Close()
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if _, err := cs.CallTool(cctx, &mcp.CallToolParams{Name: "whoami", Arguments: map[string]any{}}); err == nil {
				served.Add(1)
			}
		})
	}
	wg.Wait()
	if n := served.Load(); n != max {
		t.Fatalf("%d clients served after the crowd, want exactly %d", n, max)
	}
}
