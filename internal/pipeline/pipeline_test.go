package pipeline_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/pipeline"
)

// trace records the order in which interceptors and the terminal see a
// message and its response. Safe for concurrent use.
type trace struct {
	mu    sync.Mutex
	calls []string
}

func (tr *trace) add(s string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.calls = append(tr.calls, s)
}

func (tr *trace) get() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return slices.Clone(tr.calls)
}

// recording returns an interceptor that logs "name>" on the way in and
// "<name" on the way out.
func (tr *trace) recording(name string) core.Interceptor {
	return func(next core.Handler) core.Handler {
		return func(ctx context.Context, m *core.Message) (*core.Message, error) {
			tr.add(name + ">")
			resp, err := next(ctx, m)
			tr.add("<" + name)
			return resp, err
		}
	}
}

func (tr *trace) terminal(resp *core.Message) core.Handler {
	return func(context.Context, *core.Message) (*core.Message, error) {
		tr.add("terminal")
		return resp, nil
	}
}

func request(t *testing.T) *core.Message {
	t.Helper()
	m, err := core.Decode([]byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{}}}`))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestBuildOrdersStagesByOrder(t *testing.T) {
	// want is the trace for stages in pipeline.Order, whatever order they
	// are given in.
	wantFor := func(names ...string) []string {
		var in, out []string
		for _, n := range pipeline.Order {
			if slices.Contains(names, n) {
				in = append(in, n+">")
				out = append([]string{"<" + n}, out...)
			}
		}
		return slices.Concat(in, []string{"terminal"}, out)
	}
	reversed := slices.Clone(pipeline.Order)
	slices.Reverse(reversed)
	tests := []struct {
		name   string
		stages []string
	}{
		{"single", []string{"logging"}},
		{"already in order", pipeline.Order},
		{"reversed", reversed},
		{"shuffled", []string{"policy", "logging", "audit", "auth", "limits"}},
		{"subset out of order", []string{"audit", "logging", "limits"}},
		{"two adjacent swapped", []string{"auth", "logging"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &trace{}
			var stages []pipeline.Stage
			for _, n := range tt.stages {
				stages = append(stages, pipeline.Stage{Name: n, Interceptor: tr.recording(n)})
			}
			given := slices.Clone(stages)
			h, err := buildC2S(tr.terminal(nil), stages)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := h(context.Background(), request(t)); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(wantFor(tt.stages...), tr.get()); diff != "" {
				t.Errorf("call order (-want +got):\n%s", diff)
			}
			for i := range given {
				if stages[i].Name != given[i].Name {
					t.Fatalf("Build reordered the caller's slice: %v", stages)
				}
			}
		})
	}
}

func TestBuildUnknownStage(t *testing.T) {
	tests := []struct {
		name   string
		stages []string
		bad    string
	}{
		{"typo", []string{"loging"}, "loging"},
		{"case matters", []string{"Logging"}, "Logging"},
		{"empty name", []string{""}, ""},
		{"unknown among known", []string{"logging", "ratelimit", "audit"}, "ratelimit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &trace{}
			var stages []pipeline.Stage
			for _, n := range tt.stages {
				stages = append(stages, pipeline.Stage{Name: n, Interceptor: tr.recording(n)})
			}
			h, err := buildC2S(tr.terminal(nil), stages)
			if err == nil {
				t.Fatalf("Build accepted unknown stage %q", tt.bad)
			}
			if h != nil {
				t.Error("Build returned a handler along with its error")
			}
			if !strings.Contains(err.Error(), `"`+tt.bad+`"`) {
				t.Errorf("error %q does not name the unknown stage %q", err, tt.bad)
			}
		})
	}
}

func TestBuildNoStagesReturnsTerminal(t *testing.T) {
	for _, stages := range [][]pipeline.Stage{nil, {}} {
		tr := &trace{}
		want := core.ResultResponse("7", []byte(`{}`))
		h, err := buildC2S(tr.terminal(want), stages)
		if err != nil {
			t.Fatal(err)
		}
		got, err := h(context.Background(), request(t))
		if err != nil || got != want {
			t.Errorf("handler = %v, %v; want the terminal's response", got, err)
		}
		if diff := cmp.Diff([]string{"terminal"}, tr.get()); diff != "" {
			t.Errorf("calls (-want +got):\n%s", diff)
		}
	}
}

// TestBuildSkipsNilInterceptors: a stage that is configured off is
// absent from the chain.
func TestBuildSkipsNilInterceptors(t *testing.T) {
	tr := &trace{}
	h, err := buildC2S(tr.terminal(nil), []pipeline.Stage{
		{Name: "audit", Interceptor: tr.recording("audit")},
		{Name: "auth"},
		{Name: "logging", Interceptor: tr.recording("logging")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h(context.Background(), request(t)); err != nil {
		t.Fatal(err)
	}
	want := []string{"audit>", "logging>", "terminal", "<logging", "<audit"}
	if diff := cmp.Diff(want, tr.get()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

func TestInterceptorShortCircuits(t *testing.T) {
	tr := &trace{}
	denied := core.NewError(core.CodeInvalidRequest, "denied")
	reject := func(next core.Handler) core.Handler {
		return func(ctx context.Context, m *core.Message) (*core.Message, error) {
			tr.add("auth rejects")
			return nil, denied
		}
	}
	h, err := buildC2S(tr.terminal(core.ResultResponse("7", []byte(`{}`))), []pipeline.Stage{
		{Name: "policy", Interceptor: tr.recording("policy")},
		{Name: "auth", Interceptor: reject},
		{Name: "audit", Interceptor: tr.recording("audit")},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := h(context.Background(), request(t))
	if !errors.Is(err, denied) || resp != nil {
		t.Errorf("handler = %v, %v; want nil, the interceptor's error", resp, err)
	}
	// The outer stage sees the rejection; the inner stage and the
	// terminal never see the message.
	want := []string{"audit>", "auth rejects", "<audit"}
	if diff := cmp.Diff(want, tr.get()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

func TestInterceptorObservesAndReplacesResponse(t *testing.T) {
	orig := core.ResultResponse("7", []byte(`{"content":[{"type":"text","text":"secret"}]}`))
	var observed *core.Message
	observe := func(next core.Handler) core.Handler {
		return func(ctx context.Context, m *core.Message) (*core.Message, error) {
			resp, err := next(ctx, m)
			observed = resp
			return resp, err
		}
	}
	redact := func(next core.Handler) core.Handler {
		return func(ctx context.Context, m *core.Message) (*core.Message, error) {
			resp, err := next(ctx, m)
			if err != nil {
				return nil, err
			}
			return core.ResultResponse(resp.ID, []byte(`{"content":[{"type":"text","text":"REDACTED"}]}`)), nil
		}
	}
	tr := &trace{}
	h, err := buildC2S(tr.terminal(orig), []pipeline.Stage{
		{Name: "policy", Interceptor: redact},
		{Name: "logging", Interceptor: observe},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := h(context.Background(), request(t))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"REDACTED"}]}}`
	if diff := cmp.Diff(want, string(resp.Raw)); diff != "" {
		t.Errorf("response (-want +got):\n%s", diff)
	}
	// logging is outside policy, so it sees the replaced response.
	if observed != resp {
		t.Errorf("the outer stage observed %s, want the replaced response", observed.Raw)
	}
}

func TestInterceptorRewritesRequest(t *testing.T) {
	var seen string
	terminal := func(_ context.Context, m *core.Message) (*core.Message, error) {
		seen = m.Name
		return core.ResultResponse(m.ID, []byte(`{}`)), nil
	}
	rename := func(next core.Handler) core.Handler {
		return func(ctx context.Context, m *core.Message) (*core.Message, error) {
			if err := m.Replace([]byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"safe_echo"}}`)); err != nil {
				return nil, err
			}
			return next(ctx, m)
		}
	}
	h, err := buildC2S(terminal, []pipeline.Stage{{Name: "policy", Interceptor: rename}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h(context.Background(), request(t)); err != nil {
		t.Fatal(err)
	}
	if seen != "safe_echo" {
		t.Errorf("terminal saw tool %q, want the rewritten safe_echo", seen)
	}
}

// TestBuiltHandlerConcurrent runs one built chain from many goroutines;
// run with -race.
func TestBuiltHandlerConcurrent(t *testing.T) {
	tr := &trace{}
	var stages []pipeline.Stage
	for _, n := range pipeline.Order {
		stages = append(stages, pipeline.Stage{Name: n, Interceptor: tr.recording(n)})
	}
	h, err := buildC2S(tr.terminal(core.ResultResponse("7", []byte(`{}`))), stages)
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if _, err := h(context.Background(), request(t)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got, want := len(tr.get()), n*(2*len(pipeline.Order)+1); got != want {
		t.Errorf("%d calls recorded, want %d", got, want)
	}
}

func BenchmarkBuiltChain(b *testing.B) {
	pass := func(next core.Handler) core.Handler { return next }
	wrap := func(next core.Handler) core.Handler {
		return func(ctx context.Context, m *core.Message) (*core.Message, error) { return next(ctx, m) }
	}
	resp := core.ResultResponse("7", []byte(`{}`))
	terminal := func(context.Context, *core.Message) (*core.Message, error) { return resp, nil }
	msg, err := core.Decode([]byte(`{"jsonrpc":"2.0","id":7,"method":"ping"}`))
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		ic   core.Interceptor
	}{{"passthrough", pass}, {"wrapping", wrap}} {
		b.Run(bc.name, func(b *testing.B) {
			var stages []pipeline.Stage
			for _, n := range pipeline.Order {
				stages = append(stages, pipeline.Stage{Name: n, Interceptor: bc.ic})
			}
			h, err := buildC2S(terminal, stages)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := h(ctx, msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// buildC2S builds a chain and returns its client→server handler.
func buildC2S(terminal core.Handler, stages []pipeline.Stage) (core.Handler, error) {
	ch, err := pipeline.Build("r", terminal, terminal, stages)
	if err != nil {
		return nil, err
	}
	return ch.ClientToServer, nil
}
