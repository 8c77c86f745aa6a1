package frontend

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/pipeline"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/testutil/conformancefixture"
	"github.com/mcpgate/mcpgate/internal/upstream/bridge"
	"github.com/mcpgate/mcpgate/internal/upstream/httpup"
)

// versionStage records, per tools/call, which version of the route's
// chain it ran on; gate, if not nil, holds the first call until closed.
type versionStage struct {
	mu      sync.Mutex
	seen    []string
	entered chan struct{}
	gate    chan struct{}
}

func (v *versionStage) stage(label string, gated bool) pipeline.Stage {
	return pipeline.Stage{Name: "logging", Interceptor: func(next core.Handler) core.Handler {
		return func(ctx context.Context, m *core.Message) (*core.Message, error) {
			if m.Method == "tools/call" && m.Direction == core.ClientToServer {
				if gated {
					v.entered <- struct{}{}
					<-v.gate
				}
				v.mu.Lock()
				v.seen = append(v.seen, label)
				v.mu.Unlock()
			}
			return next(ctx, m)
		}
	}}
}

// TestSwapKeepsSessionsAndFinishesInFlight: a swap that keeps a route's
// name and upstream keeps its session; the call in flight during the swap
// finishes on the chain it started on, the next call runs on the new one.
func TestSwapKeepsSessionsAndFinishesInFlight(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fixture := httptest.NewServer(conformancefixture.Handler(ctx, false))
	defer fixture.Close()
	inner, err := httpup.New(httpup.Options{URL: fixture.URL + "/"}, "r", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	up := bridge.New(inner, bridge.Options{})
	defer up.Close()

	mgr := session.NewManager(session.Options{})
	defer mgr.Close(context.Background())
	v := &versionStage{entered: make(chan struct{}, 1), gate: make(chan struct{})}
	route := func(label string, gated bool) *Route {
		return &Route{Name: "r", Path: "/mcp", Clients: EraAuto, Upstream: up, Stages: []pipeline.Stage{v.stage(label, gated)}}
	}
	f, err := New(Options{Sessions: mgr}, []*Route{route("v1", true)})
	if err != nil {
		t.Fatal(err)
	}
	defer f.CloseChains()
	srv := httptest.NewServer(f.Handler(ListenerPolicy{Loopback: true}))
	defer srv.Close()

	c := mcp.NewClient(&mcp.Implementation{Name: "swap-test", Version: "0"}, nil)
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: srv.URL + "/mcp", MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	call := func() error {
		_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text"})
		return err
	}
	first := make(chan error, 1)
	go func() { first <- call() }()
	<-v.entered // the first call is in the v1 chain

	ret, err := f.SwapRoutes([]*Route{route("v2", false)})
	if err != nil {
		t.Fatal(err)
	}
	if len(ret.Routes()) != 0 {
		t.Fatalf("a swap keeping the route retired %v", ret.Routes())
	}
	if ret.Finish(ctx) != 0 {
		t.Fatal("the retirement of nothing ended sessions")
	}
	close(v.gate)
	if err := <-first; err != nil {
		t.Fatalf("the call in flight during the swap: %v", err)
	}
	if err := call(); err != nil {
		t.Fatalf("the call after the swap: %v", err)
	}
	v.mu.Lock()
	seen := append([]string(nil), v.seen...)
	v.mu.Unlock()
	if len(seen) != 2 || seen[0] != "v1" || seen[1] != "v2" {
		t.Fatalf("chains run: %v, want [v1 v2]", seen)
	}
	if _, err := mgr.Get(cs.ID()); err != nil {
		t.Fatalf("the session did not survive the swap: %v", err)
	}

	// A table with a duplicate path changes nothing.
	dup := route("v3", false)
	other := &Route{Name: "other", Path: "/mcp", Upstream: up}
	if _, err := f.SwapRoutes([]*Route{dup, other}); err == nil {
		t.Fatal("a table with a duplicate path was accepted")
	}
	if err := call(); err != nil {
		t.Fatal(err)
	}
	if v.seen[len(v.seen)-1] != "v2" {
		t.Fatalf("a refused swap changed the chain: %v", v.seen)
	}
}

// TestProvisionBeforeServing: Provision is one step, refused a second
// time and once the frontend has served.
func TestProvisionBeforeServing(t *testing.T) {
	t.Parallel()
	mgr := session.NewManager(session.Options{})
	defer mgr.Close(context.Background())
	f, err := New(Options{Sessions: mgr}, []*Route{{Name: "r", Path: "/mcp"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Provision(Provisions{}); err != nil {
		t.Fatal(err)
	}
	if err := f.Provision(Provisions{}); err != ErrProvisioned {
		t.Fatalf("second Provision: %v", err)
	}
	late, err := New(Options{Sessions: mgr}, []*Route{{Name: "r", Path: "/mcp"}})
	if err != nil {
		t.Fatal(err)
	}
	late.Handler(ListenerPolicy{Loopback: true}).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/nowhere", nil))
	if err := late.Provision(Provisions{}); err != ErrProvisioned {
		t.Fatalf("Provision after serving: %v", err)
	}
}

// TestSupersededChainsClose: the chain of a version a swap replaced is
// closed once no session serves on it and its request timeout has passed
// since the swap; a session still on it keeps it open; CloseChains closes
// the rest.
func TestSupersededChainsClose(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fixture := httptest.NewServer(conformancefixture.Handler(ctx, false))
	defer fixture.Close()
	inner, err := httpup.New(httpup.Options{URL: fixture.URL + "/"}, "r", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	up := bridge.New(inner, bridge.Options{})
	defer up.Close()
	mgr := session.NewManager(session.Options{})
	defer mgr.Close(context.Background())
	var mu sync.Mutex
	closed := map[string]bool{}
	route := func(label string) *Route {
		return &Route{Name: "r", Path: "/mcp", Clients: EraAuto, Upstream: up, RequestTimeout: 200 * time.Millisecond,
			Stages: []pipeline.Stage{{Name: "logging", Close: func() error {
				mu.Lock()
				closed[label] = true
				mu.Unlock()
				return nil
			}}}}
	}
	isClosed := func(label string) bool {
		mu.Lock()
		defer mu.Unlock()
		return closed[label]
	}
	f, err := New(Options{Sessions: mgr}, []*Route{route("v1")})
	if err != nil {
		t.Fatal(err)
	}
	f.sweepEvery = time.Millisecond
	srv := httptest.NewServer(f.Handler(ListenerPolicy{Loopback: true}))
	defer srv.Close()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "supersede-test", Version: "0"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: srv.URL + "/mcp", MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()

	if _, err := f.SwapRoutes([]*Route{route("v2")}); err != nil {
		t.Fatal(err)
	}
	// The session has made no request since: it is still on v1.
	time.Sleep(30 * time.Millisecond)
	if isClosed("v1") {
		t.Fatal("v1's chain closed while a session serves on it")
	}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text"}); err != nil {
		t.Fatal(err)
	}
	// Its call moved it to v2: v1 is free.
	deadline := time.Now().Add(5 * time.Second)
	for !isClosed("v1") {
		if time.Now().After(deadline) {
			t.Fatal("v1's chain not closed after its last session moved")
		}
		time.Sleep(time.Millisecond)
	}
	if isClosed("v2") {
		t.Fatal("the chain in force was closed")
	}
	f.CloseChains()
	if !isClosed("v2") {
		t.Fatal("CloseChains left the chain in force open")
	}
}
