package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/testutil/everything"
)

// TestBridgedResultsAre2026Valid: every result a modern client gets from a
// legacy server through the bridge is a valid 2026-07-28 result — with the
// required resultType, and on cacheable results (discover, the lists,
// resources/read) the required ttlMs and cacheScope, which legacy servers
// never send. Checked against the TypeScript SDK's server-everything over
// stdio and the go-sdk fixture over HTTP, with raw requests, as the
// Inspector sends them.
func TestBridgedResultsAre2026Valid(t *testing.T) {
	t.Parallel()
	cmd, args := everything.StdioCommand(t)
	fixture := httpRoute("fixture", "/fixture/mcp", fixtureHTTP(t, false))
	fixture.Upstream.Era = config.EraLegacy
	configured := stdioRoute("configured", "/configured/mcp", cmd, args...)
	configured.CacheHints = config.CacheHints{TTL: 1500 * time.Millisecond, Scope: config.CacheScopePublic}
	g := startGateway(t, nil, stdioRoute("everything", "/mcp", cmd, args...), configured, fixture)
	for _, tc := range []struct {
		path, tool, toolArg, prompt string
		// ttl and scope are the hints expected on the lists and reads
		// (the TypeScript SDK sends none; go-sdk sends its own).
		ttl   float64
		scope string
	}{
		{"/mcp", "echo", "message", "", 0, "private"}, // the defaults
		{"/configured/mcp", "echo", "message", "", 1500, "public"},
		{"/fixture/mcp", "test_simple_text", "", "test_simple_prompt", 0, "public"},
	} {
		t.Run(strings.Trim(tc.path, "/"), func(t *testing.T) {
			t.Parallel()
			url := g.URL + tc.path
			n := 0
			call := func(method string, params map[string]any) map[string]any {
				t.Helper()
				n++
				res := modernCall(t, url, n, method, params)
				for _, p := range check2026Result(method, res) {
					t.Errorf("%s: %s\n%v", method, p, res)
				}
				if method != "server/discover" && slices.Contains(cacheable2026, method) && (res["ttlMs"] != tc.ttl || res["cacheScope"] != tc.scope) {
					t.Errorf("%s: ttlMs %v cacheScope %v; want the route's %v %q", method, res["ttlMs"], res["cacheScope"], tc.ttl, tc.scope)
				}
				return res
			}
			call("server/discover", nil)
			call("tools/list", nil)
			call("resources/templates/list", nil)
			resources, _ := call("resources/list", nil)["resources"].([]any)
			if len(resources) == 0 {
				t.Fatal("no resources listed")
			}
			uri, _ := resources[0].(map[string]any)["uri"].(string)
			call("resources/read", map[string]any{"uri": uri})
			prompts, _ := call("prompts/list", nil)["prompts"].([]any)
			prompt := tc.prompt
			for _, p := range prompts {
				if prompt != "" {
					break
				}
				p := p.(map[string]any)
				required := false
				as, _ := p["arguments"].([]any)
				for _, a := range as {
					if r, _ := a.(map[string]any)["required"].(bool); r {
						required = true
					}
				}
				if !required {
					prompt = p["name"].(string)
				}
			}
			if prompt == "" {
				t.Fatal("no prompt without required arguments")
			}
			call("prompts/get", map[string]any{"name": prompt})
			targs := map[string]any{}
			if tc.toolArg != "" {
				targs[tc.toolArg] = "valid"
			}
			call("tools/call", map[string]any{"name": tc.tool, "arguments": targs})
		})
	}
}

// cacheable2026 are the methods whose 2026-07-28 results are
// CacheableResults.
var cacheable2026 = []string{"server/discover", "tools/list", "resources/list", "resources/templates/list", "prompts/list", "resources/read"}

// check2026Result checks a result against the required fields of its
// 2026-07-28 schema definition (schema/2026-07-28/schema.json in the spec
// repository: Result, CacheableResult, DiscoverResult, the list results
// and their items, ReadResourceResult, CallToolResult, GetPromptResult).
func check2026Result(method string, r map[string]any) []string {
	var bad []string
	need := func(where string, o map[string]any, key, kind string) any {
		v, ok := o[key]
		if !ok {
			bad = append(bad, where+": "+key+" is required")
			return nil
		}
		okType := false
		switch kind {
		case "string":
			_, okType = v.(string)
		case "array":
			_, okType = v.([]any)
		case "object":
			_, okType = v.(map[string]any)
		case "integer":
			f, isNum := v.(float64)
			okType = isNum && f == float64(int64(f)) && f >= 0
		}
		if !okType {
			bad = append(bad, fmt.Sprintf("%s: %s = %v is not a%s %s", where, key, v, map[bool]string{true: "n"}[kind == "object" || kind == "array" || kind == "integer"], kind))
		}
		return v
	}
	items := func(key string, fields ...string) {
		arr, _ := need("result", r, key, "array").([]any)
		for i, it := range arr {
			o, ok := it.(map[string]any)
			if !ok {
				bad = append(bad, key+"["+strconv.Itoa(i)+"] is not an object")
				continue
			}
			for _, f := range fields {
				kind := "string"
				if f == "inputSchema" || f == "content" && key == "messages" {
					kind = "object"
				}
				need(key+"["+strconv.Itoa(i)+"]", o, f, kind)
			}
		}
	}
	rt, _ := need("result", r, "resultType", "string").(string)
	if rt != "complete" && rt != "input_required" {
		bad = append(bad, "resultType "+strconv.Quote(rt)+" is neither complete nor input_required")
	}
	if slices.Contains(cacheable2026, method) {
		need("result", r, "ttlMs", "integer")
		if s, _ := need("result", r, "cacheScope", "string").(string); s != "public" && s != "private" {
			bad = append(bad, "cacheScope "+strconv.Quote(s)+" is neither public nor private")
		}
	}
	switch method {
	case "server/discover":
		need("result", r, "supportedVersions", "array")
		need("result", r, "capabilities", "object")
	case "tools/list":
		items("tools", "name", "inputSchema")
	case "resources/list":
		items("resources", "name", "uri")
	case "resources/templates/list":
		items("resourceTemplates", "name", "uriTemplate")
	case "prompts/list":
		items("prompts", "name")
	case "resources/read":
		items("contents", "uri")
	case "tools/call":
		items("content", "type")
	case "prompts/get":
		items("messages", "role", "content")
	}
	return bad
}

// modernCall sends one raw 2026-07-28 request and returns its result,
// read from a JSON body or an SSE stream.
func modernCall(t testing.TB, url string, id int, method string, params map[string]any) map[string]any {
	t.Helper()
	if params == nil {
		params = map[string]any{}
	}
	params["_meta"] = map[string]any{
		"io.modelcontextprotocol/protocolVersion":    "2026-07-28",
		"io.modelcontextprotocol/clientCapabilities": map[string]any{},
		"io.modelcontextprotocol/clientInfo":         map[string]any{"name": "raw-modern", "version": "1"},
	}
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params})
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", method)
	if name, ok := params["name"].(string); ok {
		req.Header.Set("Mcp-Name", name)
	} else if uri, ok := params["uri"].(string); ok {
		req.Header.Set("Mcp-Name", uri)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var env struct {
		ID     json.RawMessage `json:"id"`
		Result map[string]any  `json:"result"`
		Error  json.RawMessage `json:"error"`
	}
	want := strconv.Itoa(id)
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data:")
			if !ok || json.Unmarshal([]byte(data), &env) != nil || string(env.ID) != want {
				continue
			}
			break
		}
	} else if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		t.Fatalf("%s: HTTP %d, undecodable body: %v", method, resp.StatusCode, err)
	}
	if env.Result == nil {
		t.Fatalf("%s: HTTP %d, no result (error %s)", method, resp.StatusCode, env.Error)
	}
	return env.Result
}
