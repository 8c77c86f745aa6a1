package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/gateway"
	"github.com/mcpgate/mcpgate/internal/pipeline"
	"github.com/mcpgate/mcpgate/internal/testutil/testenv"
)

// quotaServer is a go-sdk server with the tools the quota tests need:
// echo and search answer at once; big answers n bytes of text (or n words);
// hold waits for release; slow waits until it is cancelled and says so.
type quotaServer struct {
	URL       string
	calls     atomic.Int64 // tool calls that reached the server
	held      chan struct{}
	release   chan struct{}
	cancelled chan struct{}
	once      sync.Once
}

// unhold lets every held call finish.
func (qs *quotaServer) unhold() { qs.once.Do(func() { close(qs.release) }) }

func newQuotaServer(t *testing.T) *quotaServer {
	t.Helper()
	qs := &quotaServer{held: make(chan struct{}, 16), release: make(chan struct{}), cancelled: make(chan struct{}, 4)}
	s := mcp.NewServer(&mcp.Implementation{Name: "quota", Version: "1"}, nil)
	text := func(s string) *mcp.CallToolResult {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
	}
	type echoArgs struct {
		Say string `json:"say,omitempty"`
	}
	for _, name := range []string{"echo", "search"} {
		mcp.AddTool(s, &mcp.Tool{Name: name}, func(_ context.Context, _ *mcp.CallToolRequest, a echoArgs) (*mcp.CallToolResult, any, error) {
			qs.calls.Add(1)
			return text(name + ": " + a.Say), nil, nil
		})
	}
	type bigArgs struct {
		N     int  `json:"n,omitempty"`
		Words bool `json:"words,omitempty"`
	}
	mcp.AddTool(s, &mcp.Tool{Name: "big"}, func(_ context.Context, _ *mcp.CallToolRequest, a bigArgs) (*mcp.CallToolResult, any, error) {
		qs.calls.Add(1)
		if a.Words {
			return text(strings.Repeat(" word", a.N)), nil, nil
		}
		return text(strings.Repeat("x", a.N)), nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "hold"}, func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		qs.calls.Add(1)
		qs.held <- struct{}{}
		select {
		case <-qs.release:
			return text("released"), nil, nil
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	})
	mcp.AddTool(s, &mcp.Tool{Name: "slow"}, func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		qs.calls.Add(1)
		select {
		case <-ctx.Done():
			qs.cancelled <- struct{}{}
			return nil, nil, ctx.Err()
		case <-time.After(30 * time.Second):
			return text("finished"), nil, nil
		}
	})
	up := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil))
	t.Cleanup(up.Close)
	t.Cleanup(qs.unhold)
	qs.URL = up.URL
	return qs
}

// quotaEvents records the gateway's quota decisions.
type quotaEvents struct {
	mu  sync.Mutex
	evs []pipeline.Event
}

func (q *quotaEvents) observe(_ context.Context, ev *pipeline.Event) {
	if ev.Kind != pipeline.Decision {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.evs = append(q.evs, *ev)
}

func (q *quotaEvents) has(decision, quota, limit string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, ev := range q.evs {
		if ev.Action == decision && ev.Quota == quota && ev.Limit == limit && ev.Session != nil {
			return true
		}
	}
	return false
}

// quotaKeys are API keys of alice and bob (tenant acme) and carol
// (tenant other).
var quotaKeys = map[string]string{}

func quotaAuth() *config.Auth {
	a := &config.Auth{Anonymous: true}
	for _, p := range []struct{ principal, tenant string }{{"alice", "acme"}, {"bob", "acme"}, {"carol", "other"}} {
		key, ok := quotaKeys[p.principal]
		if !ok {
			b := make([]byte, 24)
			_, _ = rand.Read(b)
			key = "mcpg_" + hex.EncodeToString(b)
			quotaKeys[p.principal] = key
		}
		sum := sha256.Sum256([]byte(key))
		a.APIKeys = append(a.APIKeys, config.APIKey{KeySHA256: hex.EncodeToString(sum[:]), Principal: p.principal, Tenant: p.tenant})
	}
	return a
}

var quotaKeysOnce sync.Once

// startQuotaGateway runs a gateway in front of qs with quotas, API keys
// and an event recorder; mutate may adjust the configuration further.
func startQuotaGateway(t *testing.T, qs *quotaServer, quotas []config.Quota, mutate func(*config.Config)) (*gw, *quotaEvents) {
	t.Helper()
	g, evs, _ := startQuotaGatewayStop(t, qs, quotas, mutate, testLogger(t))
	return g, evs
}

// startQuotaGatewayStop is startQuotaGateway that can be stopped before
// the test ends.
func startQuotaGatewayStop(t *testing.T, qs *quotaServer, quotas []config.Quota, mutate func(*config.Config), log *slog.Logger) (*gw, *quotaEvents, func()) {
	t.Helper()
	quotaKeysOnce.Do(func() { quotaAuth() })
	evs := &quotaEvents{}
	cfg := &config.Config{Listeners: []config.Listener{{Address: "127.0.0.1:0"}}, Routes: []config.Route{httpRoute("q", "/mcp", qs.URL)}}
	cfg.Server.ShutdownTimeout = 5 * time.Second
	cfg.Store.Kind = config.StoreMemory
	cfg.Auth = quotaAuth()
	cfg.Quotas = quotas
	if mutate != nil {
		mutate(cfg)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(cfg, gateway.Options{Logger: log, Observe: evs.observe})
	if err != nil {
		t.Fatal(err)
	}
	stop := runGateway(t, g)
	return &gw{Gateway: g, URL: "http://" + g.Addrs()[0].String()}, evs, stop
}

// quotaClient is a go-sdk session as one principal ("" anonymous) that
// records the log messages it gets.
type quotaClient struct {
	*mcp.ClientSession
	mu   sync.Mutex
	logs []*mcp.LoggingMessageParams
}

func connectAs(t *testing.T, url, principal string) *quotaClient {
	t.Helper()
	return connectVersion(t, url, principal, "2025-11-25")
}

// connectVersion is connectAs in a protocol version of choice.
func connectVersion(t *testing.T, url, principal, version string) *quotaClient {
	t.Helper()
	qc := &quotaClient{}
	c := mcp.NewClient(&mcp.Implementation{Name: "quota-client", Version: "1"}, &mcp.ClientOptions{
		LoggingMessageHandler: func(_ context.Context, req *mcp.LoggingMessageRequest) {
			qc.mu.Lock()
			defer qc.mu.Unlock()
			qc.logs = append(qc.logs, req.Params)
		},
	})
	tr := &mcp.StreamableClientTransport{Endpoint: url + "/mcp", MaxRetries: -1}
	if principal != "" {
		_, tr.HTTPClient = newBearerClient(quotaKeys[principal])
	}
	cs, err := c.Connect(t.Context(), tr, &mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatalf("connect as %q: %v", principal, err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	qc.ClientSession = cs
	return qc
}

func (qc *quotaClient) warnings() []*mcp.LoggingMessageParams {
	qc.mu.Lock()
	defer qc.mu.Unlock()
	return append([]*mcp.LoggingMessageParams(nil), qc.logs...)
}

// call calls a tool and fails t on a transport or JSON-RPC error.
func (qc *quotaClient) call(t *testing.T, name string, args map[string]any) *mcp.CallToolResult {
	t.Helper()
	res, err := qc.CallTool(t.Context(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("tools/call %s: %v", name, err)
	}
	return res
}

// mustPass calls a tool that must succeed.
func (qc *quotaClient) mustPass(t *testing.T, name string, args map[string]any) string {
	t.Helper()
	res := qc.call(t, name, args)
	if res.IsError {
		t.Fatalf("tools/call %s refused: %s", name, textOf(t, res))
	}
	return textOf(t, res)
}

// quotaOf reads the refusal a tool result carries in its _meta.
func quotaOf(t *testing.T, res *mcp.CallToolResult) map[string]any {
	t.Helper()
	if !res.IsError {
		t.Fatalf("tool result is not an error: %s", textOf(t, res))
	}
	q, ok := res.Meta["io.mcpgate/quota"].(map[string]any)
	if !ok {
		t.Fatalf("no io.mcpgate/quota in the result's _meta: %v (%s)", res.Meta, textOf(t, res))
	}
	return q
}

// mustRefuse calls a tool that a quota must refuse, with the limit named
// in the text the model reads and in _meta.
func (qc *quotaClient) mustRefuse(t *testing.T, name string, args map[string]any, quota, limit string) map[string]any {
	t.Helper()
	res := qc.call(t, name, args)
	q := quotaOf(t, res)
	text := textOf(t, res)
	if q["quota"] != quota || q["limit"] != limit || !strings.Contains(text, `quota "`+quota+`"`) || !strings.Contains(text, limit) {
		t.Fatalf("refusal of %s = %v / %q; want quota %s limit %s", name, q, text, quota, limit)
	}
	return q
}

// TestQuotaPerSessionRequests: a session's requests cap counts every
// request; a tools/call past it gets an isError result the model can read
// (quota, limit, usage, no reset within the session), another request a
// JSON-RPC -32013 with the same in data; the client is warned once at
// warn_at; a new session has a budget of its own.
func TestQuotaPerSessionRequests(t *testing.T) {
	t.Parallel()
	qs := newQuotaServer(t)
	g, evs := startQuotaGateway(t, qs, []config.Quota{{Name: "per-session", Requests: 4, WarnAt: 0.5}}, nil)
	c := connectAs(t, g.URL, "")
	for i := range 4 {
		c.mustPass(t, "echo", map[string]any{"say": "hi"})
		if i == 1 {
			// The second request reached half: one warning, on the
			// stream of the request that reached it.
			w := c.warnings()
			if len(w) != 1 || w[0].Level != "warning" || !strings.Contains(w[0].Data.(map[string]any)["message"].(string), `quota "per-session" limit requests: 2 of 4`) {
				t.Fatalf("warnings after 2 of 4 = %+v", w)
			}
		}
	}
	q := c.mustRefuse(t, "echo", map[string]any{"say": "hi"}, "per-session", "requests")
	if q["max"] != 4.0 || q["usage"] != 5.0 || q["per"] != "session" || q["resets_in_seconds"] != nil {
		t.Errorf("refusal data = %v", q)
	}
	if got := qs.calls.Load(); got != 4 {
		t.Errorf("server got %d calls, want the 4 admitted", got)
	}
	_, err := c.ListTools(t.Context(), nil)
	var rpcErr *jsonrpc.Error
	if !errors.As(err, &rpcErr) || rpcErr.Code != -32013 || !strings.Contains(rpcErr.Message, `quota "per-session" limit requests is 4`) {
		t.Fatalf("tools/list past the cap: %v", err)
	}
	var data map[string]any
	if err := json.Unmarshal(rpcErr.Data, &data); err != nil || data["quota"] != "per-session" || data["limit"] != "requests" {
		t.Errorf("error data = %s (%v)", rpcErr.Data, err)
	}
	if n := len(c.warnings()); n != 1 {
		t.Errorf("%d warnings, want 1", n)
	}
	if !evs.has(pipeline.ActionRefused, "per-session", "requests") || !evs.has(pipeline.ActionWarning, "per-session", "requests") {
		t.Errorf("events = %+v", evs.evs)
	}
	// Another session starts afresh.
	connectAs(t, g.URL, "").mustPass(t, "echo", map[string]any{"say": "again"})
}

// TestQuotaPrincipalSpansSessions: a principal's budget is one across
// its sessions (a re-initialize does not refill it), and another
// principal's, or another tenant's, is another.
func TestQuotaPrincipalSpansSessions(t *testing.T) {
	t.Parallel()
	qs := newQuotaServer(t)
	g, _ := startQuotaGateway(t, qs, []config.Quota{
		{Name: "calls-per-principal", Per: "principal", Window: time.Hour, ToolCalls: 3},
	}, nil)
	a1 := connectAs(t, g.URL, "alice")
	a1.mustPass(t, "echo", nil)
	a1.mustPass(t, "echo", nil)
	_ = a1.Close()
	a2 := connectAs(t, g.URL, "alice")
	if _, err := a2.ListTools(t.Context(), nil); err != nil {
		t.Fatalf("tools/list is not a tool call: %v", err)
	}
	a2.mustPass(t, "echo", nil)
	q := a2.mustRefuse(t, "echo", nil, "calls-per-principal", "tool_calls")
	secs, _ := q["resets_in_seconds"].(float64)
	if q["per"] != "principal" || secs < 3400 || secs > 3800 || q["resets_at"] == nil {
		t.Errorf("refusal = %v; want a reset in about an hour", q)
	}
	if text := textOf(t, a2.call(t, "echo", nil)); !strings.Contains(text, "fits again in") {
		t.Errorf("refusal text %q does not say when it resets", text)
	}
	connectAs(t, g.URL, "bob").mustPass(t, "echo", nil)
	connectAs(t, g.URL, "carol").mustPass(t, "echo", nil)
}

// TestQuotaPerTool: a tool's own cap leaves the other tools alone.
func TestQuotaPerTool(t *testing.T) {
	t.Parallel()
	qs := newQuotaServer(t)
	g, evs := startQuotaGateway(t, qs, []config.Quota{{Name: "search-cap", Tools: map[string]int64{"search": 2}}}, nil)
	c := connectAs(t, g.URL, "alice")
	c.mustPass(t, "search", map[string]any{"say": "a"})
	c.mustPass(t, "search", map[string]any{"say": "b"})
	c.mustRefuse(t, "search", map[string]any{"say": "c"}, "search-cap", "tool:search")
	c.mustPass(t, "echo", nil)
	if !evs.has(pipeline.ActionRefused, "search-cap", "tool:search") {
		t.Errorf("no refusal event: %+v", evs.evs)
	}
}

// TestQuotaConcurrent: at most concurrent requests in flight per key; one
// more is refused at once (the server never sees it), and admitted again
// when one has finished.
func TestQuotaConcurrent(t *testing.T) {
	t.Parallel()
	qs := newQuotaServer(t)
	g, _ := startQuotaGateway(t, qs, []config.Quota{{Name: "two-at-once", Per: "principal", Concurrent: 2}}, nil)
	a, b := connectAs(t, g.URL, "alice"), connectAs(t, g.URL, "alice")
	done := make(chan string, 2)
	for _, c := range []*quotaClient{a, b} {
		go func() {
			res, err := c.CallTool(context.Background(), &mcp.CallToolParams{Name: "hold"})
			if err != nil {
				done <- err.Error()
				return
			}
			done <- textOf(t, res)
		}()
	}
	<-qs.held
	<-qs.held
	q := a.mustRefuse(t, "echo", nil, "two-at-once", "concurrent")
	if q["usage"] != 2.0 || !strings.Contains(textOf(t, a.call(t, "echo", nil)), "retry when one has finished") {
		t.Errorf("refusal = %v", q)
	}
	connectAs(t, g.URL, "bob").mustPass(t, "echo", nil) // another principal
	qs.unhold()
	for range 2 {
		if got := <-done; got != "released" {
			t.Errorf("held call = %q", got)
		}
	}
	a.mustPass(t, "echo", nil)
}

// TestQuotaResultBudgets: a result that would exceed result_bytes or
// result_tokens is withheld (the client gets the refusal, not the
// content) and not counted; smaller ones still fit.
func TestQuotaResultBudgets(t *testing.T) {
	t.Parallel()
	qs := newQuotaServer(t)
	g, evs := startQuotaGateway(t, qs, []config.Quota{
		{Name: "bytes", ResultBytes: 4000},
		{Name: "tokens", ResultTokens: 300, Tokenizer: "o200k_base", Match: config.QuotaMatch{Principals: []string{"bob"}}},
	}, nil)
	c := connectAs(t, g.URL, "alice")
	if got := c.mustPass(t, "big", map[string]any{"n": 1500}); len(got) != 1500 {
		t.Fatalf("first result %d bytes", len(got))
	}
	q := c.mustRefuse(t, "big", map[string]any{"n": 3000}, "bytes", "result_bytes")
	if text := textOf(t, c.call(t, "big", map[string]any{"n": 3000})); !strings.HasPrefix(text, "result withheld") || strings.Contains(text, "xxxx") {
		t.Errorf("withheld result says %q", text)
	}
	if u, _ := q["usage"].(float64); u < 4500 {
		t.Errorf("refusal usage = %v, want what it would have been", q)
	}
	c.mustPass(t, "big", map[string]any{"n": 1500}) // the withheld ones were not counted
	if !evs.has(pipeline.ActionWithheld, "bytes", "result_bytes") {
		t.Errorf("no withheld event: %+v", evs.evs)
	}
	// Tokens: " word" is one o200k token; the text of a result is counted,
	// not its JSON.
	b := connectAs(t, g.URL, "bob")
	b.mustPass(t, "big", map[string]any{"n": 200, "words": true})
	b.mustRefuse(t, "big", map[string]any{"n": 150, "words": true}, "tokens", "result_tokens")
	b.mustPass(t, "big", map[string]any{"n": 90, "words": true})
}

// TestQuotaCallTimeout: a call past call_timeout is cut off: the client
// gets a refusal naming the quota, and the upstream is told to cancel.
func TestQuotaCallTimeout(t *testing.T) {
	t.Parallel()
	qs := newQuotaServer(t)
	g, evs := startQuotaGateway(t, qs, []config.Quota{{Name: "quick", CallTimeout: 300 * time.Millisecond}}, nil)
	c := connectAs(t, g.URL, "alice")
	start := time.Now()
	c.mustRefuse(t, "slow", nil, "quick", "call_timeout")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cut off after %v", d)
	}
	select {
	case <-qs.cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream was not told to cancel the call")
	}
	c.mustPass(t, "echo", nil)
	if !evs.has(pipeline.ActionTimeout, "quick", "call_timeout") {
		t.Errorf("no timeout event: %+v", evs.evs)
	}
}

// TestQuotaSessionTime: a session past its session_time ends, with
// reason quota, whether or not it sends anything.
func TestQuotaSessionTime(t *testing.T) {
	t.Parallel()
	qs := newQuotaServer(t)
	g, evs := startQuotaGateway(t, qs, []config.Quota{{Name: "short", SessionTime: 500 * time.Millisecond}}, nil)
	c := connectAs(t, g.URL, "alice")
	c.mustPass(t, "echo", nil)
	waitFor(t, "the session to end", func() bool { return g.Sessions().Len() == 0 })
	if _, err := c.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo"}); err == nil {
		t.Error("a call after session_time succeeded")
	}
	if !evs.has(pipeline.ActionSessionTime, "short", "session_time") {
		t.Errorf("no session_time event: %+v", evs.evs)
	}
}

// TestQuotaRedisSharedByTwoGateways: two replicas on one Redis share a
// principal's budget exactly.
func TestQuotaRedisSharedByTwoGateways(t *testing.T) {
	t.Parallel()
	requireRedis(t)
	rnd := make([]byte, 6)
	_, _ = rand.Read(rnd)
	prefix := "mcpgate-e2e-quota-" + hex.EncodeToString(rnd) + ":"
	t.Cleanup(func() { cleanupRedis(t, prefix) })
	cleanupRedis(t, prefix)
	qs := newQuotaServer(t)
	quotas := []config.Quota{{Name: "shared", Per: "principal", Window: time.Hour, ToolCalls: 3}}
	secret := testenv.IDKeySecret()
	redisCfg := func(c *config.Config) {
		c.Store.Kind = config.StoreRedis
		c.Store.Redis = &config.RedisStore{Addr: redisAddr, Prefix: prefix}
		c.Sessions.IDKeys = []config.IDKey{{ID: "k1", Secret: config.Secret(secret)}}
	}
	g1, _ := startQuotaGateway(t, qs, quotas, redisCfg)
	g2, _ := startQuotaGateway(t, qs, quotas, redisCfg)
	a := connectAs(t, g1.URL, "alice")
	b := connectAs(t, g2.URL, "alice")
	a.mustPass(t, "echo", nil)
	b.mustPass(t, "echo", nil)
	a.mustPass(t, "echo", nil)
	b.mustRefuse(t, "echo", nil, "shared", "tool_calls")
	a.mustRefuse(t, "echo", nil, "shared", "tool_calls")
	connectAs(t, g2.URL, "bob").mustPass(t, "echo", nil)
	if got := qs.calls.Load(); got != 4 {
		t.Errorf("server got %d calls, want 4", got)
	}
}

// TestQuotaSurvivesRestart: with the embedded store a principal's budget
// survives a restart of the gateway.
func TestQuotaSurvivesRestart(t *testing.T) {
	t.Parallel()
	qs := newQuotaServer(t)
	dir := t.TempDir()
	quotas := []config.Quota{{Name: "daily", Per: "principal", Window: 24 * time.Hour, ToolCalls: 3}}
	embedded := func(c *config.Config) {
		c.Store.Kind = config.StoreEmbedded
		c.Store.DataDir = dir
	}
	g1, _, stop := startQuotaGatewayStop(t, qs, quotas, embedded, testLogger(t))
	a := connectAs(t, g1.URL, "alice")
	a.mustPass(t, "echo", nil)
	a.mustPass(t, "echo", nil)
	_ = a.Close()
	stop()
	g2, _ := startQuotaGateway(t, qs, quotas, embedded)
	b := connectAs(t, g2.URL, "alice")
	b.mustPass(t, "echo", nil)
	b.mustRefuse(t, "echo", nil, "daily", "tool_calls")
}

// TestQuotaModernClient: a 2026-07-28 client (its requests translated for
// the legacy server) meets the same budgets, refusals and warning.
func TestQuotaModernClient(t *testing.T) {
	t.Parallel()
	qs := newQuotaServer(t)
	g, _ := startQuotaGateway(t, qs, []config.Quota{{Name: "modern", Per: "principal", Window: time.Hour, ToolCalls: 2, WarnAt: 0.5}}, nil)
	c := connectVersion(t, g.URL, "alice", "2026-07-28")
	if got := c.InitializeResult().ProtocolVersion; got != "2026-07-28" {
		t.Fatalf("negotiated %q", got)
	}
	c.mustPass(t, "echo", nil)
	c.mustPass(t, "echo", nil)
	c.mustRefuse(t, "echo", nil, "modern", "tool_calls")
	if w := c.warnings(); len(w) != 1 || w[0].Level != "warning" {
		t.Errorf("warnings = %+v, want one", w)
	}
}

// TestQuotaSessionBudgetAcrossReplicas: with Redis, a session's own
// budget is one on every replica that serves the session.
func TestQuotaSessionBudgetAcrossReplicas(t *testing.T) {
	t.Parallel()
	requireRedis(t)
	rnd := make([]byte, 6)
	_, _ = rand.Read(rnd)
	prefix := "mcpgate-e2e-quota-" + hex.EncodeToString(rnd) + ":"
	t.Cleanup(func() { cleanupRedis(t, prefix) })
	qs := newQuotaServer(t)
	quotas := []config.Quota{{Name: "session-calls", ToolCalls: 2}}
	secret := testenv.IDKeySecret()
	redisCfg := func(c *config.Config) {
		c.Store.Kind = config.StoreRedis
		c.Store.Redis = &config.RedisStore{Addr: redisAddr, Prefix: prefix}
		c.Sessions.IDKeys = []config.IDKey{{ID: "k1", Secret: config.Secret(secret)}}
	}
	g1, _ := startQuotaGateway(t, qs, quotas, redisCfg)
	g2, _ := startQuotaGateway(t, qs, quotas, redisCfg)
	hdr := legacySessionAs(t, g1.URL+"/mcp", quotaKeys["alice"])
	call := func(url string) string {
		t.Helper()
		r := do(t, "POST", url+"/mcp", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{}}}`, hdr)
		if r.Status != http.StatusOK {
			t.Fatalf("tools/call on %s: %d %s", url, r.Status, r.Body)
		}
		return r.Body
	}
	for _, url := range []string{g1.URL, g2.URL} {
		if body := call(url); strings.Contains(body, `"isError":true`) {
			t.Fatalf("call on %s refused: %s", url, body)
		}
	}
	for _, url := range []string{g1.URL, g2.URL} {
		if body := call(url); !strings.Contains(body, `"isError":true`) || !strings.Contains(body, `session-calls`) {
			t.Errorf("third call on %s: %s; want the session's budget spent", url, body)
		}
	}
}

// TestQuotaSessionBudgetSurvivesRestart: with the embedded store, a
// session restored after a restart goes on with the budget it had.
func TestQuotaSessionBudgetSurvivesRestart(t *testing.T) {
	t.Parallel()
	qs := newQuotaServer(t)
	dir := t.TempDir()
	quotas := []config.Quota{{Name: "session-calls", ToolCalls: 2}}
	embedded := func(c *config.Config) {
		c.Store.Kind = config.StoreEmbedded
		c.Store.DataDir = dir
	}
	g1, _, stop := startQuotaGatewayStop(t, qs, quotas, embedded, testLogger(t))
	hdr := legacySessionAs(t, g1.URL+"/mcp", quotaKeys["alice"])
	call := func(url string) string {
		t.Helper()
		r := do(t, "POST", url+"/mcp", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{}}}`, hdr)
		if r.Status != http.StatusOK {
			t.Fatalf("tools/call on %s: %d %s", url, r.Status, r.Body)
		}
		return r.Body
	}
	if body := call(g1.URL); strings.Contains(body, `"isError":true`) {
		t.Fatalf("first call refused: %s", body)
	}
	stop()
	g2, _ := startQuotaGateway(t, qs, quotas, embedded)
	if body := call(g2.URL); strings.Contains(body, `"isError":true`) {
		t.Fatalf("second call, after the restart, refused: %s", body)
	}
	if body := call(g2.URL); !strings.Contains(body, `"isError":true`) || !strings.Contains(body, "session-calls") {
		t.Errorf("third call after the restart: %s; want the session's budget spent", body)
	}
}

// TestQuotaStdio: a stdio route meets the same budgets; a call cut off
// at call_timeout is cancelled in the server's process.
func TestQuotaStdio(t *testing.T) {
	t.Parallel()
	logs := new(logLines)
	g, _, _ := startQuotaGatewayStop(t, newQuotaServer(t), []config.Quota{
		{Name: "stdio", ToolCalls: 3, CallTimeout: 300 * time.Millisecond},
	}, func(c *config.Config) {
		c.Routes = []config.Route{stdioRoute("q", "/mcp", stdioServerBin)}
	}, slog.New(slog.NewJSONHandler(logs, nil)))
	c := connectAs(t, g.URL, "alice")
	if got := c.mustPass(t, "echo", map[string]any{"text": "hi"}); got != "hi" {
		t.Errorf("echo = %q", got)
	}
	c.mustRefuse(t, "slow", map[string]any{"steps": 100, "delay_ms": 100}, "stdio", "call_timeout")
	waitFor(t, "the server to cancel the call", func() bool {
		for _, r := range logs.records("stdio_stderr") {
			if line, _ := r["line"].(string); strings.Contains(line, "slow: cancelled") {
				return true
			}
		}
		return false
	})
	c.mustPass(t, "echo", map[string]any{"text": "third"})
	c.mustRefuse(t, "echo", map[string]any{"text": "fourth"}, "stdio", "tool_calls")
}
