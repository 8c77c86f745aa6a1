package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/gateway"
	"github.com/mcpgate/mcpgate/internal/session"
)

// reloadConfig builds a configuration as startGateway does (same base,
// defaults applied), so that a reload differs from the running one only
// in what mutate and routes say.
func reloadConfig(t testing.TB, mutate func(*config.Config), routes ...config.Route) *config.Config {
	t.Helper()
	cfg := &config.Config{Listeners: []config.Listener{{Address: "127.0.0.1:0"}}, Routes: routes}
	cfg.Server.ShutdownTimeout = 5 * time.Second
	cfg.Store.Kind = config.StoreMemory
	if mutate != nil {
		mutate(cfg)
	}
	cfg.SetDefaults()
	return cfg
}

// connectEra connects a go-sdk client of protocol version to url.
func connectEra(ctx context.Context, t testing.TB, url, version string) *mcp.ClientSession {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "reload-client", Version: "1.0.0"}, nil)
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatalf("connect %s (%s): %v", url, version, err)
	}
	return cs
}

func callSimple(ctx context.Context, cs *mcp.ClientSession) error {
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text"})
	if err != nil {
		return err
	}
	if res.IsError {
		return fmt.Errorf("tool error: %v", res.Content)
	}
	return nil
}

// TestReloadUnderLoad swaps the configuration 50 times, alternating two
// that differ in the served route's request timeout and cap, the gateway
// cap, and a second route that comes and goes, while go-sdk clients of
// both eras call a tool on the served route without pause: no call fails,
// and the legacy sessions live through every swap.
func TestReloadUnderLoad(t *testing.T) {
	t.Parallel()
	upURL := fixtureHTTP(t, false)
	variant := func(i int) (func(*config.Config), []config.Route) {
		served := httpRoute("fixture", "/mcp", upURL)
		if i%2 == 0 {
			served.RequestTimeout = 30 * time.Second
			return func(c *config.Config) { c.Sessions.Max = 100 }, []config.Route{served}
		}
		served.RequestTimeout = 45 * time.Second
		served.MaxSessions = 50
		return func(c *config.Config) { c.Sessions.Max = 200 }, []config.Route{served, httpRoute("extra", "/extra", upURL)}
	}
	mutate, routes := variant(0)
	g := startGateway(t, mutate, routes...)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	versions := []string{"2025-11-25", "2025-11-25", "2026-07-28", "2026-07-28"}
	clients := make([]*mcp.ClientSession, len(versions))
	for i, v := range versions {
		clients[i] = connectEra(ctx, t, g.URL+"/mcp", v)
		defer clients[i].Close()
	}
	legacyIDs := []string{clients[0].ID(), clients[1].ID()}

	calls := make([]atomic.Int64, len(clients))
	progress := make(chan struct{}, 1)
	stop := make(chan struct{})
	var failures atomic.Int64
	var wg sync.WaitGroup
	for i, cs := range clients {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := callSimple(ctx, cs); err != nil {
					failures.Add(1)
					t.Errorf("client %d (%s): call %d: %v", i, versions[i], calls[i].Load()+1, err)
					return
				}
				calls[i].Add(1)
				select {
				case progress <- struct{}{}:
				default:
				}
			}
		})
	}
	// Each swap waits until every client has completed a call since the
	// previous one, so calls straddle every swap.
	waitCalls := func() {
		t.Helper()
		seen := make([]int64, len(calls))
		for i := range calls {
			seen[i] = calls[i].Load()
		}
		for {
			advanced := true
			for i := range calls {
				if calls[i].Load() <= seen[i] {
					advanced = false
				}
			}
			if advanced || failures.Load() > 0 {
				return
			}
			select {
			case <-progress:
			case <-ctx.Done():
				t.Fatal("clients stopped making progress")
			}
		}
	}
	for i := 1; i <= 50 && failures.Load() == 0; i++ {
		waitCalls()
		mutate, routes := variant(i)
		if err := g.Reload(ctx, reloadConfig(t, mutate, routes...)); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
	}
	waitCalls()
	close(stop)
	wg.Wait()
	for _, id := range legacyIDs {
		if _, err := g.Sessions().Get(id); err != nil {
			t.Errorf("legacy session %s did not live through the reloads: %v", id, err)
		}
	}
	var total int64
	for i := range calls {
		total += calls[i].Load()
	}
	t.Logf("%d calls across 50 reloads", total)
}

// TestReloadRemovedRoute: a reload that removes a route ends its sessions
// with reason route_removed, its path answers 404, and the other route's
// sessions are untouched.
func TestReloadRemovedRoute(t *testing.T) {
	t.Parallel()
	upURL := fixtureHTTP(t, false)
	keep, gone := httpRoute("keep", "/mcp", upURL), httpRoute("gone", "/gone", upURL)
	g := startGateway(t, nil, keep, gone)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	kept := connectEra(ctx, t, g.URL+"/mcp", "2025-11-25")
	defer kept.Close()
	doomed := connectEra(ctx, t, g.URL+"/gone", "2025-11-25")
	defer doomed.Close()
	modern := connectEra(ctx, t, g.URL+"/gone", "2026-07-28")
	defer modern.Close()
	for _, cs := range []*mcp.ClientSession{kept, doomed, modern} {
		if err := callSimple(ctx, cs); err != nil {
			t.Fatal(err)
		}
	}
	var goneSessions []*session.Session
	for _, s := range liveSessions(g, kept.ID(), doomed.ID()) {
		if s.Info().Route == "gone" {
			goneSessions = append(goneSessions, s)
		}
	}
	if len(goneSessions) != 1 {
		t.Fatalf("found %d legacy sessions on the route to remove", len(goneSessions))
	}
	if n := g.Sessions().Len(); n < 3 {
		t.Fatalf("%d sessions live, want the two legacy ones and a modern one", n)
	}

	if err := g.Reload(ctx, reloadConfig(t, nil, keep)); err != nil {
		t.Fatal(err)
	}
	for _, s := range goneSessions {
		select {
		case <-s.Done():
		case <-ctx.Done():
			t.Fatal("the removed route's session did not end")
		}
		if s.Reason() != session.ReasonRouteRemoved {
			t.Errorf("removed route's session ended with %q, want %q", s.Reason(), session.ReasonRouteRemoved)
		}
	}
	// Every session of the removed route ends, modern ones included.
	waitFor(t, "the removed route's sessions to end", func() bool { return g.Sessions().Len() == 1 })
	if r := pingAs(t, g.URL+"/gone", doomed.ID(), "2025-11-25"); r.Status != http.StatusNotFound {
		t.Errorf("the removed route's path answered %d, want 404", r.Status)
	}
	if err := callSimple(ctx, kept); err != nil {
		t.Errorf("the kept route's session failed after the reload: %v", err)
	}
	if _, err := g.Sessions().Get(kept.ID()); err != nil {
		t.Errorf("the kept route's session ended: %v", err)
	}
}

// liveSessions looks the sessions with ids up in g.
func liveSessions(g *gw, ids ...string) []*session.Session {
	var out []*session.Session
	for _, id := range ids {
		if s, err := g.Sessions().Get(id); err == nil {
			out = append(out, s)
		}
	}
	return out
}

// TestReloadLoweredCap: a reload that lowers the gateway cap below the
// live count ends no session; new sessions are refused with 503.
func TestReloadLoweredCap(t *testing.T) {
	t.Parallel()
	upURL := fixtureHTTP(t, false)
	route := httpRoute("fixture", "/mcp", upURL)
	capAt := func(n int) func(*config.Config) {
		return func(c *config.Config) { c.Sessions.Max = n; c.Sessions.WhenFull = "reject" }
	}
	g := startGateway(t, capAt(10), route)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var live []*mcp.ClientSession
	for range 3 {
		cs := connectEra(ctx, t, g.URL+"/mcp", "2025-11-25")
		defer cs.Close()
		live = append(live, cs)
	}
	if err := g.Reload(ctx, reloadConfig(t, capAt(2), route)); err != nil {
		t.Fatal(err)
	}
	if got := g.Sessions().Bounds().Global.Max; got != 2 {
		t.Fatalf("the manager's cap is %d after the reload, want 2", got)
	}
	for i, cs := range live {
		if err := callSimple(ctx, cs); err != nil {
			t.Errorf("live session %d failed after the cap was lowered: %v", i, err)
		}
	}
	if g.Sessions().Len() != 3 {
		t.Errorf("%d sessions live after lowering the cap, want 3", g.Sessions().Len())
	}
	r := initialize(t, g.URL+"/mcp")
	if r.Status != http.StatusServiceUnavailable {
		t.Errorf("a new session over the lowered cap got %d %s, want 503", r.Status, r.Body)
	}
}

// initialize sends a legacy initialize and returns the raw answer.
func initialize(t testing.TB, url string) rawResp {
	t.Helper()
	return do(t, "POST", url, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}`, nil)
}

// TestReloadRefused: a reload that changes settings a running gateway
// cannot change names each of them and changes nothing; an invalid one
// returns every problem and changes nothing.
func TestReloadRefused(t *testing.T) {
	t.Parallel()
	upURL := fixtureHTTP(t, false)
	route := httpRoute("fixture", "/mcp", upURL)
	g := startGateway(t, nil, route)
	ctx := t.Context()
	running := g.Sessions().Bounds()

	next := reloadConfig(t, func(c *config.Config) {
		c.Listeners[0].Address = "127.0.0.1:1"
		c.Store.Kind = config.StoreEmbedded
		c.Store.DataDir = t.TempDir()
		c.Sessions.IDKeys = []config.IDKey{{ID: "k1", Secret: "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0x"}}
		c.Sessions.Max = 1
	}, route, httpRoute("added", "/added", upURL))
	err := g.Reload(ctx, next)
	var rr *gateway.RestartRequired
	if !errors.As(err, &rr) {
		t.Fatalf("reload changing restart-only settings: %v, want *gateway.RestartRequired", err)
	}
	for _, want := range []string{"listeners[0]", "store.kind", "store.data_dir", "sessions.id_keys"} {
		if !slices.Contains(rr.Paths, want) {
			t.Errorf("RestartRequired.Paths = %v, missing %q", rr.Paths, want)
		}
	}
	if slices.Contains(rr.Paths, "sessions.max") {
		t.Errorf("sessions.max can change live, but is listed: %v", rr.Paths)
	}
	if r := initialize(t, g.URL+"/added"); r.Status != http.StatusNotFound {
		t.Errorf("a route of the refused reload serves: %d", r.Status)
	}
	if got := g.Sessions().Bounds(); got != running {
		t.Errorf("the refused reload changed the session bounds to %+v", got)
	}

	bad := reloadConfig(t, nil, route, config.Route{Name: "fixture", Path: "no-slash"})
	err = g.Reload(ctx, bad)
	var cerr *config.Error
	if !errors.As(err, &cerr) || len(cerr.Problems) < 2 {
		t.Fatalf("invalid reload: %v, want a *config.Error with every problem", err)
	}
	cs := connectEra(ctx, t, g.URL+"/mcp", "2025-11-25")
	defer cs.Close()
	if err := callSimple(ctx, cs); err != nil {
		t.Errorf("the running route after refused reloads: %v", err)
	}
}
