package bridge_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/testutil/conformancefixture"
	"github.com/mcpgate/mcpgate/internal/upstream"
	"github.com/mcpgate/mcpgate/internal/upstream/bridge"
	"github.com/mcpgate/mcpgate/internal/upstream/httpup"
)

// legacyFixture serves the conformance fixture with sessions (the legacy
// era) and returns it behind the bridge, pinned as legacy.
func legacyFixture(t *testing.T) *bridge.Upstream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv := httptest.NewServer(conformancefixture.Handler(ctx, false))
	t.Cleanup(func() { cancel(); srv.Close() })
	inner, err := httpup.New(httpup.Options{URL: srv.URL + "/"}, "fixture", nil)
	if err != nil {
		t.Fatal(err)
	}
	u := bridge.New(inner, bridge.Options{Era: core.EraLegacy, StateKey: []byte("0123456789abcdef0123456789abcdef")})
	t.Cleanup(func() { _ = u.Close() })
	return u
}

type nopSink struct{}

func (nopSink) Deliver(*core.Message) {}
func (nopSink) Closed(error)          {}

// modernRequest builds a 2026-07-28 request with the _meta every request
// carries.
func modernRequest(t *testing.T, id int, method string, params map[string]any, caps string) *core.Message {
	t.Helper()
	if params == nil {
		params = map[string]any{}
	}
	meta, _ := params["_meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	meta["io.modelcontextprotocol/protocolVersion"] = core.Version20260728
	meta["io.modelcontextprotocol/clientInfo"] = map[string]any{"name": "bridge-test", "version": "1"}
	meta["io.modelcontextprotocol/clientCapabilities"] = json.RawMessage(caps)
	params["_meta"] = meta
	raw, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params})
	if err != nil {
		t.Fatal(err)
	}
	m, err := core.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	m.Direction, m.Era = core.ClientToServer, core.EraModern
	return m
}

func openModern(t *testing.T, u *bridge.Upstream) upstream.Conn {
	t.Helper()
	info := &core.SessionInfo{ID: "sess-1", Principal: "alice", Era: core.EraModern, ProtocolVersion: core.Version20260728}
	conn, err := u.Open(t.Context(), upstream.OpenParams{Session: info, Era: core.EraModern}, nopSink{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func result(t *testing.T, m *core.Message) map[string]any {
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

func TestModernClientLegacyServer(t *testing.T) {
	u := legacyFixture(t)
	conn := openModern(t, u)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	const caps = `{"sampling":{},"elicitation":{}}`

	resp, err := conn.RoundTrip(ctx, modernRequest(t, 1, "server/discover", nil, caps), nil)
	if err != nil {
		t.Fatal(err)
	}
	d := result(t, resp)
	if d["resultType"] != "complete" || !strings.Contains(string(resp.Result), `"supportedVersions":["2026-07-28"]`) ||
		!strings.Contains(string(resp.Result), "io.modelcontextprotocol/serverInfo") || d["ttlMs"] == nil {
		t.Fatalf("discover = %s", resp.Result)
	}
	if conn.UpstreamSession() == "" {
		t.Fatal("no legacy upstream session held for the modern session")
	}

	t.Run("tools", func(t *testing.T) {
		resp, err := conn.RoundTrip(ctx, modernRequest(t, 2, "tools/call", map[string]any{"name": "test_simple_text"}, caps), nil)
		if err != nil {
			t.Fatal(err)
		}
		r := result(t, resp)
		if r["resultType"] != "complete" || !strings.Contains(string(resp.Result), "This is a simple text response for testing.") {
			t.Fatalf("tools/call = %s", resp.Result)
		}
		if string(resp.ID) != "2" {
			t.Fatalf("response id %s; want 2", resp.ID)
		}
	})

	t.Run("progress on the request's stream", func(t *testing.T) {
		var mu sync.Mutex
		var got []string
		resp, err := conn.RoundTrip(ctx, modernRequest(t, 3, "tools/call", map[string]any{
			"name": "test_tool_with_progress", "_meta": map[string]any{"progressToken": "p1"},
		}, caps), func(m *core.Message) {
			mu.Lock()
			got = append(got, m.Method)
			mu.Unlock()
		})
		if err != nil || resp.Kind != core.KindResponse {
			t.Fatalf("call: %v %v", resp, err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(got) != 3 || got[0] != "notifications/progress" {
			t.Fatalf("related = %v; want 3 progress notifications", got)
		}
	})

	t.Run("sampling becomes input_required", func(t *testing.T) {
		resp, err := conn.RoundTrip(ctx, modernRequest(t, 4, "tools/call", map[string]any{
			"name": "test_sampling", "arguments": map[string]any{"prompt": "What is the capital of France?"},
		}, caps), nil)
		if err != nil {
			t.Fatal(err)
		}
		var ir struct {
			ResultType    string `json:"resultType"`
			InputRequests map[string]struct {
				Method string          `json:"method"`
				Params json.RawMessage `json:"params"`
			} `json:"inputRequests"`
			RequestState string `json:"requestState"`
		}
		if err := json.Unmarshal(resp.Result, &ir); err != nil || ir.ResultType != "input_required" || len(ir.InputRequests) != 1 || ir.RequestState == "" {
			t.Fatalf("first answer = %s", resp.Result)
		}
		var key string
		for k, q := range ir.InputRequests {
			key = k
			if q.Method != "sampling/createMessage" || !strings.Contains(string(q.Params), "capital of France") {
				t.Fatalf("input request = %s %s", q.Method, q.Params)
			}
		}
		// A tampered state is refused; the call stays pending.
		bad := modernRequest(t, 5, "tools/call", map[string]any{
			"name": "test_sampling", "arguments": map[string]any{"prompt": "x"},
			"requestState": ir.RequestState + "x", "inputResponses": map[string]any{},
		}, caps)
		if resp, err := conn.RoundTrip(ctx, bad, nil); err != nil || resp.ErrorCode() != core.CodeInvalidParams {
			t.Fatalf("tampered state: %v %v; want -32602", resp, err)
		}
		retry := modernRequest(t, 6, "tools/call", map[string]any{
			"name": "test_sampling", "arguments": map[string]any{"prompt": "What is the capital of France?"},
			"requestState": ir.RequestState,
			"inputResponses": map[string]any{key: map[string]any{
				"role": "assistant", "content": map[string]any{"type": "text", "text": "Paris"}, "model": "m", "stopReason": "endTurn",
			}},
		}, caps)
		resp, err = conn.RoundTrip(ctx, retry, nil)
		if err != nil {
			t.Fatal(err)
		}
		if string(resp.ID) != "6" || !strings.Contains(string(resp.Result), "Paris") || !strings.Contains(string(resp.Result), `"resultType":"complete"`) {
			t.Fatalf("retry answer = %s", resp.Raw)
		}
		// The state was used: a second retry with it finds nothing.
		if resp, err := conn.RoundTrip(ctx, modernRequest(t, 7, "tools/call", map[string]any{
			"name": "test_sampling", "requestState": ir.RequestState,
		}, caps), nil); err != nil || resp.ErrorCode() != core.CodeInvalidParams {
			t.Fatalf("replayed state: %v %v; want -32602", resp, err)
		}
	})

	t.Run("missing resource has the modern code", func(t *testing.T) {
		resp, err := conn.RoundTrip(ctx, modernRequest(t, 8, "resources/read", map[string]any{"uri": "test://no-such-resource"}, caps), nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Kind != core.KindError {
			t.Fatalf("read = %s", resp.Raw)
		}
		if c := resp.ErrorCode(); c == -32002 {
			t.Fatalf("code %d: the legacy code reached a modern client", c)
		}
	})

	t.Run("list changes on subscriptions/listen", func(t *testing.T) {
		lctx, lcancel := context.WithCancel(ctx)
		got := make(chan *core.Message, 8)
		done := make(chan *core.Message, 1)
		go func() {
			resp, _ := conn.RoundTrip(lctx, modernRequest(t, 9, "subscriptions/listen", map[string]any{
				"notifications": map[string]any{"toolsListChanged": true},
			}, caps), func(m *core.Message) { got <- m })
			done <- resp
		}()
		ack := <-got
		if ack.Method != "notifications/subscriptions/acknowledged" || !strings.Contains(string(ack.Params), `"io.modelcontextprotocol/subscriptionId":9`) {
			t.Fatalf("first message = %s", ack.Raw)
		}
		if !strings.Contains(string(ack.Params), `"toolsListChanged":true`) {
			t.Fatalf("ack = %s: the fixture announces tools.listChanged", ack.Raw)
		}
		if _, err := conn.RoundTrip(ctx, modernRequest(t, 10, "tools/call", map[string]any{"name": "test_trigger_tool_change"}, caps), nil); err != nil {
			t.Fatal(err)
		}
		select {
		case n := <-got:
			if n.Method != "notifications/tools/list_changed" || !strings.Contains(string(n.Params), `"io.modelcontextprotocol/subscriptionId":9`) {
				t.Fatalf("notification = %s", n.Raw)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no tools/list_changed on the subscription")
		}
		lcancel()
		if resp := <-done; resp == nil || !strings.Contains(string(resp.Result), `"resultType":"complete"`) {
			t.Fatalf("listen ended with %v", resp)
		}
	})

	t.Run("other capabilities, other upstream session", func(t *testing.T) {
		before := conn.UpstreamSession()
		if _, err := conn.RoundTrip(ctx, modernRequest(t, 11, "tools/list", nil, `{}`), nil); err != nil {
			t.Fatal(err)
		}
		if after := conn.UpstreamSession(); after == before || after == "" {
			t.Fatalf("upstream session %q after a capability change; want a new one (was %q)", after, before)
		}
	})
}

func TestModernClientCancelReachesLegacyServer(t *testing.T) {
	u := legacyFixture(t)
	conn := openModern(t, u)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cctx, ccancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := conn.RoundTrip(cctx, modernRequest(t, 1, "tools/call", map[string]any{"name": "test_wait_for_cancellation"}, `{}`), nil)
	ccancel()
	if err == nil {
		t.Fatal("not cancelled")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := conn.RoundTrip(ctx, modernRequest(t, 2, "tools/call", map[string]any{"name": "test_cancellations"}, `{}`), nil)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(resp.Result), "cancelled=1") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the legacy server never saw the cancellation: %s", resp.Result)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRequestStateBoundToSession: mcpgate's requestState continues a call
// only in the gateway session, and for the principal, it was issued to.
func TestRequestStateBoundToSession(t *testing.T) {
	u := legacyFixture(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	const caps = `{"sampling":{}}`
	open := func(id, principal string) upstream.Conn {
		info := &core.SessionInfo{ID: id, Principal: principal, Era: core.EraModern}
		conn, err := u.Open(ctx, upstream.OpenParams{Session: info, Era: core.EraModern}, nopSink{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close(context.Background()) })
		return conn
	}
	first := open("sess-a", "alice")
	resp, err := first.RoundTrip(ctx, modernRequest(t, 1, "tools/call", map[string]any{"name": "test_sampling", "arguments": map[string]any{"prompt": "q"}}, caps), nil)
	if err != nil {
		t.Fatal(err)
	}
	var ir struct {
		RequestState string `json:"requestState"`
	}
	if json.Unmarshal(resp.Result, &ir) != nil || ir.RequestState == "" {
		t.Fatalf("no input_required: %s", resp.Raw)
	}
	retry := func(conn upstream.Conn) *core.Message {
		resp, err := conn.RoundTrip(ctx, modernRequest(t, 2, "tools/call", map[string]any{
			"name": "test_sampling", "arguments": map[string]any{"prompt": "q"}, "requestState": ir.RequestState,
			"inputResponses": map[string]any{},
		}, caps), nil)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if r := retry(open("sess-b", "alice")); r.ErrorCode() != core.CodeInvalidParams || !strings.Contains(string(r.Error), "another gateway session") {
		t.Errorf("retry in another session: %s", r.Raw)
	}
	if r := retry(open("sess-a", "mallory")); r.ErrorCode() != core.CodeInvalidParams || !strings.Contains(string(r.Error), "failed verification") {
		t.Errorf("retry by another principal: %s", r.Raw)
	}
}
