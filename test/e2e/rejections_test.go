package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/config"
)

const initBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`

type rawResp struct {
	Status int
	Header http.Header
	ID     json.RawMessage
	Code   int
	Msg    string
	Data   json.RawMessage
	Body   string
}

func do(t testing.TB, method, url, body string, hdr map[string]string) rawResp {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		if v == "" {
			req.Header.Del(k)
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := rawResp{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
	var env struct {
		ID    json.RawMessage `json:"id"`
		Error struct {
			Code    int             `json:"code"`
			Message string          `json:"message"`
			Data    json.RawMessage `json:"data"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &env) == nil {
		out.ID, out.Code, out.Msg, out.Data = env.ID, env.Error.Code, env.Error.Message, env.Error.Data
	}
	return out
}

// legacySession opens a raw legacy session and returns its id.
func legacySession(t testing.TB, url string) string {
	t.Helper()
	r := do(t, "POST", url, initBody, nil)
	id := r.Header.Get("Mcp-Session-Id")
	if r.Status != 200 || id == "" {
		t.Fatalf("initialize: %d %s", r.Status, r.Body)
	}
	n := do(t, "POST", url, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, map[string]string{"Mcp-Session-Id": id, "MCP-Protocol-Version": "2025-06-18"})
	if n.Status != 202 {
		t.Fatalf("initialized: %d %s", n.Status, n.Body)
	}
	return id
}

// TestRejections: every refusal has its spec-correct HTTP status and
// JSON-RPC code, on a gateway in front of both a legacy and a modern
// upstream.
func TestRejections(t *testing.T) {
	t.Parallel()
	g := startGateway(t, func(c *config.Config) { c.Server.MaxBodyBytes = 64 << 10 },
		httpRoute("legacy", "/mcp", fixtureHTTP(t, false)),
		httpRoute("modern", "/modern/mcp", fixtureHTTP(t, true)),
		withClientEra(httpRoute("legacy-clients", "/legacy-clients/mcp", fixtureHTTP(t, false)), config.EraLegacy),
		withClientEra(httpRoute("modern-clients", "/modern-clients/mcp", fixtureHTTP(t, true)), config.EraModern))
	legacy, modern := g.URL+"/mcp", g.URL+"/modern/mcp"
	legacyClients, modernClients := g.URL+"/legacy-clients/mcp", g.URL+"/modern-clients/mcp"
	sid := legacySession(t, legacy)
	ended := legacySession(t, legacy)
	if r := do(t, "DELETE", legacy, "", map[string]string{"Mcp-Session-Id": ended}); r.Status != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", r.Status, r.Body)
	}
	s := map[string]string{"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-06-18"}
	with := func(base map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range base {
			out[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	modernCall := `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"test_simple_text","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	mh := map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "test_simple_text"}
	ping := `{"jsonrpc":"2.0","id":9,"method":"ping"}`

	tests := []struct {
		name         string
		method, url  string
		body         string
		hdr          map[string]string
		status, code int
		wantID       string
		msgHas       string
	}{
		{"foreign origin", "POST", legacy, initBody, map[string]string{"Origin": "http://evil.example"}, 403, -32600, "", "Origin"},
		{"rebinding host", "POST", legacy, initBody, map[string]string{"Host": "evil.example:80"}, 403, -32600, "", "Host"},
		{"unknown path", "POST", g.URL + "/nope", initBody, nil, 404, -32600, "", "no MCP endpoint"},
		{"PUT", "PUT", legacy, initBody, nil, 405, -32600, "", "method not allowed"},
		{"content type", "POST", legacy, initBody, map[string]string{"Content-Type": "text/plain"}, 415, -32600, "", "Content-Type"},
		{"accept without SSE", "POST", legacy, initBody, map[string]string{"Accept": "application/json"}, 406, -32600, "", "Accept"},
		{"body too large", "POST", legacy, `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"` + strings.Repeat("a", 70<<10) + `"}}`, s, 413, -32600, "", "larger"},
		{"parse error", "POST", legacy, `{"jsonrpc":`, s, 400, -32700, "null", "parse error"},
		{"invalid utf-8", "POST", legacy, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}", s, 400, -32700, "null", "UTF-8"},
		{"invalid request", "POST", legacy, `{"jsonrpc":"1.0","id":1,"method":"ping"}`, s, 400, -32600, "null", "2.0"},
		{"case-variant key", "POST", legacy, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","Name":"b"}}`, s, 400, -32600, "null", "case"},
		{"missing session id", "POST", legacy, ping, map[string]string{"MCP-Protocol-Version": "2025-06-18"}, 400, -32600, "9", "Mcp-Session-Id"},
		{"malformed session id", "POST", legacy, ping, with(s, "Mcp-Session-Id", "bad id"), 400, -32600, "9", "malformed"},
		{"unknown session id", "POST", legacy, ping, with(s, "Mcp-Session-Id", "no-such-session"), 404, -32011, "9", "not found"},
		{"ended session id", "POST", legacy, ping, with(s, "Mcp-Session-Id", ended), 404, -32011, "9", "not found"},
		{"DELETE unknown", "DELETE", legacy, "", with(s, "Mcp-Session-Id", "no-such-session"), 404, -32011, "", "not found"},
		{"GET unknown", "GET", legacy, "", with(s, "Mcp-Session-Id", "no-such-session"), 404, -32011, "", "not found"},
		{"GET without session", "GET", legacy, "", nil, 400, -32600, "", "Mcp-Session-Id"},
		{"unsupported version header", "POST", legacy, ping, with(s, "MCP-Protocol-Version", "1999-01-01"), 400, -32600, "9", "MCP-Protocol-Version"},
		{"batch after 2025-03-26", "POST", legacy, `[` + ping + `]`, s, 400, -32600, "", "batches"},
		{"initialize without version", "POST", legacy, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`, nil, 400, -32602, "1", "protocolVersion"},

		{"modern: version header missing", "POST", modern, modernCall, with(mh, "MCP-Protocol-Version", ""), 400, -32020, "5", "MCP-Protocol-Version"},
		{"modern: version mismatch", "POST", modern, strings.Replace(modernCall, `"2026-07-28"`, `"2027-01-01"`, 1), mh, 400, -32020, "5", "does not match"},
		{"modern: method mismatch", "POST", modern, modernCall, with(mh, "Mcp-Method", "tools/list"), 400, -32020, "5", "Mcp-Method"},
		{"modern: method missing", "POST", modern, modernCall, with(mh, "Mcp-Method", ""), 400, -32020, "5", "Mcp-Method"},
		{"modern: name mismatch", "POST", modern, modernCall, with(mh, "Mcp-Name", "other"), 400, -32020, "5", "Mcp-Name"},
		{"modern: bad base64 name", "POST", modern, modernCall, with(mh, "Mcp-Name", "=?base64?!!!?="), 400, -32020, "5", "base64"},
		{"modern: unsupported version", "POST", modern, strings.ReplaceAll(modernCall, `"2026-07-28"`, `"2027-01-01"`), with(mh, "MCP-Protocol-Version", "2027-01-01"), 400, -32022, "5", "Unsupported protocol version"},
		{"modern: unknown method", "POST", modern, `{"jsonrpc":"2.0","id":6,"method":"nope/nope","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`,
			with(mh, "Mcp-Method", "nope/nope", "Mcp-Name", ""), 404, -32601, "6", ""},
		{"modern-only route: GET", "GET", modernClients, "", nil, 405, -32600, "", "GET"},
		{"modern-only route: initialize", "POST", modernClients, `{"jsonrpc":"2.0","id":7,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}`,
			nil, 400, -32602, "7", "client_era: modern"},
		{"legacy-only route: modern request", "POST", legacyClients, modernCall, mh, 400, -32600, "5", "initialize"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, tt.method, tt.url, tt.body, tt.hdr)
			if r.Status != tt.status || r.Code != tt.code {
				t.Fatalf("got %d/%d, want %d/%d: %s", r.Status, r.Code, tt.status, tt.code, r.Body)
			}
			if tt.wantID != "" && string(r.ID) != tt.wantID {
				t.Errorf("id = %s, want %s", r.ID, tt.wantID)
			}
			if !strings.Contains(r.Msg, tt.msgHas) {
				t.Errorf("message %q lacks %q", r.Msg, tt.msgHas)
			}
		})
	}
	// The refusals disturbed nothing: the live session still works.
	if r := do(t, "POST", legacy, ping, s); r.Status != 200 || !strings.Contains(r.Body, `"result"`) {
		t.Fatalf("session broken after refusals: %d %s", r.Status, r.Body)
	}
	// Unsupported modern version lists what is supported.
	r := do(t, "POST", modern, strings.ReplaceAll(modernCall, `"2026-07-28"`, `"2027-01-01"`), with(mh, "MCP-Protocol-Version", "2027-01-01"))
	if !strings.Contains(string(r.Data), "2026-07-28") {
		t.Errorf("-32022 data = %s, want supported versions", r.Data)
	}
}

func withClientEra(r config.Route, era string) config.Route {
	r.ClientEra = era
	return r
}
