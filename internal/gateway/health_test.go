package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/metrics"
	"github.com/mcpgate/mcpgate/internal/metrics/metricstest"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/memory"
)

// testConfig is a gateway on loopback ports with an in-memory store and
// an admin listener, in front of an upstream it never needs to reach.
func testConfig(t *testing.T, mutate func(*config.Config)) *config.Config {
	t.Helper()
	up := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(up.Close)
	cfg := &config.Config{
		Listeners: []config.Listener{{Address: "127.0.0.1:0"}},
		Admin:     config.Admin{Listen: "127.0.0.1:0"},
		Store:     config.Store{Kind: config.StoreMemory},
		Routes:    []config.Route{{Path: "/mcp", Upstream: config.Upstream{HTTP: &config.HTTPUpstream{URL: up.URL}}}},
	}
	cfg.Server.ShutdownTimeout = 2 * time.Second
	if mutate != nil {
		mutate(cfg)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

type response struct {
	Status int
	Body   string
}

func get(t *testing.T, url, host string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, string(b)}
}

// TestAdminEndpoints: a running gateway serves /healthz, /readyz and
// /metrics on its admin listener, for loopback Host names only, and
// closes it on shutdown.
func TestAdminEndpoints(t *testing.T) {
	noLeaks(t)
	reg := metrics.New()
	g, err := New(testConfig(t, nil), Options{Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	if g.Metrics() != reg {
		t.Error("Metrics() is not the registry given in Options")
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	addr := g.AdminAddr().String()
	base := "http://" + addr

	tests := []struct {
		name, path, host string
		want             response
	}{
		{"alive", "/healthz", "", response{200, `{"status":"ok"}` + "\n"}},
		{"ready", "/readyz", "", response{200, `{"status":"ready","routes":{"default":"up"}}` + "\n"}},
		{"localhost by name", "/readyz", "localhost:" + port(addr), response{200, `{"status":"ready","routes":{"default":"up"}}` + "\n"}},
		{"IPv6 loopback", "/healthz", "[::1]:" + port(addr), response{200, `{"status":"ok"}` + "\n"}},
		{"foreign Host (DNS rebinding)", "/metrics", "attacker.example:" + port(addr), response{403, "host not allowed on a loopback admin listener\n"}},
		{"unknown path", "/debug/pprof/", "", response{404, "404 page not found\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, get(t, base+tt.path, tt.host)); diff != "" {
				t.Errorf("GET %s (-want +got):\n%s", tt.path, diff)
			}
		})
	}
	resp, err := http.Post(base+"/readyz", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /readyz = %d; want 405", resp.StatusCode)
	}

	fams, err := metricstest.Scrape(t.Context(), base+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := fams.Value("mcpgate_store_up", "backend", "memory"); !ok || v != 1 {
		t.Errorf("mcpgate_store_up{backend=memory} = %v, %v; want 1", v, ok)
	}
	for _, name := range []string{"go_goroutines", "process_start_time_seconds", "mcpgate_store_ping_seconds", "mcpgate_store_errors_total", "mcpgate_store_unavailable_total"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("%s missing from /metrics", name)
		}
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		_ = c.Close()
		t.Error("admin listener still accepting after shutdown")
	}
}

// noLeaks checks, after every other cleanup, that t left no goroutine.
func noLeaks(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	// stdio's spawners live as long as the process, on purpose.
	spawners := goleak.IgnoreTopFunction("github.com/mcpgate/mcpgate/internal/upstream/stdio.spawnLoop")
	t.Cleanup(func() { goleak.VerifyNone(t, ignore, spawners) })
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// TestAdminOff: without admin.listen nothing more listens.
func TestAdminOff(t *testing.T) {
	noLeaks(t)
	g, err := New(testConfig(t, func(c *config.Config) { c.Admin.Listen = "" }), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	if a := g.AdminAddr(); a != nil {
		t.Errorf("AdminAddr() = %v; want nil", a)
	}
	if g.Metrics() == nil {
		t.Error("no registry: metrics are kept even without an admin listener")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestAdminStartFailures: an admin address in use fails Run at once, and
// a store that cannot be opened fails Run with the admin listener closed
// again; neither leaves anything running.
func TestAdminStartFailures(t *testing.T) {
	noLeaks(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	g, err := New(testConfig(t, func(c *config.Config) { c.Admin.Listen = taken.Addr().String() }), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "admin: listen "+taken.Addr().String()) {
		t.Errorf("Run with the admin address in use = %v", err)
	}

	// A free port, then a store that cannot open (its directory is a file).
	free := taken.Addr().String()
	_ = taken.Close()
	notDir := t.TempDir() + "/file"
	if err := writeFile(notDir); err != nil {
		t.Fatal(err)
	}
	g, err = New(testConfig(t, func(c *config.Config) {
		c.Admin.Listen = free
		c.Store = config.Store{Kind: config.StoreEmbedded, DataDir: notDir}
	}), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Run(t.Context()); err == nil {
		t.Fatal("Run with a store that cannot open succeeded")
	}
	// Not a dial of the port: once freed, another process may take it.
	g.mu.Lock()
	srv, ln := g.health.admin, g.health.adminLn
	g.mu.Unlock()
	if srv != nil {
		t.Error("admin server left running after a failed start")
	}
	if ln != nil {
		if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("admin listener left open after a failed start (Accept: %v)", err)
		}
	}
}

// TestReadiness: what /readyz reports for each state of the listeners and
// the store, under each store.on_unavailable.
func TestReadiness(t *testing.T) {
	tests := []struct {
		name                       string
		serving, storeUp, failOpen bool
		want                       readiness
	}{
		{"serving, store up", true, true, false, readiness{Status: "ready"}},
		{"serving, store down, fail-closed", true, false, false, readiness{Status: "not_ready", NotReady: []string{"store"}}},
		{"serving, store down, fail-open", true, false, true, readiness{Status: "ready", Degraded: []string{"store"}}},
		{"starting or draining", false, true, false, readiness{Status: "not_ready", NotReady: []string{"listeners"}}},
		{"nothing", false, false, false, readiness{Status: "not_ready", NotReady: []string{"listeners", "store"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mon, err := metrics.NewStoreMonitor(nil, metrics.StoreMonitorOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if tt.storeUp {
				type notPinger struct{ store.Store }
				mon.Run(t.Context(), notPinger{memory.New()}) // up at once
			}
			cfg := &config.Config{Store: config.Store{OnUnavailable: "fail-closed"}}
			if tt.failOpen {
				cfg.Store.OnUnavailable = "fail-open"
			}
			g := &Gateway{cfg: cfg}
			g.health.storeMon = mon
			g.health.serving.Store(tt.serving)
			got := g.readiness()
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("readiness (-want +got):\n%s", diff)
			}
			b, _ := json.Marshal(got)
			var back readiness
			if err := json.Unmarshal(b, &back); err != nil || !cmp.Equal(got, back) {
				t.Errorf("body %s does not round-trip: %v", b, err)
			}
		})
	}
}

func writeFile(path string) error {
	return os.WriteFile(path, []byte("not a directory"), 0o600)
}
