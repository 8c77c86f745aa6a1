package sessiontools

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/interceptors/quota"
	"github.com/mcpgate/mcpgate/internal/pipeline"
	"github.com/mcpgate/mcpgate/internal/testutil/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// server is the terminal of a test chain: tools/list in two pages (the
// second named by cursor "2"), an upstream tool named as ours on the
// first; tools/call answered; a failure when fail is set.
type server struct {
	mu   sync.Mutex
	fail bool
}

func (sv *server) handle(_ context.Context, m *core.Message) (*core.Message, error) {
	sv.mu.Lock()
	fail := sv.fail
	sv.mu.Unlock()
	if fail {
		return nil, core.NewError(core.CodeUpstreamError, "upstream unavailable")
	}
	switch m.Method {
	case "tools/list":
		if strings.Contains(string(m.Params), `"cursor":"2"`) {
			return core.ResultResponse(m.ID, []byte(`{"tools":[{"name":"c","inputSchema":{"type":"object"}}]}`)), nil
		}
		return core.ResultResponse(m.ID, []byte(`{"tools":[{"name":"a","inputSchema":{"type":"object"}},{"name":"mcpgate_x","inputSchema":{"type":"object"}},{"name":"b","inputSchema":{"type":"object"}}],"nextCursor":"2"}`)), nil
	case "resources/list":
		return core.ErrorResponse(m.ID, core.NewError(core.CodeMethodNotFound, "method not found")), nil
	}
	return core.ResultResponse(m.ID, []byte(`{"content":[{"type":"text","text":"ok"}]}`)), nil
}

// notifier is the session's own stream, as the frontend's would be.
type notifier struct {
	mu   sync.Mutex
	got  []string
	note chan struct{}
}

func (n *notifier) Deliver(m *core.Message) {
	n.mu.Lock()
	n.got = append(n.got, string(m.Params))
	n.mu.Unlock()
	select {
	case n.note <- struct{}{}:
	default:
	}
}

type notifierCtx struct {
	context.Context
	n *notifier
}

func (c notifierCtx) Value(k any) any {
	if _, ok := k.(core.SessionNotifierKey); ok {
		return c.n
	}
	return c.Context.Value(k)
}

type harness struct {
	t     testing.TB
	sv    *server
	st    *Stage
	chain *pipeline.Chain
	info  *core.SessionInfo
	n     *notifier
	id    int
}

func newHarness(t testing.TB, quotas ...config.Quota) *harness {
	t.Helper()
	h := &harness{t: t, sv: &server{}, n: &notifier{note: make(chan struct{}, 8)}}
	var q *quota.Stage
	if len(quotas) > 0 {
		var err error
		if q, err = quota.New(quota.Options{Route: "r", Quotas: quotas, Meters: quota.NewMeters(false, 0, nil)}); err != nil {
			t.Fatal(err)
		}
	}
	idle, ttl := time.Hour, time.Duration(0)
	var mu sync.Mutex
	h.st = New(Options{Route: "r", Quota: q, Every: 20 * time.Millisecond,
		Limits: func(*core.SessionInfo) (time.Duration, time.Duration, bool) {
			mu.Lock()
			defer mu.Unlock()
			return idle, ttl, true
		},
		Shorten: func(_ *core.SessionInfo, i, l time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			if i > 0 && i < idle {
				idle = i
			}
			if l > 0 && (ttl == 0 || l < ttl) {
				ttl = l
			}
		},
		Readiness: func() any { return map[string]string{"status": "ready"} },
	})
	stages := []pipeline.Stage{h.st.Stage(), h.st.Health().Stage()}
	if q != nil {
		stages = append(stages, q.Stage())
	}
	c, err := pipeline.Build("r", h.sv.handle, nil, stages)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	h.chain = c
	h.info = &core.SessionInfo{ID: "session-1", Route: "r", Era: core.EraLegacy, Principal: "alice", Created: time.Now(), Stages: new(core.StageHolder)}
	return h
}

func (h *harness) send(method, params string) (*core.Message, error) {
	h.t.Helper()
	h.id++
	raw := `{"jsonrpc":"2.0","id":` + string(rune('0'+h.id%10)) + `,"method":"` + method + `"`
	if params != "" {
		raw += `,"params":` + params
	}
	m, err := core.Decode([]byte(raw + `}`))
	if err != nil {
		h.t.Fatal(err)
	}
	m.Session, m.Direction, m.Era = h.info, core.ClientToServer, h.info.Era
	h.chain.Enter(h.info)
	return h.chain.ClientToServer(notifierCtx{context.Background(), h.n}, m)
}

func (h *harness) names(cursor string) (names []string, next string) {
	h.t.Helper()
	params := `{}`
	if cursor != "" {
		params = `{"cursor":"` + cursor + `"}`
	}
	resp, err := h.send("tools/list", params)
	if err != nil {
		h.t.Fatal(err)
	}
	var r struct {
		Tools []struct {
			Name string `json:"name"`
		} `json:"tools"`
		NextCursor string `json:"nextCursor"`
	}
	if err := json.Unmarshal(resp.Result, &r); err != nil {
		h.t.Fatalf("%s: %v", resp.Result, err)
	}
	for _, tl := range r.Tools {
		names = append(names, tl.Name)
	}
	return names, r.NextCursor
}

func (h *harness) call(name, args string) (text string, isError bool, structured json.RawMessage) {
	h.t.Helper()
	resp, err := h.send("tools/call", `{"name":"`+name+`","arguments":`+args+`}`)
	if err != nil {
		h.t.Fatal(err)
	}
	var r struct {
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
		IsError    bool            `json:"isError"`
		Structured json.RawMessage `json:"structuredContent"`
	}
	if err := json.Unmarshal(resp.Result, &r); err != nil {
		h.t.Fatalf("%s: %v", resp.Raw, err)
	}
	if len(r.Content) > 0 {
		text = r.Content[0].Text
	}
	return text, r.IsError, r.Structured
}

// TestLists: ours on the last page only, the upstream's mcpgate_ tool
// hidden, the cursor kept; an upstream without resources/list gets ours.
func TestLists(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	first, next := h.names("")
	if !slices.Equal(first, []string{"a", "b"}) || next != "2" {
		t.Fatalf("first page %v next %q", first, next)
	}
	last, next := h.names("2")
	if !slices.Equal(last, []string{"c", ToolStatus, ToolTighten, ToolEnd}) || next != "" {
		t.Fatalf("last page %v next %q", last, next)
	}
	resp, err := h.send("resources/list", `{}`)
	if err != nil || resp.Kind != core.KindResponse || !strings.Contains(string(resp.Result), URISession) || !strings.Contains(string(resp.Result), URIHealth) {
		t.Fatalf("resources/list: %v %s", err, resp.Raw)
	}
}

// TestTightenDenies: a denied tool leaves the lists and its calls get an
// isError result without reaching the server; loosening is refused.
func TestTightenDenies(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config.Quota{Name: "q", Per: "session", ToolCalls: 10})
	if text, isErr, _ := h.call(ToolTighten, `{"deny_tools":["b"],"idle_timeout":"5m","ttl":"1h"}`); isErr {
		t.Fatalf("tighten: %s", text)
	}
	first, _ := h.names("")
	if slices.Contains(first, "b") {
		t.Fatalf("denied tool listed: %v", first)
	}
	if text, isErr, _ := h.call("b", `{}`); !isErr || !strings.Contains(text, "denied") {
		t.Fatalf("denied call: %q %v", text, isErr)
	}
	for _, args := range []string{`{"idle_timeout":"6m"}`, `{"ttl":"2h"}`, `{"quotas":[{"limit":"tool_calls","max":11}]}`} {
		if text, isErr, _ := h.call(ToolTighten, args); !isErr || !strings.Contains(text, "raise") {
			t.Errorf("loosening %s: %q %v", args, text, isErr)
		}
	}
	for _, args := range []string{`{}`, `{"nope":1}`, `{"deny_tools":["mcpgate_session_end"]}`, `{"ttl":"-1s"}`, `{"quotas":[{"limit":"tool_calls","max":0}]}`} {
		if text, isErr, _ := h.call(ToolTighten, args); !isErr || !strings.HasPrefix(text, "refused") {
			t.Errorf("invalid %s: %q %v", args, text, isErr)
		}
	}
	_, _, sc := h.call(ToolStatus, `{}`)
	var s Status
	if err := json.Unmarshal(sc, &s); err != nil {
		t.Fatal(err)
	}
	if s.IdleTimeout != "5m0s" || s.TTL != "1h0m0s" || !slices.Equal(s.DeniedTools, []string{"b"}) || len(s.Quotas) != 1 || s.Quotas[0].Used != 0 {
		t.Fatalf("status %+v", s)
	}
}

// TestHealthUpdates: a subscriber of mcpgate://health hears when the
// upstream goes down and comes back; one of mcpgate://session when its
// usage changes.
func TestHealthUpdates(t *testing.T) {
	t.Parallel()
	h := newHarness(t, config.Quota{Name: "q", Per: "session", Requests: 100})
	for _, uri := range []string{URIHealth, URISession} {
		if resp, err := h.send("resources/subscribe", `{"uri":"`+uri+`"}`); err != nil || resp.Kind != core.KindResponse {
			t.Fatalf("subscribe %s: %v", uri, err)
		}
	}
	wait := func(what string) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			h.n.mu.Lock()
			for _, g := range h.n.got {
				if strings.Contains(g, what) {
					h.n.got = nil
					h.n.mu.Unlock()
					return
				}
			}
			h.n.mu.Unlock()
			select {
			case <-h.n.note:
			case <-deadline:
				t.Fatalf("no update of %s", what)
			}
		}
	}
	if _, err := h.send("tools/call", `{"name":"a"}`); err != nil {
		t.Fatal(err)
	}
	wait(URIHealth) // unknown → up
	h.sv.mu.Lock()
	h.sv.fail = true
	h.sv.mu.Unlock()
	if _, err := h.send("tools/call", `{"name":"a"}`); err == nil {
		t.Fatal("no failure")
	}
	wait(URIHealth) // down
	if got := h.st.Health().Read(); got.Status != "down" || got.ConsecutiveFailures != 1 || !strings.Contains(got.LastError, "upstream unavailable") {
		t.Fatalf("health %+v", got)
	}
	h.sv.mu.Lock()
	h.sv.fail = false
	h.sv.mu.Unlock()
	if _, err := h.send("tools/call", `{"name":"a"}`); err != nil {
		t.Fatal(err)
	}
	wait(URIHealth) // up again
	if _, err := h.send("tools/call", `{"name":"a"}`); err != nil {
		t.Fatal(err)
	}
	wait(URISession)
}

// TestEnd: the end runs after the response, and later requests are
// refused as for an unknown session.
func TestEnd(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ended := make(chan struct{})
	h.st.opts.End = func(*core.SessionInfo) { close(ended) }
	if _, isErr, sc := h.call(ToolEnd, `{}`); isErr || !strings.Contains(string(sc), `"ended":true`) {
		t.Fatalf("end: %s", sc)
	}
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("not ended")
	}
	if _, err := h.send("tools/list", `{}`); core.AsError(err).Code != core.CodeSessionNotFound {
		t.Fatalf("after the end: %v", err)
	}
}

// FuzzParseTighten: any arguments give a tightening or an error, never a
// panic, and a tightening asks for something valid.
func FuzzParseTighten(f *testing.F) {
	for _, s := range []string{`{}`, `{"deny_tools":["a*"]}`, `{"idle_timeout":"1m","ttl":"2h"}`, `{"quotas":[{"quota":"q","limit":"requests","max":3}]}`, `{"deny_tools":["["]}`, `null`, `[]`, `{"ttl":"1e9h"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tt, err := ParseTighten(b)
		if err != nil {
			return
		}
		if len(tt.Quotas) == 0 && len(tt.DenyTools) == 0 && tt.idle <= 0 && tt.ttl <= 0 {
			t.Fatalf("%q: an empty tightening", b)
		}
		for _, q := range tt.Quotas {
			if q.Max < 1 || q.Limit == "" {
				t.Fatalf("%q: invalid quota change %+v", b, q)
			}
		}
	})
}

// FuzzEdit: editing any list result gives valid JSON holding ours on a
// last page, or leaves it alone.
func FuzzEdit(f *testing.F) {
	for _, s := range []string{`{"tools":[{"name":"a"}]}`, `{"tools":[{"name":"mcpgate_x"},{"Name":"mcpgate_y"}],"nextCursor":"x"}`, `{}`, `{"tools":null,"tools":[]}`, `[]`, `{"nextCursor":null}`} {
		f.Add([]byte(s))
	}
	s := New(Options{Route: "r"})
	st := &state{}
	f.Fuzz(func(t *testing.T, b []byte) {
		out, ok := s.edit(st, b, listTools, core.EraModern)
		if !ok {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("%q → invalid %q", b, out)
		}
		var r struct {
			Tools []map[string]any `json:"tools"`
		}
		_ = json.Unmarshal(out, &r)
		for _, tl := range r.Tools {
			if n, _ := tl["name"].(string); strings.HasPrefix(n, toolPrefix) && n != ToolStatus && n != ToolTighten && n != ToolEnd {
				t.Fatalf("%q → lists %q", b, n)
			}
		}
	})
}

// BenchmarkStage is the stage's cost per request it only passes on (a
// tools/call of an upstream tool), and per tools/list page it merges,
// against the same chain without it (off).
func BenchmarkStage(b *testing.B) {
	for _, tt := range []struct {
		method string
		off    bool // the chain without the stages: the baseline
	}{{"tools/call", true}, {"tools/call", false}, {"tools/list", true}, {"tools/list", false}} {
		method := tt.method
		name := strings.ReplaceAll(method, "/", "_")
		if tt.off {
			name += "/off"
		}
		b.Run(name, func(b *testing.B) {
			h := newHarness(b)
			if tt.off {
				c, err := pipeline.Build("r", h.sv.handle, nil, nil)
				if err != nil {
					b.Fatal(err)
				}
				h.chain = c
			}
			params := []byte(`{"name":"a","arguments":{}}`)
			if method == "tools/list" {
				params = []byte(`{"cursor":"2"}`)
			}
			m, _ := core.Decode([]byte(`{"jsonrpc":"2.0","id":1,"method":"` + method + `","params":` + string(params) + `}`))
			m.Session, m.Direction, m.Era = h.info, core.ClientToServer, core.EraLegacy
			h.chain.Enter(h.info)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := h.chain.ClientToServer(ctx, m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
