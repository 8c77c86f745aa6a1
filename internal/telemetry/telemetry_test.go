package telemetry

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/pipeline"
)

const clientTP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// chain builds a route's chain with the tracing stages and a policy-like
// stage that reports a Decision for tools named "denied"; the terminal
// records what reached the upstream.
func chain(t *testing.T, tr *Tracer) (*pipeline.Chain, *[]*core.Message) {
	t.Helper()
	var got []*core.Message
	var ch *pipeline.Chain
	deny := pipeline.Stage{Name: "policy", ClientToServer: func(next core.Handler) core.Handler {
		return func(ctx context.Context, m *core.Message) (*core.Message, error) {
			if m.Name == "denied" {
				e := core.NewError(core.CodeInvalidParams, "denied by policy")
				ch.Observe(ctx, &pipeline.Event{Kind: pipeline.Decision, Message: m, Err: e, Policy: "p", Rule: "tools.deny[0]", Action: pipeline.ActionDeny})
				return nil, e
			}
			return next(ctx, m)
		}
	}}
	toServer := func(ctx context.Context, m *core.Message) (*core.Message, error) {
		got = append(got, m)
		return core.Decode([]byte(`{"jsonrpc":"2.0","id":1,"result":{}}`))
	}
	ch, err := pipeline.Build("r", toServer, nil, append(tr.Stages("r"), deny))
	if err != nil {
		t.Fatal(err)
	}
	return ch, &got
}

func newTracer(t *testing.T) (*Tracer, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tr, err := New(context.Background(), config.Telemetry{}, Options{Exporter: exp, Sync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	return tr, exp
}

func decode(t *testing.T, raw string, hdr http.Header) *core.Message {
	t.Helper()
	m, err := core.Decode([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	m.Direction, m.Era, m.Header = core.ClientToServer, core.EraLegacy, hdr
	m.Session = &core.SessionInfo{ID: "session-id-secret", Route: "r", Principal: "alice", Tenant: "acme", ProtocolVersion: "2025-11-25"}
	return m
}

func metaTP(t *testing.T, m *core.Message) string {
	t.Helper()
	var p traceMeta
	if err := json.Unmarshal(m.Params, &p); err != nil {
		t.Fatal(err)
	}
	return p.Meta.Traceparent
}

// TestOffIsNothing: without an endpoint there is no tracer and no stage.
func TestOffIsNothing(t *testing.T) {
	t.Parallel()
	tr, err := New(context.Background(), config.Telemetry{}, Options{})
	if err != nil || tr != nil {
		t.Fatalf("New without an endpoint: %v, %v", tr, err)
	}
	if st := tr.Stages("r"); st != nil {
		t.Fatalf("stages of a nil tracer: %v", st)
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestSpansAndPropagation: a request with the client's traceparent in
// _meta gets a server span under it and a client span under that; what
// reaches the upstream carries the client span in _meta (its other
// members kept) and in Traceparent, the request the stages outside see is
// the client's; attributes name, never reveal.
func TestSpansAndPropagation(t *testing.T) {
	t.Parallel()
	tr, exp := newTracer(t)
	ch, got := chain(t, tr)
	m := decode(t, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"q":"hunter2"},"_meta":{"traceparent":"`+clientTP+`","progressToken":5}}}`,
		http.Header{"Traceparent": {"00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-01"}, "Mcp-Param-X": {"1"}})
	if _, err := ch.ClientToServer(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if metaTP(t, m) != clientTP {
		t.Errorf("the client's message was changed: %s", m.Raw)
	}
	spans := exp.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("%d spans", len(spans))
	}
	client, server := spans[0], spans[1] // the inner one ends first
	if server.SpanKind != trace.SpanKindServer || client.SpanKind != trace.SpanKindClient {
		t.Fatalf("kinds %v %v", server.SpanKind, client.SpanKind)
	}
	if server.Parent.SpanID().String() != "00f067aa0ba902b7" || server.SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("server span's parent %v", server.Parent)
	}
	if client.Parent.SpanID() != server.SpanContext.SpanID() {
		t.Errorf("client span's parent %v, want the server span", client.Parent.SpanID())
	}
	up := (*got)[0]
	want := "00-4bf92f3577b34da6a3ce929d0e0e4736-" + client.SpanContext.SpanID().String() + "-01"
	if metaTP(t, up) != want || up.Header.Get("Traceparent") != want || up.Header.Get("Mcp-Param-X") != "1" {
		t.Errorf("upstream got _meta %q, header %v; want %q", metaTP(t, up), up.Header, want)
	}
	if !strings.Contains(string(up.Raw), `"progressToken":5`) || !strings.Contains(string(up.Raw), `"hunter2"`) || up.Name != "search" || up.ID != m.ID {
		t.Errorf("upstream got %s", up.Raw)
	}
	if server.Name != "tools/call search" {
		t.Errorf("span name %q", server.Name)
	}
	attrs := map[string]string{}
	for _, a := range server.Attributes {
		attrs[string(a.Key)] = a.Value.Emit()
	}
	for k, v := range map[string]string{"mcpgate.route": "r", "mcp.method.name": "tools/call", "gen_ai.tool.name": "search",
		"mcp.session.id": core.Fingerprint("session-id-secret"), "mcpgate.principal": "alice", "mcpgate.tenant": "acme"} {
		if attrs[k] != v {
			t.Errorf("attribute %s = %q, want %q", k, attrs[k], v)
		}
	}
	for _, v := range attrs {
		if strings.Contains(v, "hunter2") || strings.Contains(v, "session-id-secret") {
			t.Errorf("an attribute holds a secret: %v", attrs)
		}
	}
}

// TestHeaderParentAndPositionalParams: without a traceparent in _meta the
// header's is the parent; params without an object get the header only.
func TestHeaderParentAndPositionalParams(t *testing.T) {
	t.Parallel()
	tr, exp := newTracer(t)
	ch, got := chain(t, tr)
	m := decode(t, `{"jsonrpc":"2.0","id":"a","method":"custom","params":[1,2]}`, http.Header{"Traceparent": {clientTP}, "Baggage": {"k=v"}})
	if _, err := ch.ClientToServer(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	server := exp.GetSpans()[1]
	if server.Parent.SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("parent %v", server.Parent)
	}
	up := (*got)[0]
	if string(up.Raw) != string(m.Raw) || !strings.Contains(up.Header.Get("Traceparent"), "4bf92f3577b34da6a3ce929d0e0e4736") || up.Header.Get("Baggage") != "k=v" {
		t.Errorf("upstream got %s %v", up.Raw, up.Header)
	}
	// A request without any trace context starts a trace; a notification
	// passes untouched.
	n := decode(t, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, nil)
	if _, err := ch.ClientToServer(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	if (*got)[1] != n || len(exp.GetSpans()) != 2 {
		t.Errorf("a notification was traced")
	}
	r := decode(t, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, nil)
	if _, err := ch.ClientToServer(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if s := exp.GetSpans()[3]; s.Parent.IsValid() || !strings.Contains(string((*got)[2].Raw), s.SpanContext.TraceID().String()) {
		t.Errorf("a new trace: parent %v, upstream got %s", s.Parent, (*got)[2].Raw)
	}
}

// TestDecisionEvent: a policy decision becomes an event of the server
// span, which records the refusal.
func TestDecisionEvent(t *testing.T) {
	t.Parallel()
	tr, exp := newTracer(t)
	ch, got := chain(t, tr)
	m := decode(t, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"denied"}}`, nil)
	if _, err := ch.ClientToServer(context.Background(), m); err == nil {
		t.Fatal("not denied")
	}
	spans := exp.GetSpans()
	if len(spans) != 1 || len(*got) != 0 {
		t.Fatalf("%d spans, %d upstream calls; want the server span only", len(spans), len(*got))
	}
	s := spans[0]
	if len(s.Events) != 1 || s.Events[0].Name != "mcpgate.policy" || s.Status.Code != codes.Error {
		t.Errorf("events %+v status %+v", s.Events, s.Status)
	}
}

var _ sdktrace.SpanExporter = (*tracetest.InMemoryExporter)(nil)

// FuzzWithMeta: whatever the message, the rewrite is JSON that decodes
// as the same request with the trace context in params._meta, or nothing.
func FuzzWithMeta(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"traceparent":"x","a":1}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"m","params":[1]}`,
		`{"jsonrpc":"2.0","id":1,"method":"m","params":null}`,
		`{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":null}}`,
		`{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":[]}}`,
		`{"jsonrpc":"2.0","id":1,"method":"m"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		in, err := core.Decode(raw)
		if err != nil || in.Kind != core.KindRequest {
			return
		}
		out, ok := withMeta(raw, map[string]string{metaTraceparent: clientTP})
		if !ok {
			return
		}
		m, err := core.Decode(out)
		if err != nil {
			t.Fatalf("%s → %s: %v", raw, out, err)
		}
		if m.Method != in.Method || m.ID != in.ID || m.Name != in.Name {
			t.Fatalf("%s → %s changed the request", raw, out)
		}
		if metaTP(t, m) != clientTP {
			t.Fatalf("%s → %s: no traceparent", raw, out)
		}
	})
}

// FuzzSpliceMeta: the splice gives the same JSON as the decoding rewrite
// whenever it applies, and applies to every well-formed object params.
func FuzzSpliceMeta(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"traceparent":"x","a":1},"b":[{"c":"}"}]}}`,
		`{"jsonrpc":"2.0","id":1,"method":"m","params":{}}`,
		`{"jsonrpc":"2.0","id":1,"method":"m","params": { "a" : "\"_meta\"" } }`,
		`{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"baggage":"k=v","tracestate":"a=b"}},"x":1}`,
		`{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":null}}`,
	} {
		f.Add([]byte(s))
	}
	c := map[string]string{metaTraceparent: clientTP, metaTracestate: "v=1"}
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := core.Decode(raw)
		if err != nil || m.Kind != core.KindRequest {
			return
		}
		fast, ok := spliceMeta(m, c)
		slow, sok := withMeta(raw, c)
		if !ok {
			return
		}
		if _, err := core.Decode(fast); err != nil {
			t.Fatalf("%s → %s: %v", raw, fast, err)
		}
		if !sok {
			t.Fatalf("%s: spliced %s, but the decoding rewrite refused", raw, fast)
		}
		var a, b any
		if json.Unmarshal(fast, &a) != nil || json.Unmarshal(slow, &b) != nil || !reflect.DeepEqual(a, b) {
			t.Fatalf("%s:\nspliced %s\ndecoded %s", raw, fast, slow)
		}
	})
}
