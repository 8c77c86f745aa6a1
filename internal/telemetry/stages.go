package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/pipeline"
)

// Stages are the route's two tracing stages (see the package doc); none
// on a nil Tracer.
func (t *Tracer) Stages(route string) []pipeline.Stage {
	if t == nil {
		return nil
	}
	return []pipeline.Stage{
		{Name: ServerStage, ClientToServer: t.serverSpan(route), Observe: t.observe},
		{Name: UpstreamStage, ClientToServer: t.clientSpan(route)},
	}
}

// Attribute keys. Names follow the OpenTelemetry conventions for MCP
// where one exists.
const (
	attrMethod    = attribute.Key("mcp.method.name")
	attrSession   = attribute.Key("mcp.session.id")
	attrProtocol  = attribute.Key("mcp.protocol.version")
	attrRequestID = attribute.Key("jsonrpc.request.id")
	attrTool      = attribute.Key("gen_ai.tool.name")
	attrPrompt    = attribute.Key("gen_ai.prompt.name")
	attrErrorCode = attribute.Key("rpc.jsonrpc.error_code")
	attrRoute     = attribute.Key("mcpgate.route")
	attrEra       = attribute.Key("mcpgate.era")
	attrPrincipal = attribute.Key("mcpgate.principal")
	attrTenant    = attribute.Key("mcpgate.tenant")
)

// spanName is "method" or "method name" for a tool call or a prompt.
func spanName(m *core.Message) string {
	switch m.Method {
	case "tools/call", "prompts/get":
		if m.Name != "" {
			return m.Method + " " + m.Name
		}
	}
	return m.Method
}

// attrs are the attributes of a request's spans: names, never contents.
func attrs(route string, m *core.Message) []attribute.KeyValue {
	a := make([]attribute.KeyValue, 0, 10)
	a = append(a, attrRoute.String(route), attrMethod.String(m.Method), attrEra.String(m.Era.String()))
	if m.ID != "" {
		a = append(a, attrRequestID.String(string(m.ID)))
	}
	switch m.Method {
	case "tools/call":
		a = append(a, attrTool.String(m.Name))
	case "prompts/get":
		a = append(a, attrPrompt.String(m.Name))
	}
	if s := m.Session; s != nil {
		a = append(a, attrSession.String(s.LogID()), attrPrincipal.String(s.Principal))
		if s.Tenant != "" {
			a = append(a, attrTenant.String(s.Tenant))
		}
		if s.ProtocolVersion != "" {
			a = append(a, attrProtocol.String(s.ProtocolVersion))
		}
	} else if m.MetaVersion != "" {
		a = append(a, attrProtocol.String(m.MetaVersion))
	}
	return a
}

// serverSpan is the outermost stage's interceptor: a server span around
// each client request, its parent the client's trace context.
func (t *Tracer) serverSpan(route string) core.Interceptor {
	return func(next core.Handler) core.Handler {
		return func(ctx context.Context, m *core.Message) (*core.Message, error) {
			if m.Kind != core.KindRequest {
				return next(ctx, m)
			}
			ctx = t.extract(ctx, m)
			ctx, span := t.tracer.Start(ctx, spanName(m), trace.WithSpanKind(trace.SpanKindServer),
				trace.WithAttributes(attrs(route, m)...))
			resp, err := next(ctx, m)
			t.finish(span, resp, err)
			return resp, err
		}
	}
}

// clientSpan is the innermost stage's interceptor: a client span around
// the call to the upstream, whose context the upstream gets in place of
// the client's.
func (t *Tracer) clientSpan(route string) core.Interceptor {
	return func(next core.Handler) core.Handler {
		return func(ctx context.Context, m *core.Message) (*core.Message, error) {
			if m.Kind != core.KindRequest {
				return next(ctx, m)
			}
			ctx, span := t.tracer.Start(ctx, spanName(m), trace.WithSpanKind(trace.SpanKindClient),
				trace.WithAttributes(attrs(route, m)...))
			resp, err := next(ctx, t.inject(ctx, m))
			t.finish(span, resp, err)
			return resp, err
		}
	}
}

// finish records the outcome on span and ends it.
func (t *Tracer) finish(span trace.Span, resp *core.Message, err error) {
	switch {
	case err != nil:
		var e *core.Error
		if errors.As(err, &e) {
			span.SetAttributes(attrErrorCode.Int(e.Code))
			msg := e.Message
			if t.redact != nil {
				msg = t.redact(msg)
			}
			span.SetStatus(codes.Error, msg)
		} else {
			span.SetStatus(codes.Error, "transport error")
		}
	case resp != nil && resp.Kind == core.KindError:
		code := resp.ErrorCode()
		span.SetAttributes(attrErrorCode.Int(code))
		span.SetStatus(codes.Error, "JSON-RPC error "+strconv.Itoa(code))
	}
	span.End()
}

// observe turns a policy or quota decision on a request into an event of
// the request's server span.
func (t *Tracer) observe(ctx context.Context, ev *pipeline.Event) {
	if ev.Kind != pipeline.Decision {
		return
	}
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	a := make([]attribute.KeyValue, 0, 6)
	name := "mcpgate.decision"
	switch {
	case ev.Policy != "":
		name = "mcpgate.policy"
		a = append(a, attribute.String("mcpgate.policy", ev.Policy), attribute.String("mcpgate.policy.rule", ev.Rule))
	case ev.Quota != "":
		name = "mcpgate.quota"
		a = append(a, attribute.String("mcpgate.quota", ev.Quota), attribute.String("mcpgate.quota.limit", ev.Limit),
			attribute.Int64("mcpgate.quota.usage", ev.Usage), attribute.Int64("mcpgate.quota.max", ev.Max))
	case ev.Stage != "":
		a = append(a, attribute.String("mcpgate.stage", ev.Stage))
	}
	a = append(a, attribute.String("mcpgate.action", ev.Action))
	if ev.Err != nil {
		a = append(a, attrErrorCode.Int(ev.Err.Code))
	}
	span.AddEvent(name, trace.WithAttributes(a...))
}

// The W3C members of params._meta.
const (
	metaTraceparent = "traceparent"
	metaTracestate  = "tracestate"
	metaBaggage     = "baggage"
)

// traceMeta is what params._meta says of the trace.
type traceMeta struct {
	Meta struct {
		Traceparent string `json:"traceparent"`
		Tracestate  string `json:"tracestate"`
		Baggage     string `json:"baggage"`
	} `json:"_meta"`
}

// extract returns ctx with the client's trace context as the remote
// parent: params._meta's when it names a traceparent, else the HTTP
// headers'.
func (t *Tracer) extract(ctx context.Context, m *core.Message) context.Context {
	if bytes.Contains(m.Params, []byte(`"traceparent"`)) {
		var tm traceMeta
		if json.Unmarshal(m.Params, &tm) == nil && tm.Meta.Traceparent != "" {
			c := propagation.MapCarrier{metaTraceparent: tm.Meta.Traceparent}
			if tm.Meta.Tracestate != "" {
				c[metaTracestate] = tm.Meta.Tracestate
			}
			if tm.Meta.Baggage != "" {
				c[metaBaggage] = tm.Meta.Baggage
			}
			return t.prop.Extract(ctx, c)
		}
	}
	if m.Header != nil {
		return t.prop.Extract(ctx, propagation.HeaderCarrier(m.Header))
	}
	return ctx
}

// inject returns a copy of m carrying ctx's trace context, in place of
// the client's, in params._meta and in its trace headers. m is left as
// it is: the stages outside see the request the client sent.
func (t *Tracer) inject(ctx context.Context, m *core.Message) *core.Message {
	c := propagation.MapCarrier{}
	t.prop.Inject(ctx, c)
	if c[metaTraceparent] == "" {
		return m
	}
	out := *m
	raw, ok := spliceMeta(m, c)
	if !ok {
		raw, ok = withMeta(m.Raw, c)
	}
	if ok {
		if err := out.Replace(raw); err != nil {
			out = *m
		}
	}
	h := http.Header{}
	for k, v := range m.Header {
		switch k {
		case "Traceparent", "Tracestate", "Baggage":
		default:
			h[k] = v
		}
	}
	propagation.HeaderCarrier(h).Set(metaTraceparent, c[metaTraceparent])
	if v := c[metaTracestate]; v != "" {
		h.Set(metaTracestate, v)
	}
	if v := c[metaBaggage]; v != "" {
		h.Set(metaBaggage, v)
	}
	out.Header = h
	return &out
}

// withMeta returns the message raw with params._meta's trace members set
// to c's (those c lacks removed), every other member kept as it was.
func withMeta(raw []byte, c propagation.MapCarrier) ([]byte, bool) {
	var msg map[string]json.RawMessage
	if json.Unmarshal(raw, &msg) != nil {
		return nil, false
	}
	params := map[string]json.RawMessage{}
	if p, ok := msg["params"]; ok && string(p) != "null" {
		if json.Unmarshal(p, &params) != nil || params == nil {
			return nil, false // params by position: no _meta to carry it
		}
	}
	meta := map[string]json.RawMessage{}
	if mt, ok := params["_meta"]; ok && string(mt) != "null" {
		if json.Unmarshal(mt, &meta) != nil || meta == nil {
			return nil, false
		}
	}
	for _, k := range []string{metaTraceparent, metaTracestate, metaBaggage} {
		if v := c[k]; v != "" {
			b, _ := json.Marshal(v)
			meta[k] = b
		} else {
			delete(meta, k)
		}
	}
	var err error
	if params["_meta"], err = json.Marshal(meta); err != nil {
		return nil, false
	}
	if msg["params"], err = json.Marshal(params); err != nil {
		return nil, false
	}
	out, err := json.Marshal(msg)
	return out, err == nil
}
