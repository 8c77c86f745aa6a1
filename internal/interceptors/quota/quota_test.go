package quota

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/meter"
	"github.com/mcpgate/mcpgate/internal/pipeline"
)

// harness is a chain of the quota stage alone in front of a terminal that
// answers tools/call with a text of the size its argument n asks for.
type harness struct {
	t      testing.TB
	chain  *pipeline.Chain
	stage  *Stage
	mu     sync.Mutex
	events []pipeline.Event
	ended  []string
	hold   chan struct{} // when set, the terminal waits for it
	calls  int
}

func newHarness(t testing.TB, quotas ...config.Quota) *harness {
	t.Helper()
	h := &harness{t: t}
	cfg := &config.Config{Quotas: quotas}
	cfg.SetDefaults()
	for i := range cfg.Quotas {
		q := &cfg.Quotas[i]
		if q.Per == "" {
			q.Per = config.QuotaPerSession
		}
	}
	s, err := New(Options{Route: "r", Quotas: cfg.Quotas, Meters: NewMeters(false, 0, nil),
		End: func(info *core.SessionInfo, reason string) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.ended = append(h.ended, info.ID+":"+reason)
		},
		Observe: func(_ context.Context, _ *core.SessionInfo, ev *pipeline.Event) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.events = append(h.events, *ev)
		}})
	if err != nil {
		t.Fatal(err)
	}
	h.stage = s
	h.chain = h.build()
	return h
}

func (h *harness) build() *pipeline.Chain {
	ch, err := pipeline.Build("r", h.terminal, nil, []pipeline.Stage{h.stage.Stage()})
	if err != nil {
		h.t.Fatal(err)
	}
	return ch
}

func (h *harness) terminal(ctx context.Context, m *core.Message) (*core.Message, error) {
	h.mu.Lock()
	h.calls++
	hold := h.hold
	h.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	var p struct {
		Arguments struct {
			N int `json:"n"`
		} `json:"arguments"`
	}
	_ = json.Unmarshal(m.Params, &p)
	text, _ := json.Marshal(strings.Repeat("x", p.Arguments.N))
	return core.ResultResponse(m.ID, []byte(`{"content":[{"type":"text","text":`+string(text)+`}]}`)), nil
}

func session(id, principal, tenant string) *core.SessionInfo {
	return &core.SessionInfo{ID: id, Route: "r", Principal: principal, Tenant: tenant, RemoteAddr: "10.0.0.1:1", Stages: new(core.StageHolder)}
}

// send passes one request of s through the chain.
func (h *harness) send(s *core.SessionInfo, method, name string, n int) (*core.Message, error) {
	h.t.Helper()
	params := `{}`
	if name != "" {
		params = `{"name":"` + name + `","arguments":{"n":` + strconv.Itoa(n) + `}}`
	}
	m, err := core.Decode([]byte(`{"jsonrpc":"2.0","id":1,"method":"` + method + `","params":` + params + `}`))
	if err != nil {
		h.t.Fatal(err)
	}
	m.Session, m.Direction = s, core.ClientToServer
	h.chain.Enter(s)
	return h.chain.ClientToServer(context.Background(), m)
}

// refused sends a request and returns its refusal (Limit "" for none).
func (h *harness) refused(s *core.SessionInfo, method, name string, n int) Refusal {
	h.t.Helper()
	resp, err := h.send(s, method, name, n)
	return refusalOf(h.t, resp, err)
}

// refusalOf is the refusal in a response or error ("" limit: none).
func refusalOf(t testing.TB, resp *core.Message, err error) Refusal {
	t.Helper()
	var r Refusal
	var e *core.Error
	switch {
	case errors.As(err, &e):
		if d, ok := e.Data.(Refusal); ok {
			return d
		}
		t.Fatalf("error without a refusal: %v", err)
	case err != nil:
		t.Fatalf("error: %v", err)
	case resp != nil && strings.Contains(string(resp.Result), `"isError":true`):
		var res struct {
			Meta map[string]Refusal `json:"_meta"`
		}
		if err := json.Unmarshal(resp.Result, &res); err != nil {
			t.Fatal(err)
		}
		return res.Meta[metaKey]
	}
	return r
}

// TestLimits: a table of every counted limit kind, per session and per
// principal, through the chain.
func TestLimits(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		q      config.Quota
		method string
		tool   string
		n      int // result size
		admit  int // requests admitted before the first refusal
		limit  string
	}{
		{"requests", config.Quota{Requests: 3}, "tools/list", "", 0, 3, LimitRequests},
		{"tool_calls", config.Quota{ToolCalls: 2}, "tools/call", "echo", 0, 2, LimitToolCalls},
		{"tools", config.Quota{Tools: map[string]int64{"echo": 4}}, "tools/call", "echo", 0, 4, "tool:echo"},
		{"result_bytes", config.Quota{ResultBytes: 1000}, "tools/call", "echo", 300, 2, LimitResultBytes},
		{"result_tokens bytes4", config.Quota{ResultTokens: 100, Tokenizer: "bytes4"}, "tools/call", "echo", 120, 3, LimitResultTokens},
		{"per principal", config.Quota{Per: "principal", Window: time.Hour, Requests: 2}, "tools/list", "", 0, 2, LimitRequests},
		{"per tenant", config.Quota{Per: "tenant", Window: time.Hour, ToolCalls: 5}, "tools/call", "echo", 0, 5, LimitToolCalls},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.q.Name = "q"
			h := newHarness(t, tt.q)
			s := session("s1", "alice", "acme")
			for i := range tt.admit {
				resp, err := h.send(s, tt.method, tt.tool, tt.n)
				if r := refusalOf(t, resp, err); r.Limit != "" {
					t.Fatalf("request %d refused: %+v", i+1, r)
				}
			}
			resp, err := h.send(s, tt.method, tt.tool, tt.n)
			r := refusalOf(t, resp, err)
			if r.Quota != "q" || r.Limit != tt.limit {
				t.Fatalf("refusal = %+v, want q/%s", r, tt.limit)
			}
			if tt.method == "tools/call" && err != nil {
				t.Errorf("tools/call refused with an error, want an isError result: %v", err)
			}
			if tt.method != "tools/call" {
				var e *core.Error
				if !errors.As(err, &e) || e.Code != core.CodeSessionCap || e.HTTPStatus() != 200 {
					t.Errorf("refusal error = %v, want -32013 inside the session", err)
				}
			}
			// A second session of the same principal shares a principal's
			// or tenant's budget, not a session's.
			resp, err = h.send(session("s2", "alice", "acme"), tt.method, tt.tool, tt.n)
			shared := tt.q.Per != "" && tt.q.Per != config.QuotaPerSession
			if got := refusalOf(t, resp, err).Limit != ""; got != shared {
				t.Errorf("second session refused = %v, want %v", got, shared)
			}
		})
	}
}

// TestRollingWindowResets: a principal's budget refills as its window
// rolls, and the refusal says when.
func TestRollingWindowResets(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, config.Quota{Name: "hourly", Per: "principal", Window: time.Hour, ToolCalls: 2})
		s := session("s", "alice", "")
		h.send(s, "tools/call", "echo", 0)
		time.Sleep(30 * time.Minute)
		h.send(s, "tools/call", "echo", 0)
		resp, err := h.send(s, "tools/call", "echo", 0)
		r := refusalOf(t, resp, err)
		if r.ResetsInSeconds == nil || *r.ResetsInSeconds < 30*60 || *r.ResetsInSeconds > 33*60 {
			t.Fatalf("refusal = %+v, want a reset in 30-33 minutes", r)
		}
		time.Sleep(time.Duration(*r.ResetsInSeconds) * time.Second)
		resp, err = h.send(s, "tools/call", "echo", 0)
		if r := refusalOf(t, resp, err); r.Limit != "" {
			t.Fatalf("after the reset: %+v", r)
		}
	})
}

// TestConcurrentAndCallTimeout: requests in flight are capped and given
// back when they finish; call_timeout cuts a call off with a refusal
// naming it, and its place is given back.
func TestConcurrentAndCallTimeout(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, config.Quota{Name: "c", Concurrent: 1, CallTimeout: time.Second})
		h.hold = make(chan struct{})
		s := session("s", "alice", "")
		done := make(chan Refusal)
		go func() {
			resp, err := h.send(s, "tools/call", "echo", 0)
			done <- refusalOf(t, resp, err)
		}()
		synctest.Wait()
		resp, err := h.send(s, "tools/call", "echo", 0)
		if r := refusalOf(t, resp, err); r.Limit != LimitConcurrent {
			t.Fatalf("second in flight: %+v", r)
		}
		if r := <-done; r.Limit != LimitCallTimeout || !strings.Contains(r.Message, "cut off") {
			t.Fatalf("held call = %+v, want cut off at call_timeout", r)
		}
		close(h.hold)
		if r := h.refused(s, "tools/call", "echo", 0); r.Limit != "" {
			t.Fatalf("after the cut off: %+v", r)
		}
	})
}

// TestSessionTime: a session is ended with reason quota when its
// session_time is spent, by its timer or by its next request.
func TestSessionTime(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, config.Quota{Name: "st", SessionTime: time.Hour})
		s := session("s", "alice", "")
		if r := h.refused(s, "tools/list", "", 0); r.Limit != "" {
			t.Fatal(r)
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		h.mu.Lock()
		ended := append([]string(nil), h.ended...)
		h.mu.Unlock()
		if len(ended) != 1 || ended[0] != "s:quota" {
			t.Fatalf("ended = %v", ended)
		}
		_, err := h.send(s, "tools/list", "", 0)
		var e *core.Error
		if !errors.As(err, &e) || e.HTTPStatus() != 404 || !strings.Contains(e.Message, "session_time") {
			t.Fatalf("a request after session_time: %v", err)
		}
	})
}

// TestWarnAndEvents: warn_at is reported once, and every decision is an
// event naming the quota.
func TestWarnAndEvents(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config.Quota{Name: "w", Requests: 4, WarnAt: 0.5})
	s := session("s", "alice", "")
	for range 5 {
		h.send(s, "ping", "", 0)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var got []string
	for _, ev := range h.events {
		got = append(got, ev.Action+":"+ev.Quota+":"+ev.Limit)
	}
	want := []string{"warning:w:requests", "refused:w:requests"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("events = %v, want %v", got, want)
	}
}

// TestWarnOnResults: a result budget warns when a settled result reaches
// the threshold, not when an estimate is held.
func TestWarnOnResults(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config.Quota{Name: "b", ResultBytes: 1000, WarnAt: 0.5})
	s := session("s", "alice", "")
	h.send(s, "tools/call", "echo", 300) // ~330 bytes of result
	h.send(s, "tools/call", "echo", 300) // estimate held: not a warning yet; settled: ~660
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.events) != 1 || h.events[0].Action != pipeline.ActionWarning || h.events[0].Limit != LimitResultBytes || h.events[0].Usage < 500 {
		t.Errorf("events = %+v, want one result_bytes warning past 500", h.events)
	}
}

// TestTenantlessSessions: a session in no tenant is outside every tenant
// budget.
func TestTenantlessSessions(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config.Quota{Name: "t", Per: "tenant", Window: time.Hour, Requests: 1})
	for i := range 3 {
		if r := h.refused(session("s"+strconv.Itoa(i), "p"+strconv.Itoa(i), ""), "ping", "", 0); r.Limit != "" {
			t.Fatalf("session %d in no tenant refused: %+v", i, r)
		}
	}
}

// TestReloadKeepsUsage: a session moving to a chain rebuilt with the same
// quota keeps its usage; principal budgets are the gateway's (Meters).
func TestReloadKeepsUsage(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config.Quota{Name: "r", Requests: 2})
	s := session("s", "alice", "")
	h.send(s, "ping", "", 0)
	h.send(s, "ping", "", 0)
	h.chain = h.build() // a reload
	if r := h.refused(s, "ping", "", 0); r.Limit != LimitRequests {
		t.Errorf("after the reload: %+v, want the spent budget kept", r)
	}
}

// TestNoQuotaNoStage: a route no quota matches has no quota stage.
func TestNoQuotaNoStage(t *testing.T) {
	t.Parallel()
	s, err := New(Options{Route: "other", Quotas: []config.Quota{{Name: "q", Requests: 1, Match: config.QuotaMatch{Routes: []string{"r"}}}}})
	if err != nil || s != nil {
		t.Fatalf("New = %v, %v; want no stage", s, err)
	}
	st := s.Stage()
	if st.ClientToServer != nil || st.Session != nil {
		t.Error("the nil stage has interceptors")
	}
}

func FuzzCountTokens(f *testing.F) {
	f.Add([]byte(`{"content":[{"type":"text","text":"hello"},{"type":"resource","resource":{"text":"more"}}]}`))
	f.Add([]byte(`{"contents":[{"uri":"x","text":"body"}]}`))
	f.Add([]byte(`{"messages":[{"role":"user","content":{"type":"text","text":"hi"}},{"content":[{"type":"text","text":"a b"}]}]}`))
	tok := mustTokens(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		if n := countTokens(tok, b); n < 0 || n > int64(len(b)) {
			t.Errorf("countTokens(%d bytes) = %d", len(b), n)
		}
	})
}

// TestStoreDown: while a shared store cannot answer, fail-closed refuses
// with 503 and Retry-After, fail-open admits uncounted.
func TestStoreDown(t *testing.T) {
	t.Parallel()
	for _, failOpen := range []bool{false, true} {
		rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 50 * time.Millisecond, DisableIdentity: true})
		t.Cleanup(func() { _ = rdb.Close() })
		ms := NewMeters(failOpen, 0, nil)
		ms.Bind(func(name string, spec meter.Spec) meter.Meter {
			return meter.NewRedis(context.Background(), rdb, "x:", name, spec)
		})
		cfg := &config.Config{Quotas: []config.Quota{{Name: "p", Per: "principal", Window: time.Hour, Requests: 1}}}
		cfg.SetDefaults()
		s, err := New(Options{Route: "r", Quotas: cfg.Quotas, Meters: ms})
		if err != nil {
			t.Fatal(err)
		}
		h := &harness{t: t, stage: s}
		h.chain = h.build()
		for range 2 {
			_, err := h.send(session("s", "alice", ""), "ping", "", 0)
			var e *core.Error
			switch {
			case failOpen && err != nil:
				t.Errorf("fail-open: %v", err)
			case !failOpen && (!errors.As(err, &e) || e.HTTPStatus() != 503 || e.Header.Get("Retry-After") == ""):
				t.Errorf("fail-closed: %v, want 503 with Retry-After", err)
			}
		}
	}
}

// TestReloadLowersLimit: a reload that lowers a limit applies it to what
// was used already, per session and per principal.
func TestReloadLowersLimit(t *testing.T) {
	t.Parallel()
	ms := NewMeters(false, 0, nil)
	build := func(limit int64) *harness {
		h := &harness{t: t}
		cfg := &config.Config{Quotas: []config.Quota{
			{Name: "s", Requests: limit},
			{Name: "p", Per: "principal", Window: time.Hour, ToolCalls: limit},
		}}
		cfg.SetDefaults()
		s, err := New(Options{Route: "r", Quotas: cfg.Quotas, Meters: ms})
		if err != nil {
			t.Fatal(err)
		}
		h.stage = s
		h.chain = h.build()
		return h
	}
	h := build(10)
	s := session("s", "alice", "")
	for range 3 {
		if r := h.refused(s, "tools/call", "echo", 0); r.Limit != "" {
			t.Fatal(r)
		}
	}
	h2 := build(3)
	if r := h2.refused(s, "tools/call", "echo", 0); r.Quota != "s" || r.Limit != LimitRequests || r.Usage != 4 {
		t.Errorf("after lowering the session's limit: %+v", r)
	}
	if r := h2.refused(session("s2", "alice", ""), "tools/call", "echo", 0); r.Quota != "p" || r.Usage != 4 {
		t.Errorf("after lowering the principal's limit: %+v", r)
	}
}

// TestModernRetryIsOneCall: a 2026-07-28 retry of a call (with the
// requestState of its input_required result) is a request, not another
// tool call.
func TestModernRetryIsOneCall(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config.Quota{Name: "c", ToolCalls: 1, Requests: 3})
	s := session("s", "alice", "")
	send := func(params string) Refusal {
		m, err := core.Decode([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":` + params + `}`))
		if err != nil {
			t.Fatal(err)
		}
		m.Session, m.Direction, m.Era = s, core.ClientToServer, core.EraModern
		h.chain.Enter(s)
		resp, err := h.chain.ClientToServer(context.Background(), m)
		return refusalOf(t, resp, err)
	}
	if r := send(`{"name":"echo"}`); r.Limit != "" {
		t.Fatal(r)
	}
	if r := send(`{"name":"echo","requestState":"abc","inputResponses":{}}`); r.Limit != "" {
		t.Fatalf("the retry was refused: %+v", r)
	}
	if r := send(`{"name":"echo"}`); r.Limit != LimitToolCalls {
		t.Fatalf("a second call: %+v, want tool_calls refused", r)
	}
}

// TestUsage: a session's usage of every limit that applies to it, its own
// and its principal's.
func TestUsage(t *testing.T) {
	t.Parallel()
	h := newHarness(t,
		config.Quota{Name: "s", Requests: 10, ToolCalls: 5},
		config.Quota{Name: "p", Per: "principal", Window: time.Hour, ResultBytes: 10000})
	s := session("s", "alice", "acme")
	h.send(s, "tools/call", "echo", 100)
	h.send(s, "tools/list", "", 0)
	got, err := h.stage.Usage(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, u := range got {
		lines = append(lines, u.Quota+"/"+u.Limit+"/"+u.Key+"="+strconv.FormatInt(u.Used, 10)+" of "+strconv.FormatInt(u.Max, 10))
	}
	want := []string{"s/requests/=2 of 10", "s/tool_calls/=1 of 5", "p/result_bytes/principal:acme/alice=139 of 10000"}
	if strings.Join(lines, ",") != strings.Join(want, ",") {
		t.Errorf("usage = %v, want %v", lines, want)
	}
}

// TestMetrics: refusals, warnings and what was counted, by route, quota
// and limit; a rebuilt chain (a reload) finds its collectors registered.
func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	cfg := &config.Config{Quotas: []config.Quota{{Name: "m", ToolCalls: 2, ResultBytes: 1 << 20, WarnAt: 0.5}}}
	cfg.SetDefaults()
	var h *harness
	for range 2 {
		s, err := New(Options{Route: "r", Quotas: cfg.Quotas, Meters: NewMeters(false, 0, nil), Metrics: reg})
		if err != nil {
			t.Fatal(err)
		}
		h = &harness{t: t, stage: s}
		h.chain = h.build()
	}
	s := session("s", "alice", "")
	for range 3 {
		h.send(s, "tools/call", "echo", 100)
	}
	for _, tt := range []struct {
		name, limit string
		want        float64
	}{
		{"mcpgate_quota_refusals_total", "tool_calls", 1},
		{"mcpgate_quota_warnings_total", "tool_calls", 1},
		{"mcpgate_quota_usage_total", "tool_calls", 2},
		{"mcpgate_quota_usage_total", "result_bytes", 2 * 139},
	} {
		got := 0.0
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != tt.name {
				continue
			}
			for _, m := range mf.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if labels["route"] == "r" && labels["quota"] == "m" && labels["limit"] == tt.limit {
					got = m.GetCounter().GetValue()
				}
			}
		}
		if got != tt.want {
			t.Errorf("%s{limit=%q} = %v, want %v", tt.name, tt.limit, got, tt.want)
		}
	}
}

// TestTighten: a session lowers its own limits (never raises them), the
// quota stage enforces the lower max for it alone, usage reports it, and
// a reload keeps it.
func TestTighten(t *testing.T) {
	t.Parallel()
	h := newHarness(t,
		config.Quota{Name: "s", Requests: 10, ToolCalls: 5},
		config.Quota{Name: "p", Per: "principal", Window: time.Hour, ToolCalls: 50})
	s := session("s", "alice", "acme")
	other := session("o", "alice", "acme")
	h.send(s, "tools/call", "echo", 1)
	h.send(other, "tools/call", "echo", 1)
	if err := h.stage.Tighten(s, []Tightening{{Quota: "s", Limit: LimitToolCalls, Max: 6}}); !errors.Is(err, ErrLoosen) {
		t.Fatalf("raising tool_calls 5 to 6: %v, want ErrLoosen", err)
	}
	if err := h.stage.Tighten(s, []Tightening{{Limit: "nope", Max: 1}}); err == nil || errors.Is(err, ErrLoosen) {
		t.Fatalf("unknown limit: %v", err)
	}
	// Both quotas' tool_calls, at once; a loosening in the same request
	// refuses all of it.
	if err := h.stage.Tighten(s, []Tightening{{Limit: LimitToolCalls, Max: 3}, {Quota: "s", Limit: LimitRequests, Max: 11}}); !errors.Is(err, ErrLoosen) {
		t.Fatalf("mixed: %v", err)
	}
	if err := h.stage.Tighten(s, []Tightening{{Quota: "s", Limit: LimitToolCalls, Max: 3}, {Quota: "p", Limit: LimitToolCalls, Max: 20}}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if r := h.refused(s, "tools/call", "echo", 1); r.Limit != "" {
			t.Fatalf("call %d refused: %+v", i+2, r)
		}
	}
	r := h.refused(s, "tools/call", "echo", 1)
	if r.Limit != LimitToolCalls || r.Max != 3 {
		t.Fatalf("4th call: %+v, want tool_calls max 3", r)
	}
	// The other session of the principal is not bound by it.
	for i := range 4 {
		if r := h.refused(other, "tools/call", "echo", 1); r.Limit != "" {
			t.Fatalf("other session call %d refused: %+v", i+2, r)
		}
	}
	u, err := h.stage.Usage(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range u {
		if x.Limit == LimitToolCalls && (!x.Tightened || x.Max != map[string]int64{"s": 3, "p": 20}[x.Quota]) {
			t.Errorf("usage %+v, want tightened", x)
		}
		if x.Quota == "p" && x.ResetsInSeconds == nil {
			t.Errorf("windowed usage %+v without a reset time", x)
		}
	}
	if err := h.stage.Tighten(s, []Tightening{{Quota: "s", Limit: LimitToolCalls, Max: 4}}); !errors.Is(err, ErrLoosen) {
		t.Fatalf("raising 3 to 4 after tightening: %v", err)
	}
	// A reload keeps the lower max.
	h.chain = h.build()
	if r := h.refused(s, "tools/call", "echo", 1); r.Limit != LimitToolCalls || r.Max != 3 {
		t.Fatalf("after a reload: %+v", r)
	}
}

// TestTightenResultBytes: a lowered result_bytes withholds a result over
// it, and refuses the next call once spent.
func TestTightenResultBytes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config.Quota{Name: "b", ResultBytes: 100000})
	s := session("s", "alice", "")
	h.send(s, "tools/list", "", 0) // the session's state is made as its first message enters
	if err := h.stage.Tighten(s, []Tightening{{Limit: LimitResultBytes, Max: 500}}); err != nil {
		t.Fatal(err)
	}
	if r := h.refused(s, "tools/call", "echo", 300); r.Limit != "" {
		t.Fatalf("first result refused: %+v", r)
	}
	r := h.refused(s, "tools/call", "echo", 300)
	if r.Limit != LimitResultBytes || r.Max != 500 {
		t.Fatalf("second result: %+v, want withheld at 500", r)
	}
	if r := h.refused(s, "tools/call", "echo", 1); r.Limit != LimitResultBytes {
		t.Fatalf("after the budget is spent: %+v", r)
	}
}
