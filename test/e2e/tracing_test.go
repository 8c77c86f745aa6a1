package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/mcpgate/mcpgate/internal/auth"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/core"
)

// otlpReceiver is an in-process OTLP/HTTP collector: it decodes every
// export (protobuf) and keeps the spans and the raw bytes.
type otlpReceiver struct {
	mu    sync.Mutex
	spans []*tracepb.Span
	raw   [][]byte
	auth  []string
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var req coltracepb.ExportTraceServiceRequest
	if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" || proto.Unmarshal(body, &req) != nil {
		http.Error(w, "bad export", http.StatusBadRequest)
		return
	}
	o.mu.Lock()
	o.raw = append(o.raw, body)
	o.auth = append(o.auth, r.Header.Get("Authorization"))
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			o.spans = append(o.spans, ss.Spans...)
		}
	}
	o.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// seenUpstream is what the upstream got of one tools/call: its trace
// header and the traceparent in params._meta.
type seenUpstream struct {
	Tool, Header, Meta string
}

// tracedUpstream is a go-sdk server with a tool echo, recording the trace
// context of every tools/call it gets.
func tracedUpstream(t *testing.T) (string, func() []seenUpstream) {
	s := mcp.NewServer(&mcp.Implementation{Name: "traced", Version: "1"}, nil)
	type in struct {
		Text string `json:"text"`
	}
	for _, name := range []string{"echo", "danger"} {
		mcp.AddTool(s, &mcp.Tool{Name: name}, func(_ context.Context, _ *mcp.CallToolRequest, a in) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: a.Text}}}, nil, nil
		})
	}
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
	var mu sync.Mutex
	var seen []seenUpstream
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			var m struct {
				Method string `json:"method"`
				Params struct {
					Name string `json:"name"`
					Meta struct {
						Traceparent string `json:"traceparent"`
					} `json:"_meta"`
				} `json:"params"`
			}
			if json.Unmarshal(body, &m) == nil && m.Method == "tools/call" {
				mu.Lock()
				seen = append(seen, seenUpstream{m.Params.Name, r.Header.Get("Traceparent"), m.Params.Meta.Traceparent})
				mu.Unlock()
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() []seenUpstream {
		mu.Lock()
		defer mu.Unlock()
		return append([]seenUpstream(nil), seen...)
	}
}

const (
	traceLegacyHeader = "4bf92f3577b34da6a3ce929d0e0e4736"
	traceLegacyMeta   = "5bf92f3577b34da6a3ce929d0e0e4736"
	traceModernMeta   = "6bf92f3577b34da6a3ce929d0e0e4736"
	traceModernHeader = "7bf92f3577b34da6a3ce929d0e0e4736"
	clientSpanID      = "00f067aa0ba902b7"
)

func traceparent(trace string) string { return "00-" + trace + "-" + clientSpanID + "-01" }

// TestTracesExportedOverOTLP runs legacy (go-sdk client) and modern (raw
// 2026-07-28 requests, bridged to the legacy upstream) tool calls through
// a gateway exporting to an in-process OTLP/HTTP receiver: each request
// has a server span whose parent is the client's traceparent (HTTP header
// or _meta) and a client span to the upstream, which gets that client
// span as its parent in its Traceparent header and in _meta; a policy
// denial and a quota refusal are events of their server spans; the spans
// name route, method, tool and session, and hold no secret.
func TestTracesExportedOverOTLP(t *testing.T) {
	t.Parallel()
	rcv := &otlpReceiver{}
	collector := httptest.NewServer(rcv)
	t.Cleanup(collector.Close)
	upURL, seen := tracedUpstream(t)
	key, _ := auth.NewKey()
	const upSecret, otlpSecret = "upstream-secret-7f3a9", "otlp-secret-c41d"
	route := httpRoute("traced", "/mcp", upURL)
	route.Upstream.HTTP.Headers = map[string]config.Secret{"X-Api-Key": upSecret}
	ag := startAuthGateway(t, func(c *config.Config, _ string) {
		c.Auth = &config.Auth{APIKeys: []config.APIKey{{KeySHA256: auth.HashKey(key), Principal: "alice", Tenant: "acme"}}}
		c.Policies = []config.Policy{{Name: "no-danger", Tools: &config.PolicyList{Deny: []string{"danger"}}}}
		c.Quotas = []config.Quota{{Name: "echo-budget", Tools: map[string]int64{"echo": 3}}}
		c.Telemetry.OTLP.Endpoint = collector.URL
		c.Telemetry.OTLP.Headers = map[string]config.Secret{"Authorization": "Bearer " + otlpSecret}
	}, route)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Legacy: the trace context in the HTTP header, then in _meta.
	c := mcp.NewClient(&mcp.Implementation{Name: "trace-e2e", Version: "1"}, nil)
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: ag.gw.URL + "/mcp", HTTPClient: &http.Client{
		Transport: headerTransport{"Authorization": "Bearer " + key, "Traceparent": traceparent(traceLegacyHeader)}}},
		&mcp.ClientSessionOptions{ProtocolVersion: core.Version20251125})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "argument-value-1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "x"},
		Meta: mcp.Meta{"traceparent": traceparent(traceLegacyMeta)}}); err != nil {
		t.Fatal(err)
	}
	if r, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "danger", Arguments: map[string]any{"text": "x"}}); err == nil && !r.IsError {
		t.Fatal("danger was not denied")
	}
	// Modern, through the bridge: _meta, then the header.
	modern := func(tp string, inMeta bool, text string) rawResp {
		meta := `{"io.modelcontextprotocol/protocolVersion":"` + modernVersion + `","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"m","version":"1"}`
		hdr := map[string]string{"Authorization": "Bearer " + key, "Mcp-Name": "echo"}
		if inMeta {
			meta += `,"traceparent":"` + tp + `","tracestate":"vendor=1"`
		} else {
			hdr["Traceparent"] = tp
		}
		return modernDo(t, ag.gw.URL+"/mcp", "tools/call", `{"name":"echo","arguments":{"text":"`+text+`"},"_meta":`+meta+`}}`, hdr)
	}
	if r := modern(traceparent(traceModernMeta), true, "y"); r.Status != http.StatusOK || r.Code != 0 {
		t.Fatalf("modern call: %d %s", r.Status, r.Body)
	}
	if r := modern(traceparent(traceModernHeader), false, "z"); r.Status != http.StatusOK || r.Code != 0 {
		t.Fatalf("modern call: %d %s", r.Status, r.Body)
	}
	// The legacy session's budget is 3 echoes (per session): the fourth
	// is refused.
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "x"}}); err != nil {
		t.Fatal(err)
	}
	if r, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "x"}}); err == nil && !r.IsError {
		t.Fatal("the fourth echo was not refused")
	}
	_ = cs.Close()
	ag.stop() // flushes the batch of spans

	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(rcv.spans) == 0 {
		t.Fatal("no span exported")
	}
	for _, a := range rcv.auth {
		if a != "Bearer "+otlpSecret {
			t.Errorf("export sent Authorization %q", a)
		}
	}
	for _, raw := range rcv.raw {
		for _, secret := range []string{key, upSecret, otlpSecret, "argument-value-1"} {
			if bytes.Contains(raw, []byte(secret)) {
				t.Errorf("an exported span holds %q", secret)
			}
		}
	}
	byID := map[string]*tracepb.Span{}
	for _, s := range rcv.spans {
		byID[hexID(s.SpanId)] = s
	}
	attr := func(s *tracepb.Span, k string) string {
		for _, a := range s.Attributes {
			if a.Key == k {
				return a.Value.GetStringValue()
			}
		}
		return ""
	}
	// serverOf is the server span of the tools/call in trace tr.
	serverOf := func(tr string) []*tracepb.Span {
		var out []*tracepb.Span
		for _, s := range rcv.spans {
			if hexID(s.TraceId) == tr && s.Kind == tracepb.Span_SPAN_KIND_SERVER && attr(s, "mcp.method.name") == "tools/call" {
				out = append(out, s)
			}
		}
		return out
	}
	ups := seen()
	for _, tr := range []string{traceLegacyHeader, traceLegacyMeta, traceModernMeta, traceModernHeader} {
		srvs := serverOf(tr)
		if len(srvs) == 0 {
			t.Errorf("trace %s: no server span", tr)
			continue
		}
		s := srvs[0]
		if hexID(s.ParentSpanId) != clientSpanID {
			t.Errorf("trace %s: server span's parent %s, want the client's %s", tr, hexID(s.ParentSpanId), clientSpanID)
		}
		if s.Name != "tools/call echo" && s.Name != "tools/call danger" {
			t.Errorf("trace %s: span name %q", tr, s.Name)
		}
		for _, k := range []string{"mcpgate.route", "mcp.session.id", "gen_ai.tool.name", "mcpgate.principal"} {
			if attr(s, k) == "" {
				t.Errorf("trace %s: no attribute %s", tr, k)
			}
		}
		if attr(s, "mcpgate.route") != "traced" || attr(s, "mcpgate.principal") != "alice" {
			t.Errorf("trace %s: route %q principal %q", tr, attr(s, "mcpgate.route"), attr(s, "mcpgate.principal"))
		}
		// A client span, child of the server span, went to the upstream.
		var client *tracepb.Span
		for _, c := range rcv.spans {
			if c.Kind == tracepb.Span_SPAN_KIND_CLIENT && hexID(c.ParentSpanId) == hexID(s.SpanId) {
				client = c
			}
		}
		if client == nil {
			t.Errorf("trace %s: no client span under the server span", tr)
		}
		found := false
		for _, u := range ups {
			found = found || strings.Contains(u.Header, tr)
		}
		if !found {
			t.Errorf("trace %s: the upstream saw no request of the trace (saw %+v)", tr, ups)
		}
	}
	// Every request the upstream got names, in its header and in _meta,
	// the gateway's client span as its parent, whose own parent is the
	// server span of the client's request.
	for _, u := range ups {
		parts := strings.Split(u.Header, "-")
		if len(parts) != 4 || u.Meta != u.Header {
			t.Errorf("upstream got header %q, _meta %q", u.Header, u.Meta)
			continue
		}
		c := byID[parts[2]]
		if c == nil || c.Kind != tracepb.Span_SPAN_KIND_CLIENT || hexID(c.TraceId) != parts[1] {
			t.Errorf("upstream's parent %s is not a client span of the gateway", u.Header)
			continue
		}
		if p := byID[hexID(c.ParentSpanId)]; p == nil || p.Kind != tracepb.Span_SPAN_KIND_SERVER || hexID(p.ParentSpanId) != clientSpanID {
			t.Errorf("client span %s is not under a server span whose parent is the client's", parts[2])
		}
	}
	// The policy denial and the quota refusal are events of their server
	// spans (the legacy session's header trace).
	events := map[string]bool{}
	for _, s := range serverOf(traceLegacyHeader) {
		for _, e := range s.Events {
			events[e.Name] = true
		}
	}
	if !events["mcpgate.policy"] || !events["mcpgate.quota"] {
		t.Errorf("events %v; want mcpgate.policy and mcpgate.quota", events)
	}
}

func hexID(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// TestNoSecretInLogsOrSpans: a stdio upstream that prints its configured
// environment secret on stderr and exits, an HTTP upstream that echoes its
// configured header secret and the client's bearer token in its errors,
// and a client whose token sits in its tool arguments: none of the secrets
// reaches a log line or an exported span.
func TestNoSecretInLogsOrSpans(t *testing.T) {
	t.Parallel()
	rcv := &otlpReceiver{}
	collector := httptest.NewServer(rcv)
	t.Cleanup(collector.Close)
	key, _ := auth.NewKey()
	const envSecret, hdrSecret = "env-secret-91bd02e7", "hdr-secret-5c33f0aa"
	leaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "refused key "+r.Header.Get("X-Api-Key")+" for "+r.Header.Get("Authorization"), http.StatusInternalServerError)
	}))
	t.Cleanup(leaky.Close)
	httpR := httpRoute("leaky-http", "/http", leaky.URL)
	httpR.Upstream.HTTP.Headers = map[string]config.Secret{"X-Api-Key": hdrSecret}
	stdioR := stdioRoute("leaky-stdio", "/stdio", "sh", "-c", `echo "starting with token $API_TOKEN" >&2; exit 3`)
	stdioR.Upstream.Stdio.Env = map[string]config.Secret{"API_TOKEN": envSecret}
	ag := startAuthGateway(t, func(c *config.Config, _ string) {
		c.Auth = &config.Auth{APIKeys: []config.APIKey{{KeySHA256: auth.HashKey(key), Principal: "alice"}}}
		c.Telemetry.OTLP.Endpoint = collector.URL
		c.Log.Level = "debug"
	}, httpR, stdioR)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bearer := "Bearer " + key
	for _, path := range []string{"/http", "/stdio"} {
		c := mcp.NewClient(&mcp.Implementation{Name: "leak-e2e", Version: "1"}, nil)
		cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: ag.gw.URL + path, MaxRetries: -1, HTTPClient: &http.Client{
			Transport: headerTransport{"Authorization": bearer}}}, &mcp.ClientSessionOptions{ProtocolVersion: core.Version20251125})
		if err == nil {
			_, _ = cs.CallTool(ctx, &mcp.CallToolParams{Name: "t", Arguments: map[string]any{"token": key}})
			_ = cs.Close()
		}
	}
	// A request with a wrong token of the same shape, and one with the
	// right token in a malformed body.
	do(t, "POST", ag.gw.URL+"/http", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`, map[string]string{"Authorization": "Bearer x" + key})
	do(t, "POST", ag.gw.URL+"/http", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"k":"`+key+`"`, map[string]string{"Authorization": bearer})
	waitFor(t, "the stdio upstream's stderr in the log", func() bool { return strings.Contains(ag.logs.String(), "stdio_") })
	ag.stop()
	logText := ag.logs.String()
	if !strings.Contains(logText, "[REDACTED]") {
		t.Errorf("nothing was redacted: the test leaked nothing to redact\n%s", logText)
	}
	for _, secret := range []string{envSecret, hdrSecret, key} {
		if strings.Contains(logText, secret) {
			t.Errorf("the log holds %q:\n%s", secret, logText)
		}
		rcv.mu.Lock()
		for _, raw := range rcv.raw {
			if bytes.Contains(raw, []byte(secret)) {
				t.Errorf("a span holds %q", secret)
			}
		}
		rcv.mu.Unlock()
	}
}

// TestTraceIntoStdio: a stdio upstream gets the gateway's client span as
// its parent in params._meta, whatever era the client speaks; what the
// process reads on stdin is recorded by tee in front of the fixture.
func TestTraceIntoStdio(t *testing.T) {
	t.Parallel()
	rcv := &otlpReceiver{}
	collector := httptest.NewServer(rcv)
	t.Cleanup(collector.Close)
	stdin := filepath.Join(t.TempDir(), "stdin.jsonl")
	ag := startAuthGateway(t, func(c *config.Config, _ string) {
		c.Telemetry.OTLP.Endpoint = collector.URL
	}, stdioRoute("fixture", "/mcp", "sh", "-c", `tee -a "$0" | exec "$1"`, stdin, fixtureBin))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := mcp.NewClient(&mcp.Implementation{Name: "trace-stdio", Version: "1"}, nil)
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: ag.gw.URL + "/mcp", MaxRetries: -1, HTTPClient: &http.Client{
		Transport: headerTransport{"Traceparent": traceparent(traceLegacyHeader)}}}, &mcp.ClientSessionOptions{ProtocolVersion: core.Version20251125})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text"}); err != nil {
		t.Fatal(err)
	}
	_ = cs.Close()
	ag.stop()
	raw, err := os.ReadFile(stdin)
	if err != nil {
		t.Fatal(err)
	}
	var got string
	for _, line := range strings.Split(string(raw), "\n") {
		var m struct {
			Method string `json:"method"`
			Params struct {
				Meta struct {
					Traceparent string `json:"traceparent"`
				} `json:"_meta"`
			} `json:"params"`
		}
		if json.Unmarshal([]byte(line), &m) == nil && m.Method == "tools/call" {
			got = m.Params.Meta.Traceparent
		}
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	want := ""
	for _, s := range rcv.spans {
		if s.Kind == tracepb.Span_SPAN_KIND_CLIENT && hexID(s.TraceId) == traceLegacyHeader && s.Name == "tools/call test_simple_text" {
			want = "00-" + traceLegacyHeader + "-" + hexID(s.SpanId) + "-01"
		}
	}
	if want == "" || got != want {
		t.Errorf("the process got traceparent %q in _meta; want the client span's %q", got, want)
	}
}
