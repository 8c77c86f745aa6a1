package e2e

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/gateway"
	"github.com/mcpgate/mcpgate/internal/testutil/conformancefixture"
	"github.com/mcpgate/mcpgate/internal/testutil/testenv"
)

// fixtureBin is the conformance fixture built as a stdio server, and
// mcpgateBin the gateway's own binary, for the tests that run it as a
// process. TestMain builds both, once for all the tests.
var fixtureBin, mcpgateBin string

// shareServerBin is the shared-upstream tests' stdio server
// (testdata/shareserver).
var shareServerBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mcpgate-e2e")
	if err != nil {
		panic(err)
	}
	fixtureBin = filepath.Join(dir, "fixture")
	mcpgateBin = filepath.Join(dir, "mcpgate")
	stdioServerBin = filepath.Join(dir, "server")
	shareServerBin = filepath.Join(dir, "shareserver")
	// One go build for all: their packages compile in parallel.
	build := exec.Command("go", "build", "-o", dir+string(filepath.Separator),
		"github.com/mcpgate/mcpgate/internal/testutil/conformancefixture/cmd/fixture",
		"github.com/mcpgate/mcpgate/cmd/mcpgate",
		"../../internal/upstream/stdio/testdata/server",
		"./testdata/shareserver")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the fixture, mcpgate and the stdio test servers:", err)
		os.Exit(1)
	}
	raiseParallel()
	code := m.Run()
	_ = os.RemoveAll(dir)
	testenv.Report()
	os.Exit(code)
}

// e2eParallel is how many tests of the package run at once unless
// -test.parallel says otherwise.
const e2eParallel = 6

// raiseParallel sets -test.parallel to e2eParallel when the command line
// did not set it. Its default, GOMAXPROCS, suits tests that compute; these
// mostly wait — for idle timeouts, Redis restarts, child processes and the
// Node tools — so on a 2-core machine two waiting tests would hold the
// package while the CPU idles.
func raiseParallel() {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		_ = flag.Set("test.parallel", strconv.Itoa(max(e2eParallel, runtime.GOMAXPROCS(0))))
	}
}

// gw is a running gateway for one test.
type gw struct {
	*gateway.Gateway
	URL string // http://127.0.0.1:port
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startGateway runs mcpgate on a loopback port with the given routes.
func startGateway(t testing.TB, mutate func(*config.Config), routes ...config.Route) *gw {
	t.Helper()
	return startGatewayLogging(t, testLogger(t), mutate, routes...)
}

// startGatewayLogging is startGateway with its log going to log.
func startGatewayLogging(t testing.TB, log *slog.Logger, mutate func(*config.Config), routes ...config.Route) *gw {
	t.Helper()
	cfg := &config.Config{Listeners: []config.Listener{{Address: "127.0.0.1:0"}}, Routes: routes}
	cfg.Server.ShutdownTimeout = 5 * time.Second
	cfg.Store.Kind = config.StoreMemory // tests that need persistence set a data dir
	if mutate != nil {
		mutate(cfg)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(cfg, gateway.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	runGateway(t, g)
	return &gw{Gateway: g, URL: "http://" + g.Addrs()[0].String()}
}

// runGateway runs g until the test ends or stop is called (once), and
// fails the test when Run fails or does not return.
func runGateway(t testing.TB, g *gateway.Gateway) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("gateway Run: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("gateway did not shut down")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func httpRoute(name, path, url string) config.Route {
	return config.Route{Name: name, Path: path, Upstream: config.Upstream{HTTP: &config.HTTPUpstream{URL: url}}}
}

func stdioRoute(name, path, command string, args ...string) config.Route {
	return config.Route{Name: name, Path: path, Upstream: config.Upstream{Stdio: &config.StdioUpstream{Command: command, Args: args, ShutdownGrace: 2 * time.Second}}}
}

// fixtureHTTP serves the conformance fixture over Streamable HTTP: with
// sessions (legacy) or stateless (modern, 2026-07-28).
func fixtureHTTP(t testing.TB, stateless bool) string {
	t.Helper()
	return fixtureHTTPWith(t, stateless, nil)
}

// watchEvery is how often the watched resource of the fixtures changes in
// tests that wait for a notifications/resources/updated: they wait for a
// change, not for the fixture's default 3 s tick.
const watchEvery = 100 * time.Millisecond

// watchFast tunes a fixture to change its watched resource every watchEvery.
var watchFast = &conformancefixture.Options{WatchedInterval: watchEvery}

// watchFastArg is watchFast as a flag of the fixture process (fixtureBin).
var watchFastArg = "-watch-interval=" + watchEvery.String()

// fixtureHTTPWith is fixtureHTTP tuned by opts (nil: the defaults).
func fixtureHTTPWith(t testing.TB, stateless bool, opts *conformancefixture.Options) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv := httptest.NewServer(conformancefixture.HandlerWithOptions(ctx, stateless, opts))
	t.Cleanup(func() { cancel(); srv.Close() })
	return srv.URL + "/"
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
