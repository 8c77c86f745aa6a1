package metrics_test

import (
	"context"
	"errors"
	"testing"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/metrics"
	"github.com/mcpgate/mcpgate/internal/metrics/metricstest"
	"github.com/mcpgate/mcpgate/internal/pipeline"
	"github.com/mcpgate/mcpgate/internal/session"
)

func decode(t testing.TB, raw string) *core.Message {
	t.Helper()
	m, err := core.Decode([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestTrafficRequests: requests are counted by method (unknown methods as
// "other") and outcome, and timed; a rebuilt stage on the same registry
// counts into the same series.
func TestTrafficRequests(t *testing.T) {
	t.Parallel()
	reg := metrics.New()
	tr, err := metrics.NewTraffic(reg)
	if err != nil {
		t.Fatal(err)
	}
	again, err := metrics.NewTraffic(reg) // a rebuilt chain, a second gateway
	if err != nil {
		t.Fatalf("second NewTraffic on one registry: %v", err)
	}
	ok := func(ctx context.Context, m *core.Message) (*core.Message, error) {
		return core.ResultResponse(m.ID, []byte(`{}`)), nil
	}
	rpcErr := func(ctx context.Context, m *core.Message) (*core.Message, error) {
		return core.ErrorResponse(m.ID, core.NewError(core.CodeInvalidParams, "bad")), nil
	}
	failed := func(ctx context.Context, m *core.Message) (*core.Message, error) {
		return nil, core.NewError(core.CodeUpstreamError, "upstream gone")
	}
	timeout := func(ctx context.Context, m *core.Message) (*core.Message, error) {
		return nil, context.DeadlineExceeded
	}
	call := decode(t, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}`)
	odd := decode(t, `{"jsonrpc":"2.0","id":2,"method":"x-secret-123/whatever"}`)
	note := decode(t, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	for _, c := range []struct {
		tr *metrics.Traffic
		h  core.Handler
		m  *core.Message
		n  int
	}{{tr, ok, call, 3}, {again, ok, call, 2}, {tr, rpcErr, call, 1}, {tr, failed, call, 4}, {tr, timeout, call, 1}, {tr, ok, odd, 2}, {tr, ok, note, 7}} {
		h := c.tr.Stage("r").ClientToServer(c.h)
		for range c.n {
			if _, err := h(t.Context(), c.m); err != nil && !errors.Is(err, context.DeadlineExceeded) && core.AsError(err).Code != core.CodeUpstreamError {
				t.Fatal(err)
			}
		}
	}
	fams, err := metricstest.Gather(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		method, outcome string
		want            float64
	}{{"tools/call", "ok", 5}, {"tools/call", "error", 1}, {"tools/call", "failed", 4}, {"tools/call", "timeout", 1}, {"other", "ok", 2}} {
		if v, _ := fams.Value("mcpgate_requests_total", "route", "r", "method", w.method, "outcome", w.outcome); v != w.want {
			t.Errorf("requests_total{%s,%s} = %v, want %v", w.method, w.outcome, v, w.want)
		}
	}
	if v, _ := fams.Value("mcpgate_request_duration_seconds", "route", "r", "method", "tools/call"); v != 11 {
		t.Errorf("request_duration_seconds{tools/call} count = %v, want 11", v)
	}
	for _, m := range fams["mcpgate_requests_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "method" && l.GetValue() == "x-secret-123/whatever" {
				t.Error("an unknown method became a label value")
			}
		}
	}
}

// TestTrafficSessionsAndDecisions: the session hooks, refusals and
// decisions land in their series with bounded labels.
func TestTrafficSessionsAndDecisions(t *testing.T) {
	t.Parallel()
	reg := metrics.New()
	tr, err := metrics.NewTraffic(reg)
	if err != nil {
		t.Fatal(err)
	}
	h := tr.Hooks()
	a := &core.SessionInfo{ID: "a", Route: "r", Era: core.EraLegacy, Principal: "alice"}
	b := &core.SessionInfo{ID: "b", Route: "r", Era: core.EraLegacy, Principal: "bob"}
	h.Admitted(a, "")
	h.Admitted(b, "restart")
	h.Ended(a, session.ReasonDeleted)
	ctx := context.Background()
	for _, check := range []string{pipeline.CheckCap, pipeline.CheckCap, pipeline.CheckHijack, pipeline.CheckRate, pipeline.CheckAuth, pipeline.CheckParse} {
		tr.Refused(ctx, &pipeline.Event{Kind: pipeline.Refused, Route: "r", Check: check, Principal: "mallory"})
	}
	tr.Decided(ctx, &pipeline.Event{Kind: pipeline.Decision, Quota: "q", Limit: "tool:search", Action: pipeline.ActionRefused})
	tr.Decided(ctx, &pipeline.Event{Kind: pipeline.Decision, Quota: "q", Limit: "requests", Action: pipeline.ActionWarning})
	tr.Decided(ctx, &pipeline.Event{Kind: pipeline.Decision, Policy: "p", Rule: "tools.deny[0]", Action: pipeline.ActionDeny})
	tr.Decided(ctx, &pipeline.Event{Kind: pipeline.Decision, Policy: "p", Action: pipeline.ActionRedact})
	fams, err := metricstest.Gather(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"mcpgate_sessions_active", []string{"route", "r", "era", "legacy"}, 1},
		{"mcpgate_sessions_created_total", []string{"route", "r", "era", "legacy"}, 1},
		{"mcpgate_sessions_ended_total", []string{"route", "r", "reason", "deleted"}, 1},
		{"mcpgate_session_rejections_total", []string{"route", "r", "cause", "cap"}, 2},
		{"mcpgate_session_rejections_total", []string{"route", "r", "cause", "hijack"}, 1},
		{"mcpgate_session_rejections_total", []string{"route", "r", "cause", "creation_rate"}, 1},
		{"mcpgate_session_rejections_total", []string{"route", "r", "cause", "auth"}, 1},
		{"mcpgate_quota_exceeded_total", []string{"quota", "q", "kind", "tool"}, 1},
		{"mcpgate_policy_denials_total", []string{"policy", "p"}, 1},
	} {
		if v, _ := fams.Value(w.name, w.labels...); v != w.want {
			t.Errorf("%s%v = %v, want %v", w.name, w.labels, v, w.want)
		}
	}
	if n := len(fams["mcpgate_session_rejections_total"].GetMetric()); n != 4 {
		t.Errorf("%d rejection series, want 4 (a parse refusal is not a session rejection)", n)
	}
	if _, ok := fams.Value("mcpgate_quota_exceeded_total", "kind", "requests"); ok {
		t.Error("a warning counted as a quota exceeded")
	}
}

// BenchmarkRequestMetrics is the metrics stage's cost per request: a
// tools/call through the interceptor to a terminal that answers at once.
func BenchmarkRequestMetrics(b *testing.B) {
	tr, err := metrics.NewTraffic(metrics.New())
	if err != nil {
		b.Fatal(err)
	}
	resp := decode(b, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	terminal := func(context.Context, *core.Message) (*core.Message, error) { return resp, nil }
	m := decode(b, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}`)
	b.Run("bare", func(b *testing.B) {
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			_, _ = terminal(ctx, m)
		}
	})
	b.Run("metrics", func(b *testing.B) {
		h := tr.Stage("r").ClientToServer(terminal)
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			_, _ = h(ctx, m)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		h := tr.Stage("r").ClientToServer(terminal)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			for pb.Next() {
				_, _ = h(ctx, m)
			}
		})
	})
}
