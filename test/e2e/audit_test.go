package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/auth"
	"github.com/mcpgate/mcpgate/internal/config"
)

var update = flag.Bool("update", false, "rewrite golden files")

// loginServer is a go-sdk server with one tool that takes a password and
// answers with a line naming the user.
func loginServer(t *testing.T) string {
	t.Helper()
	s := mcp.NewServer(&mcp.Implementation{Name: "login-server", Version: "1.0.0"}, nil)
	type in struct {
		User     string `json:"user"`
		Password string `json:"password"`
	}
	mcp.AddTool(s, &mcp.Tool{Name: "login", Description: "Logs a user in."},
		func(_ context.Context, _ *mcp.CallToolRequest, a in) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "welcome " + a.User + ", your session token is s3cr3t-session"}}}, nil, nil
		})
	srv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestAuditTrailGolden runs a scripted conversation through a real
// gateway with a go-sdk client — initialize, tools/list, a call with a
// secret in its arguments, a request without credentials, another
// principal presenting the session's id, DELETE — and compares the trail
// with a golden file (times, ids, hashes and latencies normalised). The
// trail verifies, and no secret is in it.
func TestAuditTrailGolden(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "audit", "audit.jsonl")
	alice, _ := auth.NewKey()
	bob, _ := auth.NewKey()
	g := startAuthGateway(t, func(c *config.Config, _ string) {
		c.Auth = &config.Auth{APIKeys: []config.APIKey{{KeySHA256: auth.HashKey(alice), Principal: "alice", Tenant: "acme"}, {KeySHA256: auth.HashKey(bob), Principal: "bob"}}}
		c.Audit = &config.Audit{
			Payloads: true,
			Redact: config.AuditRedact{
				Paths:    []string{"params.arguments.password"},
				Patterns: []string{`s3cr3t-[a-z]+`},
			},
			Sinks:    []config.AuditSink{{File: &config.AuditFileSink{Path: path}}},
			SpoolDir: filepath.Join(dir, "spool"),
		}
	}, httpRoute("login", "/mcp", loginServer(t)))
	url := g.URL + "/mcp"

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bc, _ := newBearerClient(alice)
	sid := &sessionIDTap{next: bc}
	hc := &http.Client{Transport: sid}
	c := mcp.NewClient(&mcp.Implementation{Name: "audit-client", Version: "1.0.0"}, nil)
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: hc, MaxRetries: -1, DisableStandaloneSSE: true}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.ListTools(ctx, nil); err != nil {
		t.Fatal(err)
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "login", Arguments: map[string]any{"user": "alice", "password": "hunter2"}})
	if err != nil || res.IsError {
		t.Fatalf("call: %v %+v", err, res)
	}
	ping := `{"jsonrpc":"2.0","id":"p","method":"ping"}`
	if r := do(t, "POST", url, ping, map[string]string{"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}); r.Status != http.StatusUnauthorized {
		t.Fatalf("without a key: %d", r.Status)
	}
	hdr := map[string]string{"Accept": "application/json, text/event-stream", "Content-Type": "application/json", "Mcp-Session-Id": sid.id.Load().(string),
		"Mcp-Protocol-Version": "2025-11-25", "Authorization": "Bearer " + bob}
	wantNotFound(t, "bob with alice's session", do(t, "POST", url, ping, hdr))
	if err := cs.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the session to end", func() bool { return g.Sessions().Len() == 0 })
	g.stop()

	sum, err := audit.Verify([]string{path})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{alice, bob, "hunter2", "s3cr3t-session", sid.id.Load().(string)} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("the trail holds a secret: %q", secret)
		}
	}
	got := normalise(t, raw)
	golden := filepath.Join("testdata", "audit_trail.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(string(want), got); d != "" {
		t.Errorf("trail (-want +got), %d records:\n%s", sum.Records, d)
	}
}

// sessionIDTap keeps the session id the gateway answers with.
type sessionIDTap struct {
	next http.RoundTripper
	id   atomic.Value
}

func (s *sessionIDTap) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := s.next.RoundTrip(r)
	if err == nil {
		if id := resp.Header.Get("Mcp-Session-Id"); id != "" {
			s.id.Store(id)
		}
	}
	return resp, err
}

// normalise rewrites each record with what differs between runs
// replaced: times, ids, hashes, fingerprints of random session ids,
// latencies, client ports, the id of the go-sdk client's requests.
func normalise(t *testing.T, raw []byte) string {
	t.Helper()
	var b strings.Builder
	for _, line := range bytes.Split(bytes.TrimSuffix(raw, []byte("\n")), []byte("\n")) {
		var m map[string]any
		d := json.NewDecoder(bytes.NewReader(line))
		d.UseNumber()
		if err := d.Decode(&m); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		for _, k := range []string{"time", "id", "hash", "prev", "session", "latency_ms", "remote_addr"} {
			if v, ok := m[k]; ok && v != "" {
				m[k] = "<" + k + ">"
			}
		}
		e := json.NewEncoder(&b)
		e.SetEscapeHTML(false)
		if err := e.Encode(m); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

// TestAuditKillNine: a gateway killed with SIGKILL leaves a trail that
// verifies (every record it wrote is whole), and the gateway started again
// on the same files continues the chain from the last record on disk.
func TestAuditKillNine(t *testing.T) {
	t.Parallel()
	addr, dir := freeAddr(t), t.TempDir()
	path := filepath.Join(dir, "audit", "audit.jsonl")
	cfgPath := filepath.Join(dir, "mcpgate.yaml")
	cfg := "listeners: [{address: \"" + addr + "\"}]\n" +
		"store: {data_dir: \"" + filepath.Join(dir, "data") + "\"}\n" +
		"routes:\n  - path: /mcp\n    upstream: {http: {url: \"" + fixtureHTTP(t, false) + "\"}}\n" +
		"audit:\n  payloads: true\n  fsync: never\n  sinks: [{file: {path: \"" + path + "\", max_size: 64KiB}}]\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	calls := func(n int) {
		cs, err := newSDKClient().Connect(ctx, &mcp.StreamableClientTransport{Endpoint: "http://" + addr + "/mcp", MaxRetries: -1, DisableStandaloneSSE: true}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
		if err != nil {
			t.Fatal(err)
		}
		defer cs.Close()
		for range n {
			if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	files := func() []string {
		fs, _ := filepath.Glob(filepath.Join(dir, "audit", "audit*.jsonl"))
		return fs
	}
	records := func() int {
		n := 0
		for _, f := range files() {
			b, _ := os.ReadFile(f)
			n += bytes.Count(b, []byte("\n"))
		}
		return n
	}
	p := startProcess(t, mcpgateBin, "--config", cfgPath)
	calls(100)
	// Delivery is asynchronous: wait for the records of the calls to be
	// written (2 per call, and the session's), then kill.
	waitFor(t, "the records to reach the file", func() bool { return records() >= 200 })
	p.kill()
	before, err := audit.Verify(files())
	if err != nil {
		t.Fatalf("after kill -9: %v", err)
	}
	p = startProcess(t, mcpgateBin, "--config", cfgPath)
	calls(10)
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait()
	after, err := audit.Verify(files())
	if err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	if after.First != 1 || after.Records < before.Records+20 || len(files()) < 2 {
		t.Fatalf("before %+v, after %+v, files %v", before, after, files())
	}
	t.Logf("records on disk at kill -9: %d; after the restart: %d in %d files", before.Records, after.Records, len(files()))
}

// TestAuditCollectorDownThenUp: the gateway's http sink faces a collector
// that refuses every batch while clients work, then recovers: it gets
// every record, in order, the same as the file sink beside it.
func TestAuditCollectorDownThenUp(t *testing.T) {
	t.Parallel()
	var (
		mu   sync.Mutex
		got  []string
		down atomic.Bool
		hit  = make(chan struct{}, 1)
	)
	down.Store(true)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if down.Load() {
			select {
			case hit <- struct{}{}:
			default:
			}
			http.Error(w, "collector down", http.StatusServiceUnavailable)
			return
		}
		mu.Lock()
		got = append(got, strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")...)
		mu.Unlock()
	}))
	defer collector.Close()
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	g := startAuthGateway(t, func(c *config.Config, _ string) {
		c.Audit = &config.Audit{
			Payloads: true,
			Buffer:   50, // most records spool while the collector is down
			Sinks: []config.AuditSink{
				{File: &config.AuditFileSink{Path: path}},
				{HTTP: &config.AuditHTTPSink{URL: collector.URL, Batch: 20, Flush: 20 * time.Millisecond}},
			},
			SpoolDir: filepath.Join(dir, "spool"),
		}
	}, httpRoute("fixture", "/mcp", fixtureHTTP(t, false)))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cs, err := newSDKClient().Connect(ctx, &mcp.StreamableClientTransport{Endpoint: g.URL + "/mcp", MaxRetries: -1, DisableStandaloneSSE: true}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatal(err)
	}
	<-hit // the collector has refused a batch
	for range 150 {
		if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text"}); err != nil {
			t.Fatal(err)
		}
	}
	down.Store(false)
	_ = cs.Close()
	g.stop()
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := strings.Split(strings.TrimSuffix(string(file), "\n"), "\n"); !cmp.Equal(want, got) {
		t.Fatalf("the collector got %d records, the file holds %d; they differ", len(got), len(want))
	}
	if len(got) < 300 {
		t.Fatalf("%d records", len(got))
	}
	if _, err := audit.Verify([]string{path}); err != nil {
		t.Fatal(err)
	}
}
