package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/metrics/metricstest"
	"github.com/mcpgate/mcpgate/internal/testutil/testenv"
)

// redisServer is a redis-server child process of the test, on a port of
// its own, that the test can kill and start again on the same port.
type redisServer struct {
	t    *testing.T
	bin  string
	addr string
	dir  string
	cmd  *exec.Cmd
	out  bytes.Buffer
}

// startRedisServer starts redis-server without persistence. Without the
// binary the test is skipped, except under CI=true, where it fails.
func startRedisServer(t *testing.T) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		testenv.Missing(t, "redis-server", "redis-server not found in PATH; install Redis to run this test")
	}
	r := &redisServer{t: t, bin: bin, addr: freeAddr(t), dir: t.TempDir()}
	r.start()
	t.Cleanup(r.kill)
	return r
}

func (r *redisServer) start() {
	r.t.Helper()
	_, port, _ := net.SplitHostPort(r.addr)
	r.out.Reset()
	r.cmd = exec.Command(r.bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", r.dir)
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !redisAnswers(r.addr) {
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server on %s did not answer PING within 10s:\n%s", r.addr, r.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill is SIGKILL: Redis gone at once, as in a crash.
func (r *redisServer) kill() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

func redisAnswers(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && line == "+PONG\r\n"
}

// logLines is a gateway's JSON log, kept for inspection.
type logLines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if testing.Verbose() {
		os.Stderr.Write(p)
	}
	return l.buf.Write(p)
}

// records returns the records whose msg is msg.
func (l *logLines) records(msg string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	dec := json.NewDecoder(bytes.NewReader(l.buf.Bytes()))
	for dec.More() {
		var rec map[string]any
		if dec.Decode(&rec) != nil {
			break
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// startAdminGateway is startGateway with an admin listener on a free
// loopback port and its log kept.
func startAdminGateway(t *testing.T, mutate func(*config.Config), routes ...config.Route) (*gw, string, *logLines) {
	t.Helper()
	logs := new(logLines)
	g := startGatewayLogging(t, slog.New(slog.NewJSONHandler(logs, nil)), func(c *config.Config) {
		c.Admin.Listen = "127.0.0.1:0"
		mutate(c)
	}, routes...)
	return g, "http://" + g.AdminAddr().String(), logs
}

// healthReading is what the admin endpoints say at one moment.
type healthReading struct {
	StoreUp, Outages, PingErrors, GetErrors float64
	Ready                                   int
	Body                                    string
}

func readHealth(t *testing.T, admin string) healthReading {
	t.Helper()
	fams, err := metricstest.Scrape(t.Context(), admin+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	v := func(name string, labels ...string) float64 {
		x, ok := fams.Value(name, append([]string{"backend", "redis"}, labels...)...)
		if !ok {
			t.Fatalf("%s%v missing from /metrics", name, labels)
		}
		return x
	}
	h := healthReading{
		StoreUp: v("mcpgate_store_up"), Outages: v("mcpgate_store_unavailable_total"),
		PingErrors: v("mcpgate_store_errors_total", "op", "ping"), GetErrors: v("mcpgate_store_errors_total", "op", "get"),
	}
	resp, err := http.Get(admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	h.Ready, h.Body = resp.StatusCode, strings.TrimSpace(string(b))
	return h
}

// within polls until cond holds for what the admin endpoints say, and
// fails with the last reading after limit.
func within(t *testing.T, limit time.Duration, what, admin string, cond func(healthReading) bool) healthReading {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		h := readHealth(t, admin)
		if cond(h) {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last: %+v", what, limit, h)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestStoreHealthRedisRestart: with a real Redis that is killed and
// started again on the same port, the admin endpoints follow: store up,
// then down within a bound (metrics, /readyz 503 under fail-closed, 200
// and "degraded" under fail-open, one store_unavailable line, failed
// writes counted), then up again by itself (one store_recovered line
// with the outage's length). Nothing crashes; nothing is reopened.
func TestStoreHealthRedisRestart(t *testing.T) {
	t.Parallel()
	rs := startRedisServer(t)
	upstream := fixtureHTTP(t, false)
	secret := testenv.IDKeySecret() // shared by the two gateways
	withRedis := func(onUnavailable string) func(*config.Config) {
		return func(c *config.Config) {
			c.Store = config.Store{Kind: config.StoreRedis, OnUnavailable: onUnavailable, Redis: &config.RedisStore{Addr: rs.addr}}
			c.Sessions.IDKeys = []config.IDKey{{ID: "k1", Secret: config.Secret(secret)}}
		}
	}
	closed, closedAdmin, closedLog := startAdminGateway(t, withRedis("fail-closed"), httpRoute("fixture", "/mcp", upstream))
	open, openAdmin, _ := startAdminGateway(t, withRedis("fail-open"), httpRoute("fixture", "/mcp", upstream))

	// The first check runs as the store opens; a moment later both are ready.
	up := func(h healthReading) bool { return h.StoreUp == 1 && h.Ready == http.StatusOK }
	if h := within(t, 5*time.Second, "store up at start", closedAdmin, up); h.Body != `{"status":"ready","routes":{"fixture":"up"}}` || h.Outages != 0 {
		t.Errorf("at start: %+v", h)
	}
	within(t, 5*time.Second, "fail-open gateway ready at start", openAdmin, up)
	legacySession(t, closed.URL+"/mcp")
	// A session the fail-closed gateway does not hold: it must ask Redis.
	elsewhere := legacySession(t, open.URL+"/mcp")

	rs.kill()
	killed := time.Now()
	// Checks run every second and fail at once on a refused connection.
	const bound = 5 * time.Second
	h := within(t, bound, "store down after the kill", closedAdmin, func(h healthReading) bool {
		return h.StoreUp == 0 && h.Ready == http.StatusServiceUnavailable
	})
	t.Logf("fail-closed gateway saw the outage after %v", time.Since(killed).Round(time.Millisecond))
	if h.Body != `{"status":"not_ready","not_ready":["store"],"routes":{"fixture":"up"}}` || h.Outages != 1 || h.PingErrors < 1 {
		t.Errorf("store down, fail-closed: %+v", h)
	}
	ho := within(t, bound, "fail-open gateway sees the outage", openAdmin, func(h healthReading) bool { return h.StoreUp == 0 })
	if ho.Ready != http.StatusOK || ho.Body != `{"status":"ready","degraded":["store"],"routes":{"fixture":"up"}}` {
		t.Errorf("store down, fail-open: /readyz %d %s; want 200, degraded store", ho.Ready, ho.Body)
	}
	// What needs the store is refused with 503 (a new session; a session
	// held elsewhere, whose failed look-up is counted), never 404.
	if r := do(t, "POST", closed.URL+"/mcp", initBody, nil); r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
		t.Errorf("initialize with the store down: %d %s", r.Status, r.Body)
	}
	ping := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	hdr := map[string]string{"Mcp-Session-Id": elsewhere, "MCP-Protocol-Version": "2025-06-18"}
	if r := do(t, "POST", closed.URL+"/mcp", ping, hdr); r.Status != http.StatusServiceUnavailable {
		t.Errorf("look-up with the store down: %d %s", r.Status, r.Body)
	}
	if got := readHealth(t, closedAdmin); got.GetErrors < 1 {
		t.Errorf("failed look-up not counted: %+v", got)
	}
	if n := len(closedLog.records("store_unavailable")); n != 1 {
		t.Errorf("%d store_unavailable records; want 1", n)
	}

	rs.start()
	restarted := time.Now()
	h = within(t, 10*time.Second, "store up after the restart", closedAdmin, up)
	t.Logf("recovered %v after the restart", time.Since(restarted).Round(time.Millisecond))
	if h.Body != `{"status":"ready","routes":{"fixture":"up"}}` || h.Outages != 1 {
		t.Errorf("after recovery: %+v", h)
	}
	within(t, 10*time.Second, "fail-open gateway no longer degraded", openAdmin, func(h healthReading) bool {
		return h.StoreUp == 1 && h.Body == `{"status":"ready","routes":{"fixture":"up"}}`
	})
	recs := closedLog.records("store_recovered")
	if len(recs) != 1 {
		t.Fatalf("%d store_recovered records; want 1", len(recs))
	}
	outage, _ := recs[0]["outage"].(float64)
	if d := time.Duration(outage); d <= 0 || d > time.Since(killed) {
		t.Errorf("store_recovered outage = %v; want within (0, %v]", d, time.Since(killed))
	}
	if recs[0]["backend"] != "redis" {
		t.Errorf("store_recovered backend = %v", recs[0]["backend"])
	}
	// Service is back without a restart of the gateway.
	legacySession(t, closed.URL+"/mcp")
	if n := len(closedLog.records("store_unavailable")); n != 1 {
		t.Errorf("%d store_unavailable records after recovery; want 1", n)
	}
}
