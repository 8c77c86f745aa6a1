package bridge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/goleak"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/testutil/conformancefixture"
	"github.com/mcpgate/mcpgate/internal/upstream"
	"github.com/mcpgate/mcpgate/internal/upstream/bridge"
	"github.com/mcpgate/mcpgate/internal/upstream/httpup"
)

// loWait bounds every blocking step of the legacy-client tests.
const loWait = 15 * time.Second

// loSeen is one request as the modern upstream received it.
type loSeen struct {
	Header http.Header
	Body   map[string]any
	Raw    string
}

// loRecorder records the JSON-RPC requests a modern upstream receives.
type loRecorder struct {
	next http.Handler
	mu   sync.Mutex
	reqs []loSeen
}

func (rec *loRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		var m map[string]any
		_ = json.Unmarshal(body, &m)
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, loSeen{Header: r.Header.Clone(), Body: m, Raw: string(body)})
		rec.mu.Unlock()
	}
	rec.next.ServeHTTP(w, r)
}

// rpc returns the recorded requests of one JSON-RPC method.
func (rec *loRecorder) rpc(method string) []loSeen {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []loSeen
	for _, s := range rec.reqs {
		if s.Body["method"] == method {
			out = append(out, s)
		}
	}
	return out
}

// meta returns params._meta of a recorded request.
func (s loSeen) meta() map[string]any {
	p, _ := s.Body["params"].(map[string]any)
	m, _ := p["_meta"].(map[string]any)
	return m
}

// loSink records what the Conn hands to its session outside requests.
type loSink struct {
	msgs   chan *core.Message
	closed chan error
}

func (s *loSink) Deliver(m *core.Message) { s.msgs <- m }
func (s *loSink) Closed(err error)        { s.closed <- err }

// next waits for the next message with the given method, skipping others.
func (s *loSink) next(t *testing.T, method string) *core.Message {
	t.Helper()
	deadline := time.After(loWait)
	for {
		select {
		case m := <-s.msgs:
			if m.Method == method {
				return m
			}
		case <-deadline:
			t.Fatalf("no %s reached the sink", method)
			return nil
		}
	}
}

// loEnv is a legacy client's Conn on a modern upstream behind the bridge.
type loEnv struct {
	conn upstream.Conn
	sink *loSink
	rec  *loRecorder
	srv  *httptest.Server
}

var loSession = &core.SessionInfo{ID: "legacy-sess-1", Route: "test", Era: core.EraLegacy, ProtocolVersion: core.Version20251125}

// loServe serves h on 127.0.0.1 behind a recorder and opens a legacy Conn
// on it through the bridge (the upstream pinned as modern).
func loServe(t *testing.T, h http.Handler) *loEnv {
	t.Helper()
	rec := &loRecorder{next: h}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	inner, err := httpup.New(httpup.Options{URL: srv.URL}, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	u := bridge.New(inner, bridge.Options{Era: core.EraModern})
	t.Cleanup(func() { _ = u.Close() })
	sink := &loSink{msgs: make(chan *core.Message, 64), closed: make(chan error, 4)}
	conn, err := u.Open(t.Context(), upstream.OpenParams{Session: loSession, Era: core.EraLegacy}, sink)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return &loEnv{conn: conn, sink: sink, rec: rec, srv: srv}
}

// loFixture runs the conformance fixture's stateless (2026-07-28) handler.
// Its watched resource changes every 50ms: tests that wait for a
// notifications/resources/updated wait for a change, not the default tick.
func loFixture(t *testing.T) *loEnv {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return loServe(t, conformancefixture.HandlerWithOptions(ctx, true, &conformancefixture.Options{WatchedInterval: 50 * time.Millisecond}))
}

func loCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), loWait)
	t.Cleanup(cancel)
	return ctx
}

// loMsg decodes a message from the legacy client.
func loMsg(t *testing.T, raw string) *core.Message {
	t.Helper()
	m, err := core.Decode([]byte(raw))
	if err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	m.Direction, m.Era, m.Session = core.ClientToServer, core.EraLegacy, loSession
	return m
}

const loCaps = `{"sampling":{},"elicitation":{"form":{},"url":{}},"roots":{"listChanged":true},"tasks":{"list":{}}}`

// initialize runs the legacy handshake as the frontend does.
func (e *loEnv) initialize(t *testing.T, version string) map[string]any {
	t.Helper()
	resp, err := e.conn.RoundTrip(loCtx(t), loMsg(t, `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"`+version+
		`","capabilities":`+loCaps+`,"clientInfo":{"name":"legacy-client","version":"9.9"}}}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	res := loResult(t, resp)
	if err := e.conn.Send(loCtx(t), loMsg(t, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)); err != nil {
		t.Fatal(err)
	}
	return res
}

func (e *loEnv) call(t *testing.T, raw string, related upstream.Related) *core.Message {
	t.Helper()
	resp, err := e.conn.RoundTrip(loCtx(t), loMsg(t, raw), related)
	if err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	return resp
}

func loResult(t *testing.T, m *core.Message) map[string]any {
	t.Helper()
	if m.Kind != core.KindResponse {
		t.Fatalf("not a result: %s", m.Raw)
	}
	var r map[string]any
	if err := json.Unmarshal(m.Result, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// loText is the text of a tools/call result's first content block.
func loText(t *testing.T, m *core.Message) string {
	t.Helper()
	var r struct {
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
		Messages []struct {
			Content struct {
				Text string `json:"text"`
			} `json:"content"`
		} `json:"messages"`
	}
	if m.Kind != core.KindResponse || json.Unmarshal(m.Result, &r) != nil {
		t.Fatalf("not a result: %s", m.Raw)
	}
	switch {
	case len(r.Content) > 0:
		return r.Content[0].Text
	case len(r.Messages) > 0:
		return r.Messages[0].Content.Text
	}
	t.Fatalf("no text in %s", m.Result)
	return ""
}

// checkLegacy checks the routing fields of a message the Conn handed out.
func checkLegacy(t *testing.T, m *core.Message) {
	t.Helper()
	if m.Direction != core.ServerToClient || m.Era != core.EraLegacy || m.Session != loSession || m.Status != 0 {
		t.Errorf("%s: direction %v era %v session %p status %d; want server_to_client, legacy, the session, no HTTP status",
			m.Raw, m.Direction, m.Era, m.Session, m.Status)
	}
}

// loClient plays the legacy client's part for server requests: the
// frontend writes them to the client, which answers with a response the
// frontend passes to Conn.Send.
type loClient struct {
	t      *testing.T
	conn   upstream.Conn
	answer func(req *core.Message) string // the response body, given the request
	mu     sync.Mutex
	got    []*core.Message
}

func (c *loClient) related(m *core.Message) {
	c.mu.Lock()
	c.got = append(c.got, m)
	c.mu.Unlock()
	if m.Kind != core.KindRequest || c.answer == nil {
		return
	}
	raw := c.answer(m)
	if raw == "" {
		return
	}
	go func() {
		resp, err := core.Decode([]byte(raw))
		if err != nil {
			c.t.Errorf("answer %s: %v", raw, err)
			return
		}
		resp.Direction, resp.Era, resp.Session = core.ClientToServer, core.EraLegacy, loSession
		if err := c.conn.Send(context.Background(), resp); err != nil {
			c.t.Errorf("send answer: %v", err)
		}
	}()
}

func (c *loClient) messages() []*core.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*core.Message(nil), c.got...)
}

func (c *loClient) methods() []string {
	var out []string
	for _, m := range c.messages() {
		out = append(out, m.Kind.String()+" "+m.Method)
	}
	return out
}

// loAnswers are what the simulated user and LLM answer.
func loAnswers(id core.ID, method string, params json.RawMessage) string {
	var result string
	switch method {
	case "elicitation/create":
		var p struct {
			Message         string `json:"message"`
			RequestedSchema struct {
				Properties map[string]struct {
					Type string `json:"type"`
				} `json:"properties"`
			} `json:"requestedSchema"`
		}
		_ = json.Unmarshal(params, &p)
		content := map[string]any{}
		for name, prop := range p.RequestedSchema.Properties {
			switch {
			case prop.Type == "boolean":
				content[name] = true
			case name == "color":
				content[name] = "teal"
			default:
				content[name] = "Ada"
			}
		}
		b, _ := json.Marshal(map[string]any{"action": "accept", "content": content})
		result = string(b)
	case "sampling/createMessage":
		result = `{"role":"assistant","content":{"type":"text","text":"Paris"},"model":"test-model","stopReason":"endTurn"}`
	case "roots/list":
		result = `{"roots":[{"uri":"file:///work","name":"work"}]}`
	default:
		return `{"jsonrpc":"2.0","id":` + string(id) + `,"error":{"code":-32601,"message":"method not found"}}`
	}
	return `{"jsonrpc":"2.0","id":` + string(id) + `,"result":` + result + `}`
}

func TestLegacyClientInitialize(t *testing.T) {
	e := loFixture(t)
	tests := []struct {
		name, requested, want string
	}{
		{"2025-11-25 kept", core.Version20251125, core.Version20251125},
		{"2025-06-18 kept", core.Version20250618, core.Version20250618},
		{"2024-11-05 kept", core.Version20241105, core.Version20241105},
		{"unknown gets the newest legacy", "2023-01-01", core.LatestLegacyVersion},
		// A modern client never sends initialize; its version is not a
		// legacy answer.
		{"modern gets the newest legacy", core.Version20260728, core.LatestLegacyVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Each initialize on the same Conn works: mcpgate replays the
			// client's initialize to re-establish a session.
			res := e.initialize(t, tt.requested)
			if res["protocolVersion"] != tt.want {
				t.Fatalf("protocolVersion %v, want %s", res["protocolVersion"], tt.want)
			}
			caps, _ := res["capabilities"].(map[string]any)
			var names []string
			for k := range caps {
				names = append(names, k)
			}
			for _, k := range []string{"tools", "prompts", "resources", "completions", "logging"} {
				if _, ok := caps[k]; !ok {
					t.Errorf("capability %q missing from %v", k, names)
				}
			}
			if res, _ := caps["resources"].(map[string]any); res["subscribe"] != true || res["listChanged"] != true {
				t.Errorf("resources capability %v; want subscribe and listChanged", res)
			}
			info, _ := res["serverInfo"].(map[string]any)
			if info["name"] != conformancefixture.Implementation.Name || info["version"] != conformancefixture.Implementation.Version {
				t.Errorf("serverInfo %v", info)
			}
			if s, _ := res["instructions"].(string); !strings.HasPrefix(s, "Conformance fixture") {
				t.Errorf("instructions %q", s)
			}
		})
	}

	d := e.rec.rpc("server/discover")
	if len(d) != len(tests) {
		t.Fatalf("%d server/discover upstream; want one per initialize", len(d))
	}
	meta := d[0].meta()
	want := map[string]any{
		core.MetaProtocolVersion: core.Version20260728,
		core.MetaClientInfo:      map[string]any{"name": "legacy-client", "version": "9.9"},
		// The 2025-11-25 tasks capability does not cross.
		core.MetaClientCapabilities: map[string]any{"sampling": map[string]any{}, "elicitation": map[string]any{"form": map[string]any{}, "url": map[string]any{}},
			"roots": map[string]any{"listChanged": true}},
	}
	if diff := cmp.Diff(want, meta); diff != "" {
		t.Errorf("discover _meta (-want +got):\n%s", diff)
	}
	if len(e.rec.rpc("initialize"))+len(e.rec.rpc("notifications/initialized")) != 0 {
		t.Error("initialize or notifications/initialized went upstream")
	}
	if e.conn.UpstreamSession() != "" {
		t.Errorf("UpstreamSession %q; a modern upstream has none", e.conn.UpstreamSession())
	}
}

func TestLegacyClientRequests(t *testing.T) {
	e := loFixture(t)
	e.initialize(t, core.Version20250618)

	t.Run("ping answered by the bridge", func(t *testing.T) {
		resp := e.call(t, `{"jsonrpc":"2.0","id":"p","method":"ping"}`, nil)
		checkLegacy(t, resp)
		if string(resp.Raw) != `{"jsonrpc":"2.0","id":"p","result":{}}` {
			t.Fatalf("ping: %s", resp.Raw)
		}
		if n := len(e.rec.rpc("ping")); n != 0 {
			t.Fatalf("%d pings upstream", n)
		}
	})

	t.Run("tools/list carries the session's _meta", func(t *testing.T) {
		resp := e.call(t, `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"}}}`, nil)
		checkLegacy(t, resp)
		if !strings.Contains(string(resp.Result), `"test_simple_text"`) || resp.ID != "1" {
			t.Fatalf("tools/list: %s", resp.Raw)
		}
		got := e.rec.rpc("tools/list")[0]
		meta := got.meta()
		if meta[core.MetaProtocolVersion] != core.Version20260728 || meta[core.MetaClientCapabilities] == nil ||
			meta[core.MetaClientInfo] == nil || meta["traceparent"] == nil {
			t.Fatalf("tools/list _meta %v: want the session's fields and the client's own", meta)
		}
		if _, ok := meta[core.MetaLogLevel]; ok {
			t.Fatal("logLevel sent before logging/setLevel")
		}
		for k, v := range map[string]string{"Mcp-Protocol-Version": core.Version20260728, "Mcp-Method": "tools/list"} {
			if got.Header.Get(k) != v {
				t.Errorf("%s: %q, want %q", k, got.Header.Get(k), v)
			}
		}
	})

	t.Run("tools/call", func(t *testing.T) {
		resp := e.call(t, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"test_simple_text","arguments":{}}}`, nil)
		checkLegacy(t, resp)
		if got := loText(t, resp); got != "This is a simple text response for testing." {
			t.Fatalf("text %q", got)
		}
		if h := e.rec.rpc("tools/call")[0].Header.Get("Mcp-Name"); h != "test_simple_text" {
			t.Fatalf("Mcp-Name %q", h)
		}
	})

	t.Run("progress reaches related", func(t *testing.T) {
		c := &loClient{t: t, conn: e.conn}
		resp := e.call(t, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"test_tool_with_progress","arguments":{},"_meta":{"progressToken":"tok-7"}}}`, c.related)
		if got := loText(t, resp); got != "tok-7" {
			t.Fatalf("result %q: the progress token did not reach the tool", got)
		}
		msgs := c.messages()
		if len(msgs) != 3 {
			t.Fatalf("related got %v; want 3 progress notifications", c.methods())
		}
		for _, m := range msgs {
			checkLegacy(t, m)
			if m.Method != "notifications/progress" || !strings.Contains(string(m.Params), `"progressToken":"tok-7"`) {
				t.Fatalf("related: %s", m.Raw)
			}
		}
	})

	t.Run("logging/setLevel", func(t *testing.T) {
		c := &loClient{t: t, conn: e.conn}
		e.call(t, `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"test_tool_with_logging","arguments":{}}}`, c.related)
		if n := len(c.messages()); n != 0 {
			t.Fatalf("%d log messages before logging/setLevel: %v", n, c.methods())
		}
		if resp := e.call(t, `{"jsonrpc":"2.0","id":5,"method":"logging/setLevel","params":{"level":"nonsense"}}`, nil); resp.ErrorCode() != core.CodeInvalidParams {
			t.Fatalf("bad level: %s", resp.Raw)
		}
		resp := e.call(t, `{"jsonrpc":"2.0","id":6,"method":"logging/setLevel","params":{"level":"info"}}`, nil)
		if string(resp.Result) != `{}` {
			t.Fatalf("setLevel: %s", resp.Raw)
		}
		if n := len(e.rec.rpc("logging/setLevel")); n != 0 {
			t.Fatalf("%d logging/setLevel upstream", n)
		}
		e.call(t, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"test_tool_with_logging","arguments":{}}}`, c.related)
		if got := c.methods(); len(got) != 3 || got[0] != "notification notifications/message" {
			t.Fatalf("related %v; want 3 log messages", got)
		}
		calls := e.rec.rpc("tools/call")
		if lvl := calls[len(calls)-1].meta()[core.MetaLogLevel]; lvl != "info" {
			t.Fatalf("logLevel _meta %v", lvl)
		}
	})

	t.Run("resource not found keeps the modern code and no HTTP status", func(t *testing.T) {
		resp := e.call(t, `{"jsonrpc":"2.0","id":8,"method":"resources/read","params":{"uri":"test://no-such-resource"}}`, nil)
		checkLegacy(t, resp)
		if resp.ErrorCode() != core.CodeInvalidParams || resp.ID != "8" {
			t.Fatalf("read: %s", resp.Raw)
		}
	})

	t.Run("tools/list from the client teaches x-mcp-header", func(t *testing.T) {
		resp := e.call(t, `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"test_x_mcp_header","arguments":{"region":"eu-west 1 ","level":3}}}`, nil)
		if got := loText(t, resp); got != "region=eu-west 1  level=3" {
			t.Fatalf("result %q", got)
		}
		calls := e.rec.rpc("tools/call")
		if h := calls[len(calls)-1].Header.Get("Mcp-Param-Region"); h != "=?base64?ZXUtd2VzdCAxIA==?=" {
			t.Fatalf("Mcp-Param-Region %q", h)
		}
		if n := len(e.rec.rpc("tools/list")); n != 1 {
			t.Fatalf("%d tools/list upstream; the bridge knew the tool from the client's", n)
		}
	})

	t.Run("legacy tasks are refused by name", func(t *testing.T) {
		resp := e.call(t, `{"jsonrpc":"2.0","id":10,"method":"tasks/result","params":{"taskId":"x"}}`, nil)
		if resp.ErrorCode() != core.CodeMethodNotFound || !strings.Contains(string(resp.Error), "tasks") {
			t.Fatalf("tasks/result: %s", resp.Raw)
		}
		resp = e.call(t, `{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"test_simple_text","task":{"ttl":1000}}}`, nil)
		if resp.ErrorCode() != core.CodeInvalidParams || !strings.Contains(string(resp.Error), "params.task") {
			t.Fatalf("task-augmented call: %s", resp.Raw)
		}
	})

	t.Run("client notifications without a modern counterpart go nowhere", func(t *testing.T) {
		before := len(e.rec.reqs)
		if err := e.conn.Send(loCtx(t), loMsg(t, `{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}`)); err != nil {
			t.Fatal(err)
		}
		// A response nobody waits for (late, or to an unknown id) is dropped too.
		if err := e.conn.Send(loCtx(t), loMsg(t, `{"jsonrpc":"2.0","id":"mcpgate-input-x-1","result":{}}`)); err != nil {
			t.Fatal(err)
		}
		e.rec.mu.Lock()
		after := len(e.rec.reqs)
		e.rec.mu.Unlock()
		if after != before {
			t.Fatalf("%d requests upstream", after-before)
		}
	})
}

// TestLegacyClientXMcpHeaderUnknownTool calls a tool with an x-mcp-header
// argument before anything listed the tools: the upstream refuses with
// HeaderMismatch, the bridge lists the tools and sends the call again.
func TestLegacyClientXMcpHeaderUnknownTool(t *testing.T) {
	e := loFixture(t)
	e.initialize(t, core.Version20251125)
	resp := e.call(t, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"test_x_mcp_header","arguments":{"region":"us-west1"}}}`, nil)
	if got := loText(t, resp); got != "region=us-west1 level=0" || resp.ID != "1" {
		t.Fatalf("result %s", resp.Raw)
	}
	calls := e.rec.rpc("tools/call")
	if len(calls) != 2 || calls[0].Header.Get("Mcp-Param-Region") != "" || calls[1].Header.Get("Mcp-Param-Region") != "us-west1" {
		t.Fatalf("%d calls upstream; want a refused one without the header, then one with it", len(calls))
	}
	if len(e.rec.rpc("tools/list")) == 0 {
		t.Fatal("no tools/list upstream")
	}
}

func TestLegacyClientInputRequired(t *testing.T) {
	e := loFixture(t)
	e.initialize(t, core.Version20251125)
	tests := []struct {
		name string
		req  string
		want string
		// asks are the server requests the client sees, in the order of
		// the server's keys.
		asks []string
	}{
		{"elicitation", `"method":"tools/call","params":{"name":"test_input_required_result_elicitation","arguments":{}}`,
			"Hello, Ada!", []string{"elicitation/create"}},
		{"sampling", `"method":"tools/call","params":{"name":"test_input_required_result_sampling","arguments":{}}`,
			"Sampling response: Paris", []string{"sampling/createMessage"}},
		{"roots", `"method":"tools/call","params":{"name":"test_input_required_result_list_roots","arguments":{}}`,
			"Client exposed 1 root(s): file:///work", []string{"roots/list"}},
		{"request state", `"method":"tools/call","params":{"name":"test_input_required_result_request_state","arguments":{}}`,
			"state-ok: requestState verified (round 1), confirmed=true", []string{"elicitation/create"}},
		{"three inputs in one round", `"method":"tools/call","params":{"name":"test_input_required_result_multiple_inputs","arguments":{}}`,
			"Paris, Ada! Client exposed 1 root(s): file:///work", []string{"roots/list", "sampling/createMessage", "elicitation/create"}},
		{"two rounds", `"method":"tools/call","params":{"name":"test_input_required_result_multi_round","arguments":{}}`,
			"Multi-round complete: Ada likes teal", []string{"elicitation/create", "elicitation/create"}},
		{"prompt", `"method":"prompts/get","params":{"name":"test_input_required_result_prompt"}`,
			"Context: Ada", []string{"elicitation/create"}},
		{"tool of the legacy conformance suite", `"method":"tools/call","params":{"name":"test_sampling","arguments":{"prompt":"Capital of France?"}}`,
			"LLM response: Paris", []string{"sampling/createMessage"}},
	}
	ids := map[core.ID]bool{}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &loClient{t: t, conn: e.conn, answer: func(m *core.Message) string { return loAnswers(m.ID, m.Method, m.Params) }}
			id := fmt.Sprintf(`"call-%d"`, i)
			resp := e.call(t, `{"jsonrpc":"2.0","id":`+id+`,`+tt.req+`}`, c.related)
			checkLegacy(t, resp)
			if string(resp.ID) != id {
				t.Fatalf("response id %s, want the client's %s", resp.ID, id)
			}
			if got := loText(t, resp); got != tt.want {
				t.Fatalf("result %q, want %q", got, tt.want)
			}
			var asks []string
			for _, m := range c.messages() {
				if m.Kind != core.KindRequest {
					t.Fatalf("related got %s", m.Raw)
				}
				checkLegacy(t, m)
				if !strings.HasPrefix(string(m.ID), `"mcpgate-input-`) || ids[m.ID] {
					t.Fatalf("server request id %s: want a fresh mcpgate-input- id", m.ID)
				}
				ids[m.ID] = true
				asks = append(asks, m.Method)
			}
			if diff := cmp.Diff(tt.asks, asks); diff != "" {
				t.Fatalf("server requests (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("retries echo requestState and use new ids", func(t *testing.T) {
		var round []loSeen
		for _, s := range e.rec.rpc("tools/call") {
			p, _ := s.Body["params"].(map[string]any)
			if p["name"] == "test_input_required_result_multi_round" {
				round = append(round, s)
			}
		}
		if len(round) != 3 {
			t.Fatalf("%d upstream calls for two rounds; want 3", len(round))
		}
		seen := map[any]bool{}
		for i, s := range round {
			p := s.Body["params"].(map[string]any)
			if seen[s.Body["id"]] {
				t.Fatalf("id %v reused", s.Body["id"])
			}
			seen[s.Body["id"]] = true
			_, hasState := p["requestState"]
			_, hasResponses := p["inputResponses"]
			if (i == 0) == (hasState || hasResponses) {
				t.Fatalf("call %d: requestState %v inputResponses %v", i, hasState, hasResponses)
			}
			if p["_meta"].(map[string]any)[core.MetaProtocolVersion] != core.Version20260728 {
				t.Fatalf("call %d without the session's _meta", i)
			}
		}
	})
}

// TestLegacyClientInputRequiredVerbatim: the requestState and the client's
// arguments and answers reach the upstream byte for byte; a URL-mode
// elicitation gets the elicitationId 2025-11-25 clients require.
func TestLegacyClientInputRequiredVerbatim(t *testing.T) {
	const state = `<state & "more">`
	s := mcp.NewServer(&mcp.Implementation{Name: "verbatim", Version: "1"}, nil)
	s.AddTool(&mcp.Tool{Name: "login", InputSchema: map[string]any{"type": "object"}}, func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		if req.Params.RequestState == "" {
			return &mcp.CallToolResult{RequestState: state, InputRequests: mcp.InputRequestMap{
				"login": &mcp.ElicitParams{Mode: "url", Message: "Sign in", URL: "https://example.com/login?a=1&b=<2>"},
			}}, nil
		}
		res, _ := req.Params.InputResponses["login"].(*mcp.ElicitResult)
		if req.Params.RequestState != state || res == nil {
			return nil, fmt.Errorf("retry with state %q and answer %v", req.Params.RequestState, res)
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "signed in: " + res.Action}}}, nil
	})
	e := loServe(t, mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: true}))
	e.initialize(t, core.Version20251125)
	var asked *core.Message
	c := &loClient{t: t, conn: e.conn, answer: func(m *core.Message) string {
		asked = m
		return `{"jsonrpc":"2.0","id":` + string(m.ID) + `,"result":{"action":"accept","_meta":{"note":"<&>"}}}`
	}}
	resp := e.call(t, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"login","arguments":{"q":"<a & b>"}}}`, c.related)
	if got := loText(t, resp); got != "signed in: accept" {
		t.Fatalf("result %q", got)
	}
	var p struct {
		Mode, URL, ElicitationID string
	}
	if err := json.Unmarshal(asked.Params, &p); err != nil || p.Mode != "url" || p.URL != "https://example.com/login?a=1&b=<2>" {
		t.Fatalf("elicitation sent to the client: %s", asked.Params)
	}
	if want := strings.Trim(string(asked.ID), `"`); p.ElicitationID != want {
		t.Fatalf("elicitationId %q, want %q (the request's own id)", p.ElicitationID, want)
	}
	calls := e.rec.rpc("tools/call")
	if len(calls) != 2 {
		t.Fatalf("%d calls upstream", len(calls))
	}
	// go-sdk escapes <, > and & in what it sends; the bridge echoes the
	// requestState as it came and the client's JSON as it came.
	sent, _ := json.Marshal(state)
	for _, want := range []string{`"arguments":{"q":"<a & b>"}`, `"requestState":` + string(sent), `"inputResponses":{"login":{"action":"accept","_meta":{"note":"<&>"}}}`} {
		if !strings.Contains(calls[1].Raw, want) {
			t.Errorf("retry %s\nlacks %s", calls[1].Raw, want)
		}
	}
}

func TestLegacyClientInputRequiredFailures(t *testing.T) {
	e := loFixture(t)
	e.initialize(t, core.Version20251125)
	const call = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"test_input_required_result_multiple_inputs","arguments":{}}}`

	t.Run("an error answer fails the call naming the input request", func(t *testing.T) {
		c := &loClient{t: t, conn: e.conn, answer: func(m *core.Message) string {
			if m.Method == "sampling/createMessage" {
				return `{"jsonrpc":"2.0","id":` + string(m.ID) + `,"error":{"code":-32001,"message":"the client did not answer sampling/createMessage in time"}}`
			}
			return loAnswers(m.ID, m.Method, m.Params)
		}}
		resp := e.call(t, call, c.related)
		checkLegacy(t, resp)
		if resp.ErrorCode() != core.CodeRequestTimeout || resp.ID != "1" || !strings.Contains(string(resp.Error), `input request \"greeting\" (sampling/createMessage)`) {
			t.Fatalf("answer %s", resp.Raw)
		}
	})

	t.Run("a declined elicitation is an answer", func(t *testing.T) {
		c := &loClient{t: t, conn: e.conn, answer: func(m *core.Message) string {
			return `{"jsonrpc":"2.0","id":` + string(m.ID) + `,"result":{"action":"decline"}}`
		}}
		resp := e.call(t, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"test_elicitation","arguments":{"message":"name?"}}}`, c.related)
		if got := loText(t, resp); got != "Elicitation completed: action=decline, content=null" {
			t.Fatalf("result %q", got)
		}
	})

	t.Run("no answer within the request's time", func(t *testing.T) {
		c := &loClient{t: t, conn: e.conn}
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		_, err := e.conn.RoundTrip(ctx, loMsg(t, call), c.related)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v; want the deadline", err)
		}
		// The three questions are withdrawn.
		var cancelled int
		for _, m := range c.messages() {
			if m.Method == "notifications/cancelled" {
				cancelled++
			}
		}
		if cancelled != 3 {
			t.Fatalf("related got %v; want 3 requests, then 3 notifications/cancelled", c.methods())
		}
	})

	t.Run("the client cancels while asked", func(t *testing.T) {
		asked := make(chan struct{}, 3)
		c := &loClient{t: t, conn: e.conn, answer: func(*core.Message) string { asked <- struct{}{}; return "" }}
		done := make(chan error, 1)
		go func() {
			_, err := e.conn.RoundTrip(loCtx(t), loMsg(t, strings.Replace(call, `"id":1`, `"id":"c-1"`, 1)), c.related)
			done <- err
		}()
		<-asked
		if err := e.conn.Send(loCtx(t), loMsg(t, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"c-1","reason":"user"}}`)); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			var ce *core.Error
			if !errors.As(err, &ce) || ce.Code != core.CodeRequestTimeout {
				t.Fatalf("err %v; want request cancelled", err)
			}
		case <-time.After(loWait):
			t.Fatal("the cancelled call did not end")
		}
	})

	t.Run("no stream to ask on", func(t *testing.T) {
		resp := e.call(t, call, nil)
		if resp.Kind != core.KindError || !strings.Contains(string(resp.Error), "needs input from the client") {
			t.Fatalf("answer %s", resp.Raw)
		}
	})
}

// TestLegacyClientCancel cancels a call the upstream is working on: the
// upstream sees its request's stream closed.
func TestLegacyClientCancel(t *testing.T) {
	started, cancelled := make(chan struct{}, 1), make(chan struct{}, 1)
	s := mcp.NewServer(&mcp.Implementation{Name: "blocker", Version: "1"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "block"}, func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		started <- struct{}{}
		select {
		case <-ctx.Done():
			cancelled <- struct{}{}
			return nil, nil, ctx.Err()
		case <-time.After(loWait):
			return nil, nil, errors.New("never cancelled")
		}
	})
	e := loServe(t, mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s },
		&mcp.StreamableHTTPOptions{Stateless: true, PropagateRequestCancellation: true}))
	e.initialize(t, core.Version20251125)
	done := make(chan error, 1)
	go func() {
		_, err := e.conn.RoundTrip(loCtx(t), loMsg(t, `{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"block","arguments":{}}}`), nil)
		done <- err
	}()
	select {
	case <-started:
	case <-time.After(loWait):
		t.Fatal("the tool did not start")
	}
	// A cancellation of another request changes nothing.
	if err := e.conn.Send(loCtx(t), loMsg(t, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":43}}`)); err != nil {
		t.Fatal(err)
	}
	if err := e.conn.Send(loCtx(t), loMsg(t, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":42}}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cancelled:
	case <-time.After(loWait):
		t.Fatal("the upstream did not see the cancellation")
	}
	if err := <-done; err == nil || !strings.Contains(err.Error(), "cancelled") {
		t.Fatalf("err %v", err)
	}
	if n := len(e.rec.rpc("notifications/cancelled")); n != 0 {
		t.Fatalf("%d notifications/cancelled upstream; closing the stream is the modern cancellation", n)
	}
}

func TestLegacyClientListen(t *testing.T) {
	e := loFixture(t)
	e.initialize(t, core.Version20251125)
	if err := e.conn.Listen(loCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := e.conn.Listen(loCtx(t)); err != nil { // a no-op
		t.Fatal(err)
	}
	if n := len(e.rec.rpc("subscriptions/listen")); n != 1 {
		t.Fatalf("%d subscriptions/listen; want 1", n)
	}
	l := e.rec.rpc("subscriptions/listen")[0]
	want := map[string]any{"toolsListChanged": true, "promptsListChanged": true, "resourcesListChanged": true}
	if diff := cmp.Diff(want, l.Body["params"].(map[string]any)["notifications"]); diff != "" {
		t.Fatalf("filter (-want +got):\n%s", diff)
	}

	t.Run("list changes reach the sink untagged", func(t *testing.T) {
		e.call(t, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"test_trigger_tool_change","arguments":{}}}`, nil)
		m := e.sink.next(t, "notifications/tools/list_changed")
		checkLegacy(t, m)
		if strings.Contains(string(m.Raw), "subscriptionId") {
			t.Fatalf("notification %s still tagged", m.Raw)
		}
	})

	t.Run("resources/subscribe reopens the stream", func(t *testing.T) {
		resp := e.call(t, `{"jsonrpc":"2.0","id":2,"method":"resources/subscribe","params":{"uri":"`+conformancefixture.WatchedResourceURI+`"}}`, nil)
		if string(resp.Result) != `{}` || resp.ID != "2" {
			t.Fatalf("subscribe: %s", resp.Raw)
		}
		if n := len(e.rec.rpc("resources/subscribe")); n != 0 {
			t.Fatal("resources/subscribe went upstream")
		}
		ls := e.rec.rpc("subscriptions/listen")
		f := ls[len(ls)-1].Body["params"].(map[string]any)["notifications"].(map[string]any)
		if diff := cmp.Diff([]any{conformancefixture.WatchedResourceURI}, f["resourceSubscriptions"]); diff != "" {
			t.Fatalf("resourceSubscriptions (-want +got):\n%s", diff)
		}
		m := e.sink.next(t, "notifications/resources/updated")
		checkLegacy(t, m)
		if string(m.Params) != `{"uri":"`+conformancefixture.WatchedResourceURI+`"}` {
			t.Fatalf("update %s", m.Raw)
		}
	})

	t.Run("unsubscribe", func(t *testing.T) {
		resp := e.call(t, `{"jsonrpc":"2.0","id":3,"method":"resources/unsubscribe","params":{"uri":"`+conformancefixture.WatchedResourceURI+`"}}`, nil)
		if string(resp.Result) != `{}` {
			t.Fatalf("unsubscribe: %s", resp.Raw)
		}
		ls := e.rec.rpc("subscriptions/listen")
		f := ls[len(ls)-1].Body["params"].(map[string]any)["notifications"].(map[string]any)
		if _, ok := f["resourceSubscriptions"]; ok {
			t.Fatalf("filter after unsubscribe: %v", f)
		}
	})

	t.Run("subscribe needs a uri", func(t *testing.T) {
		resp := e.call(t, `{"jsonrpc":"2.0","id":4,"method":"resources/subscribe","params":{}}`, nil)
		if resp.ErrorCode() != core.CodeInvalidParams {
			t.Fatalf("subscribe: %s", resp.Raw)
		}
	})
}

// TestLegacyClientSubscribeBeforeListen: a subscription made before the
// GET stream opens is part of the first listen stream.
func TestLegacyClientSubscribeBeforeListen(t *testing.T) {
	e := loFixture(t)
	e.initialize(t, core.Version20251125)
	e.call(t, `{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"`+conformancefixture.WatchedResourceURI+`"}}`, nil)
	if n := len(e.rec.rpc("subscriptions/listen")); n != 0 {
		t.Fatalf("%d listen streams before Listen", n)
	}
	if err := e.conn.Listen(loCtx(t)); err != nil {
		t.Fatal(err)
	}
	e.sink.next(t, "notifications/resources/updated")
}

// TestLegacyClientNothingToListenFor: an upstream that declares no list
// changes opens no stream until the client subscribes to a resource.
func TestLegacyClientNothingToListenFor(t *testing.T) {
	s := mcp.NewServer(&mcp.Implementation{Name: "quiet", Version: "1"}, &mcp.ServerOptions{
		Capabilities:       &mcp.ServerCapabilities{Resources: &mcp.ResourceCapabilities{Subscribe: true}},
		SubscribeHandler:   func(context.Context, *mcp.SubscribeRequest) error { return nil },
		UnsubscribeHandler: func(context.Context, *mcp.UnsubscribeRequest) error { return nil },
	})
	s.AddResource(&mcp.Resource{URI: "test://r", Name: "r"}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: "test://r", Text: "r"}}}, nil
	})
	e := loServe(t, mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: true}))
	res := e.initialize(t, core.Version20251125)
	if _, ok := res["capabilities"].(map[string]any)["logging"]; ok {
		t.Fatalf("logging declared to the client: %v", res["capabilities"])
	}
	if err := e.conn.Listen(loCtx(t)); err != nil {
		t.Fatal(err)
	}
	if n := len(e.rec.rpc("subscriptions/listen")); n != 0 {
		t.Fatalf("%d listen streams with nothing to listen for", n)
	}
	e.call(t, `{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"test://r"}}`, nil)
	if n := len(e.rec.rpc("subscriptions/listen")); n != 1 {
		t.Fatalf("%d listen streams after subscribe; want 1", n)
	}
	if err := s.ResourceUpdated(t.Context(), &mcp.ResourceUpdatedNotificationParams{URI: "test://r"}); err != nil {
		t.Fatal(err)
	}
	m := e.sink.next(t, "notifications/resources/updated")
	if string(m.Params) != `{"uri":"test://r"}` {
		t.Fatalf("update %s", m.Raw)
	}
}

// TestLegacyClientSubscribeUnsupported: resources/subscribe at an upstream
// without resources.subscribe fails naming the capability.
func TestLegacyClientSubscribeUnsupported(t *testing.T) {
	s := mcp.NewServer(&mcp.Implementation{Name: "plain", Version: "1"}, nil)
	s.AddResource(&mcp.Resource{URI: "test://r", Name: "r"}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: "test://r", Text: "r"}}}, nil
	})
	e := loServe(t, mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: true}))
	e.initialize(t, core.Version20251125)
	resp := e.call(t, `{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"test://r"}}`, nil)
	if resp.ErrorCode() != core.CodeMethodNotFound || !strings.Contains(string(resp.Error), "resources.subscribe") {
		t.Fatalf("subscribe: %s", resp.Raw)
	}
}

// TestLegacyClientClose: Close ends the listen stream and everything in
// flight, and leaves no goroutine behind.
func TestLegacyClientClose(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctx, cancel := context.WithCancel(context.Background())
	rec := &loRecorder{next: conformancefixture.Handler(ctx, true)}
	srv := httptest.NewServer(rec)
	inner, err := httpup.New(httpup.Options{URL: srv.URL}, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	u := bridge.New(inner, bridge.Options{Era: core.EraModern})
	sink := &loSink{msgs: make(chan *core.Message, 64), closed: make(chan error, 4)}
	conn, err := u.Open(t.Context(), upstream.OpenParams{Session: loSession, Era: core.EraLegacy}, sink)
	if err != nil {
		t.Fatal(err)
	}
	e := &loEnv{conn: conn, sink: sink, rec: rec}
	e.initialize(t, core.Version20251125)
	if err := conn.Listen(loCtx(t)); err != nil {
		t.Fatal(err)
	}
	e.call(t, `{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"`+conformancefixture.WatchedResourceURI+`"}}`, nil)
	asked := make(chan struct{}, 1)
	c := &loClient{t: t, conn: conn, answer: func(*core.Message) string { asked <- struct{}{}; return "" }}
	done := make(chan error, 1)
	go func() {
		_, err := conn.RoundTrip(loCtx(t), loMsg(t, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"test_input_required_result_elicitation","arguments":{}}}`), c.related)
		done <- err
	}()
	<-asked

	if err := conn.Close(loCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, upstream.ErrClosed) {
		t.Fatalf("in-flight call: %v; want ErrClosed", err)
	}
	if _, err := conn.RoundTrip(loCtx(t), loMsg(t, `{"jsonrpc":"2.0","id":3,"method":"ping"}`), nil); !errors.Is(err, upstream.ErrClosed) {
		t.Fatalf("after Close: %v; want ErrClosed", err)
	}
	if err := conn.Listen(loCtx(t)); !errors.Is(err, upstream.ErrClosed) {
		t.Fatalf("Listen after Close: %v; want ErrClosed", err)
	}
	if err := conn.Close(loCtx(t)); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	select {
	case err := <-sink.closed:
		t.Fatalf("Sink.Closed(%v) after Close", err)
	default:
	}
	_ = u.Close()
	srv.Close()
	cancel()
}

// TestLegacyClientListenReconnects: a listen stream that breaks is opened
// again, and notifications flow on the new one.
func TestLegacyClientListenReconnects(t *testing.T) {
	t.Parallel()
	e := loFixture(t)
	e.initialize(t, core.Version20251125)
	if err := e.conn.Listen(loCtx(t)); err != nil {
		t.Fatal(err)
	}
	e.srv.CloseClientConnections()
	deadline := time.Now().Add(loWait)
	for len(e.rec.rpc("subscriptions/listen")) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the broken listen stream was not opened again")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The request may not have reached the server's subscription table
	// yet: change the prompts until a change arrives.
	for i := 0; ; i++ {
		e.call(t, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"test_trigger_prompt_change","arguments":{}}}`, i), nil)
		select {
		case m := <-e.sink.msgs:
			if m.Method != "notifications/prompts/list_changed" {
				t.Fatalf("sink got %s", m.Raw)
			}
			return
		case <-time.After(200 * time.Millisecond):
		}
		if i == 50 {
			t.Fatal("no prompts/list_changed on the new stream")
		}
	}
}

// TestLegacyClientListenRefused: an upstream that refuses
// subscriptions/listen makes Listen fail naming it, and is not asked again
// until something changes.
func TestLegacyClientListenRefused(t *testing.T) {
	t.Parallel()
	s := mcp.NewServer(&mcp.Implementation{Name: "nolisten", Version: "1"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "t"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{}, nil, nil
	})
	sdk := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: true})
	e := loServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Mcp-Method") == "subscriptions/listen" {
			var m struct {
				ID json.RawMessage `json:"id"`
			}
			_ = json.NewDecoder(r.Body).Decode(&m)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"error":{"code":-32601,"message":"Method not found"}}`, m.ID)
			return
		}
		sdk.ServeHTTP(w, r)
	}))
	e.initialize(t, core.Version20251125)
	err := e.conn.Listen(loCtx(t))
	var ce *core.Error
	if !errors.As(err, &ce) || !strings.Contains(ce.Message, "subscriptions/listen") {
		t.Fatalf("Listen: %v; want an error naming subscriptions/listen", err)
	}
	time.Sleep(1500 * time.Millisecond) // longer than the first pause before a retry
	if n := len(e.rec.rpc("subscriptions/listen")); n != 1 {
		t.Fatalf("%d subscriptions/listen; a refusal is not retried", n)
	}
	// The session goes on.
	if resp := e.call(t, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{}}}`, nil); resp.Kind != core.KindResponse {
		t.Fatalf("call: %s", resp.Raw)
	}
}
