package e2e

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/auth"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/metrics/metricstest"
	"github.com/mcpgate/mcpgate/internal/testutil/conformancefixture"
)

// bearer adds an Authorization header to every request of a go-sdk
// client.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// TestMetricsConversation: a scripted go-sdk conversation through a real
// gateway, then /metrics scraped and parsed as Prometheus does: the
// sessions created and ended (with their reason), a cap rejection, a
// hijack, requests by method and outcome, their durations; no label
// value names a principal or a session.
func TestMetricsConversation(t *testing.T) {
	t.Parallel()
	alice, _ := auth.NewKey()
	bob, _ := auth.NewKey()
	g := startAuthGateway(t, func(c *config.Config, _ string) {
		c.Admin.Listen = "127.0.0.1:0"
		c.Auth = &config.Auth{APIKeys: []config.APIKey{{KeySHA256: auth.HashKey(alice), Principal: "alice"}, {KeySHA256: auth.HashKey(bob), Principal: "bob"}}}
	}, config.Route{Name: "fixture", Path: "/mcp", MaxSessions: 1,
		Upstream: config.Upstream{HTTP: &config.HTTPUpstream{URL: fixtureHTTP(t, false)}}})
	url := g.URL + "/mcp"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	connect := func(token string) (*mcp.ClientSession, error) {
		c := newSDKClient()
		return c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, MaxRetries: -1,
			HTTPClient: &http.Client{Transport: bearer{token, http.DefaultTransport}}}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	}
	// alice: initialize, tools/list, two calls that succeed, one the
	// server refuses, a ping, DELETE.
	cs, err := connect(alice)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	if _, err := cs.ListTools(ctx, nil); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "no_such_tool"}); err == nil {
		t.Fatal("an unknown tool was called")
	}
	if err := cs.Ping(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := cs.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the session's end", func() bool { return g.Sessions().Len() == 0 })

	// alice's second session fills the route (max_sessions: 1); bob
	// presents its id (a hijack) and then is refused a session of his own
	// (the cap).
	hdr := legacySessionAs(t, url, alice)
	wantNotFound(t, "bob's POST", do(t, "POST", url, `{"jsonrpc":"2.0","id":"p","method":"ping"}`, with(hdr, "Authorization", "Bearer "+bob)))
	if _, err := connect(bob); err == nil {
		t.Fatal("bob got a session past the route's cap")
	}

	fams, err := metricstest.Scrape(ctx, "http://"+g.AdminAddr().String()+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		name   string
		labels []string
		min    float64
		max    float64
	}{
		{"mcpgate_sessions_created_total", []string{"route", "fixture", "era", "legacy"}, 2, 2},
		{"mcpgate_sessions_active", []string{"route", "fixture", "era", "legacy"}, 1, 1},
		{"mcpgate_sessions_ended_total", []string{"route", "fixture", "reason", "deleted"}, 1, 1},
		{"mcpgate_session_rejections_total", []string{"route", "fixture", "cause", "cap"}, 1, 5},
		{"mcpgate_session_rejections_total", []string{"route", "fixture", "cause", "hijack"}, 1, 1},
		{"mcpgate_requests_total", []string{"route", "fixture", "method", "initialize", "outcome", "ok"}, 2, 2},
		{"mcpgate_requests_total", []string{"route", "fixture", "method", "tools/list", "outcome", "ok"}, 1, 1},
		{"mcpgate_requests_total", []string{"route", "fixture", "method", "tools/call", "outcome", "ok"}, 2, 2},
		{"mcpgate_requests_total", []string{"route", "fixture", "method", "tools/call", "outcome", "error"}, 1, 1},
		{"mcpgate_requests_total", []string{"route", "fixture", "method", "ping", "outcome", "ok"}, 1, 1},
		{"mcpgate_request_duration_seconds", []string{"route", "fixture", "method", "tools/call"}, 3, 3},
	} {
		v, ok := fams.Value(w.name, w.labels...)
		if !ok || v < w.min || v > w.max {
			t.Errorf("%s%v = %v (present %v); want %v..%v", w.name, w.labels, v, ok, w.min, w.max)
		}
	}
	var sum float64
	for _, m := range fams["mcpgate_request_duration_seconds"].GetMetric() {
		sum += m.GetHistogram().GetSampleSum()
	}
	if sum <= 0 {
		t.Error("request durations are not recorded")
	}
	for name, mf := range fams {
		if !strings.HasPrefix(name, "mcpgate_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if v := l.GetValue(); strings.Contains(v, "alice") || strings.Contains(v, "bob") || v == hdr["Mcp-Session-Id"] {
					t.Errorf("%s has the label %s=%q", name, l.GetName(), v)
				}
			}
		}
	}
}

// stoppable is an HTTP upstream the test can stop and start again on
// the same address.
type stoppable struct {
	t    *testing.T
	addr string
	h    http.Handler
	srv  *httptest.Server
}

func newStoppable(t *testing.T, h http.Handler) *stoppable {
	r := &stoppable{t: t, h: h}
	r.start()
	r.addr = r.srv.Listener.Addr().String()
	t.Cleanup(func() { r.stop() })
	return r
}

func (r *stoppable) start() {
	r.t.Helper()
	addr := r.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		r.t.Fatal(err)
	}
	r.srv = httptest.NewUnstartedServer(r.h)
	r.srv.Listener = ln
	r.srv.Start()
}

func (r *stoppable) stop() {
	if r.srv != nil {
		r.srv.CloseClientConnections()
		r.srv.Close()
		r.srv = nil
	}
}

type readyz struct {
	Status string            `json:"status"`
	Routes map[string]string `json:"routes"`
	code   int
}

func getReadyz(t *testing.T, admin string) readyz {
	t.Helper()
	resp, err := http.Get(admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r readyz
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	r.code = resp.StatusCode
	return r
}

// TestUpstreamHealthTransitions: an HTTP upstream that goes down and
// comes back, and a stdio command that starts failing and recovers, seen
// in mcpgate_upstream_up and /readyz: ready while one route is up, 503
// when none is; with admin.ready_requires: all, 503 while any is down.
func TestUpstreamHealthTransitions(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	web := newStoppable(t, conformancefixture.HandlerWithOptions(ctx, false, nil))
	broken := filepath.Join(t.TempDir(), "broken")
	health := &config.Health{Interval: 100 * time.Millisecond, Timeout: 2 * time.Second, FailureThreshold: 2, SuccessThreshold: 1}
	files := stdioRoute("files", "/files/mcp", "/bin/sh", "-c", `if [ -e "$1" ]; then exit 3; fi; exec "$2"`, "sh", broken, fixtureBin)
	files.Health = health
	webRoute := httpRoute("web", "/mcp", "http://"+web.addr+"/")
	webRoute.Health = health
	for _, requires := range []string{"any", "all"} {
		t.Run(requires, func(t *testing.T) {
			g := startGateway(t, func(c *config.Config) {
				c.Admin.Listen = "127.0.0.1:0"
				c.Admin.ReadyRequires = requires
			}, webRoute, files)
			admin := "http://" + g.AdminAddr().String()
			upIs := func(route string, want float64) func() bool {
				return func() bool {
					fams, err := metricstest.Scrape(ctx, admin+"/metrics")
					if err != nil {
						t.Fatal(err)
					}
					v, ok := fams.Value("mcpgate_upstream_up", "route", route)
					n, _ := fams.Value("mcpgate_upstream_check_duration_seconds", "route", route)
					return ok && v == want && n > 0
				}
			}
			waitFor(t, "both routes checked and up", func() bool { return upIs("web", 1)() && upIs("files", 1)() })
			if r := getReadyz(t, admin); r.code != 200 || r.Status != "ready" || r.Routes["web"] != "up" || r.Routes["files"] != "up" {
				t.Fatalf("/readyz with both up: %+v", r)
			}

			web.stop()
			waitFor(t, "web down", upIs("web", 0))
			r := getReadyz(t, admin)
			if r.Routes["web"] != "down" || r.Routes["files"] != "up" {
				t.Fatalf("/readyz with web down: %+v", r)
			}
			if wantCode := map[string]int{"any": 200, "all": 503}[requires]; r.code != wantCode {
				t.Errorf("/readyz with one of two routes down, ready_requires %s: %d, want %d", requires, r.code, wantCode)
			}

			if err := os.WriteFile(broken, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "files down", upIs("files", 0))
			if r := getReadyz(t, admin); r.code != 503 || r.Status != "not_ready" || r.Routes["files"] != "down" {
				t.Errorf("/readyz with every route down: %+v", r)
			}

			web.start()
			if err := os.Remove(broken); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "both back up", func() bool { return upIs("web", 1)() && upIs("files", 1)() })
			if r := getReadyz(t, admin); r.code != 200 || r.Status != "ready" {
				t.Errorf("/readyz after recovery: %+v", r)
			}
		})
	}
}

// TestUpstreamHealthReload: a reload that keeps a route's upstream and
// health block keeps its state (a down route stays down, no fresh "up");
// one that changes the health block starts its checks afresh; one that
// drops it removes the route's mcpgate_upstream_up series.
func TestUpstreamHealthReload(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	web := newStoppable(t, conformancefixture.HandlerWithOptions(ctx, false, nil))
	web.stop() // down from the start
	route := httpRoute("web", "/mcp", "http://"+web.addr+"/")
	route.Health = &config.Health{Interval: 100 * time.Millisecond, Timeout: time.Second, FailureThreshold: 1, SuccessThreshold: 1}
	build := func(mutate func(*config.Route)) *config.Config {
		cfg := &config.Config{Listeners: []config.Listener{{Address: "127.0.0.1:0"}}, Routes: []config.Route{route}}
		cfg.Server.ShutdownTimeout = 5 * time.Second
		cfg.Store.Kind = config.StoreMemory
		cfg.Admin.Listen = "127.0.0.1:0"
		if mutate != nil {
			r := cfg.Routes[0]
			h := *r.Health
			r.Health = &h
			mutate(&r)
			cfg.Routes[0] = r
		}
		cfg.SetDefaults()
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	g := startGateway(t, func(c *config.Config) { *c = *build(nil) })
	admin := "http://" + g.AdminAddr().String()
	up := func() (float64, bool) {
		fams, err := metricstest.Scrape(ctx, admin+"/metrics")
		if err != nil {
			t.Fatal(err)
		}
		return fams.Value("mcpgate_upstream_up", "route", "web")
	}
	waitFor(t, "web down", func() bool { v, ok := up(); return ok && v == 0 })

	// The same configuration again.
	same := build(nil)
	if err := g.Reload(ctx, same); err != nil {
		t.Fatal(err)
	}
	if v, _ := up(); v != 0 || g.RouteHealth()["web"] != "down" {
		t.Fatalf("after a reload that changed nothing: up %v, %v", v, g.RouteHealth())
	}
	// A new health block: checked afresh, up until the checks say
	// otherwise, then down again.
	changed := build(func(r *config.Route) { r.Health.Timeout = 2 * time.Second })
	if err := g.Reload(ctx, changed); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "web down after the new health block", func() bool { v, ok := up(); return ok && v == 0 })
	// No health block: no series, and the route counts as up.
	off := build(func(r *config.Route) { r.Health = nil })
	if err := g.Reload(ctx, off); err != nil {
		t.Fatal(err)
	}
	if _, ok := up(); ok || g.RouteHealth()["web"] != "up" {
		t.Errorf("health off: series present %v, state %v", ok, g.RouteHealth())
	}
}
