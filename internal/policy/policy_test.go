package policy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mcpgate/mcpgate/internal/catalog"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/pipeline"
	"github.com/mcpgate/mcpgate/internal/policy"
)

// chain is a route's chain with the policy stage alone in front of
// upstream, a handler that answers as the server would.
type chain struct {
	c    *pipeline.Chain
	info *core.SessionInfo
	cat  *catalog.Catalog
}

func newChain(tb testing.TB, pols []config.Policy, info *core.SessionInfo, upstream core.Handler) *chain {
	tb.Helper()
	set, err := policy.New("tools", pols, nil)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := pipeline.Build("tools", upstream, func(context.Context, *core.Message) (*core.Message, error) { return nil, nil }, []pipeline.Stage{set.Stage()})
	if err != nil {
		tb.Fatal(err)
	}
	info.Stages = new(core.StageHolder)
	c.Enter(info)
	return &chain{c: c, info: info, cat: catalog.New()}
}

type catCtx struct {
	context.Context
	cat *catalog.Catalog
}

func (c catCtx) Value(k any) any {
	if _, ok := k.(catalog.Key); ok {
		return c.cat
	}
	return c.Context.Value(k)
}

func (ch *chain) send(tb testing.TB, raw string) *core.Message {
	tb.Helper()
	m, err := core.Decode([]byte(raw))
	if err != nil {
		tb.Fatal(err)
	}
	m.Session = ch.info
	resp, err := ch.c.ClientToServer(catCtx{context.Background(), ch.cat}, m)
	if err != nil {
		tb.Fatal(err)
	}
	return resp
}

func TestNoMatchingPolicyNoStage(t *testing.T) {
	t.Parallel()
	set, err := policy.New("tools", nil, nil)
	if err != nil || set != nil {
		t.Fatalf("%v %v", set, err)
	}
	c, err := pipeline.Build("tools", nil, nil, []pipeline.Stage{set.Stage()})
	if err != nil || len(c.Stages()) != 0 {
		t.Fatalf("stages %v", c.Stages())
	}
}

// A session no policy matches passes untouched; one that a policy
// matches by group is refused, with the decision in the error's data.
func TestMatchBySession(t *testing.T) {
	t.Parallel()
	pols := []config.Policy{{Name: "guests", Match: config.PolicyMatch{Groups: []string{"guest"}, Tenants: []string{"acme"}}, Resources: &config.PolicyList{Deny: []string{"file:///secret/**"}}}}
	echo := func(_ context.Context, m *core.Message) (*core.Message, error) {
		return core.ResultResponse(m.ID, []byte(`{"contents":[]}`)), nil
	}
	read := `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///secret/a/b"}}`
	for _, tc := range []struct {
		info    *core.SessionInfo
		refused bool
	}{
		{&core.SessionInfo{Principal: "g", Tenant: "acme", Groups: []string{"guest"}}, true},
		{&core.SessionInfo{Principal: "g", Tenant: "other", Groups: []string{"guest"}}, false},
		{&core.SessionInfo{Principal: "a", Tenant: "acme", Groups: []string{"admin"}}, false},
	} {
		resp := newChain(t, pols, tc.info, echo).send(t, read)
		if got := resp.Kind == core.KindError; got != tc.refused {
			t.Errorf("%+v: %s", tc.info, resp.Raw)
		}
		if tc.refused && (resp.ErrorCode() != core.CodePolicyDenied || !strings.Contains(string(resp.Error), `"data":{"policy":"guests","rule":"resources.deny[0]"}`)) {
			t.Errorf("refusal %s", resp.Raw)
		}
	}
}

// typical is the benchmark's rule set: five policies matching the
// session, two CEL rules, the secrets detectors and a pattern, a block.
func typical() []config.Policy {
	return []config.Policy{
		{Name: "tools", Tools: &config.PolicyList{Allow: []string{"search_*", "get_*", "query"}, Deny: []string{"*delete*"}}},
		{Name: "resources", Resources: &config.PolicyList{Allow: []string{"file:///srv/public/**"}}, Prompts: &config.PolicyList{Deny: []string{"admin_*"}}},
		{Name: "sql", Match: config.PolicyMatch{Groups: []string{"analysts"}}, Rules: []config.PolicyRule{{Deny: `tool == "query" && !args.sql.startsWith("SELECT")`, Message: "only SELECT"}}},
		{Name: "tenant", Match: config.PolicyMatch{Tenants: []string{"acme"}}, Rules: []config.PolicyRule{{Deny: `method == "tools/call" && tenant != "acme"`}}},
		{Name: "secrets", Redact: []config.PolicyRedact{{Detectors: []string{"secrets"}}, {Pattern: `EMP-\d{6}`, Replace: "[EMP]"}},
			Block: []config.PolicyBlock{{Pattern: `-----BEGIN [A-Z ]*PRIVATE KEY-----`}}},
	}
}

func result4KiB(secret string) []byte {
	text := strings.Repeat("Row 17: the quick brown fox jumps over the lazy dog, id 4242. ", 70)[:4040] + secret
	b, _ := json.Marshal(map[string]any{"content": []any{map[string]any{"type": "text", "text": text}}})
	return b
}

func BenchmarkPolicyStage(b *testing.B) {
	for _, tc := range []struct{ name, secret string }{{"clean", ""}, {"one-secret", " AKIAIOSFODNN7EXAMPLE"}} {
		result := result4KiB(tc.secret)
		upstream := func(_ context.Context, m *core.Message) (*core.Message, error) {
			return core.ResultResponse(m.ID, result), nil
		}
		call := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"query","arguments":{"sql":"SELECT * FROM t","limit":10}}}`
		info := &core.SessionInfo{Principal: "ana", Tenant: "acme", Groups: []string{"analysts"}}
		b.Run(tc.name, func(b *testing.B) {
			ch := newChain(b, typical(), info, upstream)
			m, _ := core.Decode([]byte(call))
			ctx := catCtx{context.Background(), ch.cat}
			b.ReportAllocs()
			defer cpuPerOp(b)()
			for b.Loop() {
				mm := *m
				mm.Session = info
				resp, err := ch.c.ClientToServer(ctx, &mm)
				if err != nil || resp.Kind != core.KindResponse {
					b.Fatal(err)
				}
			}
		})
		b.Run(tc.name+"-baseline", func(b *testing.B) {
			m, _ := core.Decode([]byte(call))
			b.ReportAllocs()
			defer cpuPerOp(b)()
			for b.Loop() {
				mm := *m
				_, _ = upstream(context.Background(), &mm)
			}
		})
	}
}

// cpuPerOp reports the process's CPU time per operation (cpu-ns/op):
// on a machine shared with other work, wall time per operation measures
// the machine's load as much as the code.
func cpuPerOp(b *testing.B) func() {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := cpu()
	return func() { b.ReportMetric(float64((cpu()-start).Nanoseconds())/float64(b.N), "cpu-ns/op") }
}

// FuzzRules evaluates the CEL rules on arbitrary tools/call arguments:
// never a panic; what cannot be read is refused.
func FuzzRules(f *testing.F) {
	f.Add("query", []byte(`{"sql":"SELECT 1"}`))
	f.Add("query", []byte(`{"sql":1}`))
	f.Add("query", []byte(`[[[[[[[[[[]]]]]]]]]]`))
	f.Add("query", []byte(strings.Repeat(`{"a":`, 100)+"1"+strings.Repeat("}", 100)))
	f.Add("delete_x", []byte(`null`))
	info := &core.SessionInfo{Principal: "ana", Tenant: "acme", Groups: []string{"analysts"}}
	ch := newChain(f, typical(), info, func(_ context.Context, m *core.Message) (*core.Message, error) {
		return core.ResultResponse(m.ID, []byte(`{"content":[]}`)), nil
	})
	f.Fuzz(func(t *testing.T, tool string, args []byte) {
		q, _ := json.Marshal(tool)
		raw := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":%s,"arguments":%s}}`, q, args)
		m, err := core.Decode([]byte(raw))
		if err != nil {
			return
		}
		m.Session = info
		resp, err := ch.c.ClientToServer(catCtx{context.Background(), ch.cat}, m)
		if err != nil || resp == nil || resp.Kind != core.KindResponse {
			t.Fatalf("%s: %v %v", raw, resp, err)
		}
	})
}

// FuzzResults runs arbitrary results through list filtering, block and
// redaction: the client always gets valid JSON-RPC, and no denied tool.
func FuzzResults(f *testing.F) {
	f.Add("tools/list", []byte(`{"tools":[{"name":"search_a"},{"name":"delete_b","Name":"x"}],"TOOLS":[{"name":"delete_c"}],"nextCursor":"2"}`))
	f.Add("tools/call", []byte(`{"content":[{"type":"text","text":"AKIAIOSFODNN7EXAMPLE \u0041KIAIOSFODNN7EXAMPLE"}]}`))
	f.Add("resources/list", []byte(`{"resources":[{"uri":"file:///srv/public/a"},{"uri":"file:///etc/passwd"}]}`))
	f.Add("prompts/list", []byte(`{"prompts":[{"name":"admin_x"}]}`))
	info := &core.SessionInfo{Principal: "ana", Tenant: "acme", Groups: []string{"analysts"}}
	f.Fuzz(func(t *testing.T, method string, result []byte) {
		if !json.Valid(result) || !utf8.Valid(result) || len(result) == 0 || result[0] != '{' {
			return // the decoder refuses what the upstream sends otherwise
		}
		ch := newChain(t, typical(), info, func(_ context.Context, m *core.Message) (*core.Message, error) {
			return core.ResultResponse(m.ID, result), nil
		})
		q, _ := json.Marshal(method)
		params := `{}`
		if method == "tools/call" {
			params = `{"name":"search_x","arguments":{}}`
		}
		resp := ch.send(t, fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":%s,"params":%s}`, q, params))
		if _, err := core.Decode(resp.Raw); err != nil {
			t.Fatalf("%s → invalid response %q: %v", result, resp.Raw, err)
		}
		if method == "tools/list" && resp.Kind == core.KindResponse {
			var any map[string]json.RawMessage
			_ = json.Unmarshal(resp.Result, &any)
			for k, v := range any {
				if strings.EqualFold(k, "tools") && strings.Contains(strings.ToLower(string(v)), `"delete`) {
					t.Fatalf("%s → a denied tool passed: %s", result, resp.Result)
				}
			}
		}
	})
}

// TestBadArguments: arguments a server could read otherwise than the
// stage, or too deep to read, are refused with a precise error and never
// go upstream.
func TestBadArguments(t *testing.T) {
	t.Parallel()
	upstreamCalls := 0
	ch := newChain(t, typical(), &core.SessionInfo{Principal: "ana", Tenant: "acme", Groups: []string{"analysts"}}, func(_ context.Context, m *core.Message) (*core.Message, error) {
		upstreamCalls++
		return core.ResultResponse(m.ID, []byte(`{"content":[]}`)), nil
	})
	deep := strings.Repeat(`{"a":`, policy.MaxDepth+1) + "1" + strings.Repeat("}", policy.MaxDepth+1)
	for _, tc := range []struct{ params, want string }{
		{`{"name":"query","arguments":{"sql":"SELECT 1","SQL":"DROP TABLE t"}}`, `the keys "sql" and "SQL" of one object differ only in letter case`},
		{`{"name":"query","arguments":{"sql":"SELECT 1","sql":"DROP TABLE t"}}`, `the keys "sql" and "sql"`},
		{`{"name":"query","arguments":{"sql":"SELECT 1"},"Arguments":{"sql":"DROP TABLE t"}}`, `params hold "arguments" more than once`},
		{`{"name":"query","arguments":{"q":{"sql":"x","Sql":"y"}}}`, `the keys "sql" and "Sql"`},
		{`{"name":"query","arguments":` + deep + `}`, "nested deeper than 64 levels"},
		{`{"name":"query","arguments":[1]}`, "not a JSON object"},
		{`{"name":"query","arguments":{"sql":"DROP TABLE t"}}`, "only SELECT (policy \"sql\", rules[0])"},
		{`{"name":"query","arguments":{}}`, "the rule could not be evaluated: no such key: sql"},
	} {
		resp := ch.send(t, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":`+tc.params+`}`)
		if resp.Kind != core.KindResponse || !strings.Contains(string(resp.Result), `"isError":true`) || !strings.Contains(string(resp.Result), jsonText(tc.want)) {
			t.Errorf("%.60s: %s", tc.params, resp.Raw)
		}
	}
	if upstreamCalls != 0 {
		t.Errorf("%d refused calls went upstream", upstreamCalls)
	}
	if resp := ch.send(t, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"query","arguments":{"sql":"SELECT 1","limit":5}}}`); strings.Contains(string(resp.Result), "isError") || upstreamCalls != 1 {
		t.Errorf("a good call: %s", resp.Raw)
	}
}

// jsonText is s as it appears inside a JSON string.
func jsonText(s string) string {
	q, _ := json.Marshal(s)
	return string(q[1 : len(q)-1])
}

// TestResourcesPromptsCompletions: the resource and prompt lists apply to
// every method that names one.
func TestResourcesPromptsCompletions(t *testing.T) {
	t.Parallel()
	ch := newChain(t, typical(), &core.SessionInfo{Principal: "ana", Tenant: "acme"}, func(_ context.Context, m *core.Message) (*core.Message, error) {
		return core.ResultResponse(m.ID, []byte(`{}`)), nil
	})
	for _, tc := range []struct {
		req     string
		refused bool
	}{
		{`{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"file:///etc/passwd"}}`, true},
		{`{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"file:///srv/public/a/b.txt"}}`, false},
		{`{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"admin_reset"}}`, true},
		{`{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"admin_x"},"argument":{"name":"a","value":""}}}`, true},
		{`{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"file:///srv/private/{x}"},"argument":{"name":"x","value":""}}}`, true},
		{`{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"greet"},"argument":{"name":"a","value":""}}}`, false},
	} {
		resp := ch.send(t, tc.req)
		if (resp.Kind == core.KindError) != tc.refused || (tc.refused && resp.ErrorCode() != core.CodePolicyDenied) {
			t.Errorf("%s: %s", tc.req, resp.Raw)
		}
	}
}

// TestServerMessages: notifications and server requests are redacted;
// one that matches a block pattern is withheld.
func TestServerMessages(t *testing.T) {
	t.Parallel()
	info := &core.SessionInfo{Principal: "ana", Tenant: "acme"}
	set, err := policy.New("tools", typical(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []*core.Message
	c, err := pipeline.Build("tools", nil, func(_ context.Context, m *core.Message) (*core.Message, error) {
		got = append(got, m)
		return nil, nil
	}, []pipeline.Stage{set.Stage()})
	if err != nil {
		t.Fatal(err)
	}
	info.Stages = new(core.StageHolder)
	c.Enter(info)
	send := func(raw string) error {
		m, err := core.Decode([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		m.Session, m.Direction = info, core.ServerToClient
		_, err = c.ServerToClient(context.Background(), m)
		return err
	}
	if err := send(`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"key AKIAIOSFODNN7EXAMPLE"}}`); err != nil {
		t.Fatal(err)
	}
	if err := send(`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"-----BEGIN PRIVATE KEY-----\nMII"}}`); err != nil {
		t.Fatal(err)
	}
	err = send(`{"jsonrpc":"2.0","id":"s1","method":"sampling/createMessage","params":{"messages":[{"role":"user","content":{"type":"text","text":"-----BEGIN EC PRIVATE KEY-----"}}],"maxTokens":5}}`)
	if e := core.AsError(err); err == nil || e.Code != core.CodePolicyDenied {
		t.Errorf("blocked server request: %v", err)
	}
	if err := send(`{"jsonrpc":"2.0","id":"s2","method":"sampling/createMessage","params":{"messages":[{"role":"user","content":{"type":"text","text":"token ghp_0123456789abcdefghijABCDEFGHIJ012345"}}],"maxTokens":5}}`); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !strings.Contains(string(got[0].Raw), "[REDACTED:aws-access-key]") || got[1].ID != `"s2"` || !strings.Contains(string(got[1].Raw), "[REDACTED:github-token]") {
		for _, m := range got {
			t.Logf("delivered %s", m.Raw)
		}
		t.Fatalf("%d delivered", len(got))
	}
}
