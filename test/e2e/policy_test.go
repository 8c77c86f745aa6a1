package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/auth"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/gateway"
	"github.com/mcpgate/mcpgate/internal/pipeline"
)

// The secrets the policy server hands out, as a careless server would.
const (
	polAWSKey  = "AKIAIOSFODNN7EXAMPLE"
	polJWT     = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
	polGitHub  = "ghp_0123456789abcdefghijABCDEFGHIJ012345"
	polPEM     = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----"
	polEmpID   = "EMP-004217"
	polQuerySQ = `{"type":"object","properties":{"sql":{"type":"string","minLength":1},"limit":{"type":"integer","minimum":1,"maximum":100}},"required":["sql"],"additionalProperties":false}`
)

// policyServer is a go-sdk server with tools, resources and prompts a
// policy can allow, deny, validate and redact; it lists two per page, so
// every list crosses pages. calls records the tools that really ran.
type policyServer struct {
	URL   string
	mu    sync.Mutex
	calls []string
}

func (p *policyServer) ran() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.calls)
}

func startPolicyServer(t testing.TB, stateless bool) *policyServer {
	t.Helper()
	ps := &policyServer{}
	srv := mcp.NewServer(&mcp.Implementation{Name: "policy-server", Version: "1.0.0"}, &mcp.ServerOptions{PageSize: 2})
	text := func(name, s string) mcp.ToolHandler {
		return func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			ps.mu.Lock()
			ps.calls = append(ps.calls, name)
			ps.mu.Unlock()
			if name == "notify" {
				_ = req.Session.Log(ctx, &mcp.LoggingMessageParams{Level: "info", Data: "deploying with key " + polAWSKey})
			}
			if s == "" {
				s = string(req.Params.Arguments)
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}, nil
		}
	}
	obj := json.RawMessage(`{"type":"object"}`)
	for _, tool := range []struct{ name, out string }{
		{"search_docs", ""}, {"get_item", "item 7"}, {"delete_repo", "deleted"}, {"purge_cache", "purged"},
		{"leak", "aws " + polAWSKey + " jwt " + polJWT + " gh " + polGitHub + " employee " + polEmpID},
		{"dump_key", "here it is:\n" + polPEM}, {"notify", "done"},
	} {
		srv.AddTool(&mcp.Tool{Name: tool.name, InputSchema: obj}, text(tool.name, tool.out))
	}
	srv.AddTool(&mcp.Tool{Name: "query", InputSchema: json.RawMessage(polQuerySQ)}, text("query", ""))
	res := func(uri, body string) {
		srv.AddResource(&mcp.Resource{URI: uri, Name: uri[strings.LastIndex(uri, "/")+1:], MIMEType: "text/plain"},
			func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
				return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, MIMEType: "text/plain", Text: body}}}, nil
			})
	}
	res("file:///srv/public/readme.txt", "token "+polGitHub)
	res("file:///srv/public/guide.txt", "guide")
	res("file:///srv/private/keys.txt", "private")
	srv.AddResourceTemplate(&mcp.ResourceTemplate{URITemplate: "file:///srv/private/{name}", Name: "private"}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return nil, fmt.Errorf("no")
	})
	srv.AddResourceTemplate(&mcp.ResourceTemplate{URITemplate: "file:///srv/public/{name}", Name: "public"}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return nil, fmt.Errorf("no")
	})
	for _, name := range []string{"greet", "admin_reset", "summarize"} {
		srv.AddPrompt(&mcp.Prompt{Name: name}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: "use key " + polAWSKey}}}}, nil
		})
	}
	h := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, &mcp.StreamableHTTPOptions{Stateless: stateless}))
	t.Cleanup(h.Close)
	ps.URL = h.URL + "/"
	return ps
}

// decisions collects the Decision events of a gateway's routes, as an
// audit stage would see them.
type decisions struct {
	mu  sync.Mutex
	evs []pipeline.Event
}

func (d *decisions) stage() pipeline.Stage {
	return pipeline.Stage{Name: "audit", Observe: func(_ context.Context, ev *pipeline.Event) {
		if ev.Kind == pipeline.Decision {
			d.mu.Lock()
			d.evs = append(d.evs, *ev)
			d.mu.Unlock()
		}
	}}
}

func (d *decisions) has(policy, rule, action string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.ContainsFunc(d.evs, func(ev pipeline.Event) bool {
		return ev.Policy == policy && ev.Rule == rule && ev.Action == action
	})
}

// startPolicyGateway runs a gateway with policies in front of url; keys
// are API keys with their principals and groups (none: anonymous).
func startPolicyGateway(t *testing.T, url string, pols []config.Policy, keys []config.APIKey) (*gw, *decisions) {
	t.Helper()
	g, d, _ := startPolicyGatewayWith(t, url, pols, keys, nil)
	return g, d
}

// startPolicyGatewayWith is startPolicyGateway with the configuration
// edited by mutate; stop shuts the gateway down.
func startPolicyGatewayWith(t *testing.T, url string, pols []config.Policy, keys []config.APIKey, mutate func(*config.Config)) (g *gw, d *decisions, stop func()) {
	t.Helper()
	cfg := &config.Config{Listeners: []config.Listener{{Address: "127.0.0.1:0"}}, Routes: []config.Route{httpRoute("tools", "/mcp", url)}, Policies: pols}
	cfg.Server.ShutdownTimeout = 5 * time.Second
	cfg.Store.Kind = config.StoreMemory
	if len(keys) > 0 {
		cfg.Auth = &config.Auth{APIKeys: keys}
	}
	if mutate != nil {
		mutate(cfg)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	d = &decisions{}
	gg, err := gateway.New(cfg, gateway.Options{Logger: testLogger(t), Stages: func(string) []pipeline.Stage { return []pipeline.Stage{d.stage()} }})
	if err != nil {
		t.Fatal(err)
	}
	stop = runGateway(t, gg)
	return &gw{Gateway: gg, URL: "http://" + gg.Addrs()[0].String()}, d, stop
}

func toolText(t testing.TB, r *mcp.CallToolResult) string {
	t.Helper()
	if r == nil {
		return ""
	}
	var b strings.Builder
	for _, c := range r.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

func listToolNames(ctx context.Context, t testing.TB, cs *mcp.ClientSession) []string {
	t.Helper()
	var names []string
	for tool, err := range cs.Tools(ctx, nil) {
		if err != nil {
			t.Fatalf("tools/list: %v", err)
		}
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	return names
}

var guestPolicy = config.Policy{
	Name:      "guests-read-only",
	Tools:     &config.PolicyList{Allow: []string{"search_*", "get_*", "query", "leak", "dump_key", "notify"}, Deny: []string{"*delete*"}},
	Resources: &config.PolicyList{Allow: []string{"file:///srv/public/**"}},
	Prompts:   &config.PolicyList{Deny: []string{"admin_*"}},
	Rules: []config.PolicyRule{
		{Deny: `tool == "query" && !args.sql.startsWith("SELECT")`, Message: "only SELECT queries are allowed"},
		{Deny: `method == "tools/call" && has(args.limit) && args.limit > 50 && !("admins" in groups)`, Message: "at most 50 rows"},
	},
	ValidateInput: true,
	Redact: []config.PolicyRedact{
		{Pattern: `EMP-\d{6}`, Replace: "[REDACTED:employee-id]"},
		{Detectors: []string{"secrets"}},
	},
	Block: []config.PolicyBlock{{Pattern: `-----BEGIN [A-Z ]*PRIVATE KEY-----`}},
}

// TestPolicyEnforced runs one policy of every kind against a real go-sdk
// server and client, in both eras: lists filtered across pages, denied
// calls refused with the policy's name, CEL rules, schema validation a
// model can read, redaction of results, resources, prompts and
// notifications, and a blocked result; every decision reaches the audit
// position with its policy and rule.
func TestPolicyEnforced(t *testing.T) {
	t.Parallel()
	for _, era := range []struct {
		name      string
		stateless bool
		version   string
	}{{"legacy", false, core.Version20251125}, {"modern", true, core.Version20260728}, {"modern-over-legacy", false, core.Version20260728}} {
		t.Run(era.name, func(t *testing.T) {
			t.Parallel()
			ps := startPolicyServer(t, era.stateless)
			g, d := startPolicyGateway(t, ps.URL, []config.Policy{guestPolicy}, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			logs := make(chan string, 8)
			c := mcp.NewClient(&mcp.Implementation{Name: "policy-e2e", Version: "1"}, &mcp.ClientOptions{
				LoggingMessageHandler: func(_ context.Context, r *mcp.LoggingMessageRequest) {
					b, _ := json.Marshal(r.Params.Data)
					logs <- string(b)
				},
			})
			cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: g.URL + "/mcp", MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: era.version})
			if err != nil {
				t.Fatal(err)
			}
			defer cs.Close()

			if got, want := listToolNames(ctx, t, cs), []string{"dump_key", "get_item", "leak", "notify", "query", "search_docs"}; !slices.Equal(got, want) {
				t.Errorf("tools: %v; want %v", got, want)
			}
			if !d.has("guests-read-only", "tools.deny[0]", pipeline.ActionFilter) && !d.has("guests-read-only", "tools.allow", pipeline.ActionFilter) {
				t.Error("no filter decision")
			}
			var uris []string
			for r, err := range cs.Resources(ctx, nil) {
				if err != nil {
					t.Fatal(err)
				}
				uris = append(uris, r.URI)
			}
			slices.Sort(uris)
			if want := []string{"file:///srv/public/guide.txt", "file:///srv/public/readme.txt"}; !slices.Equal(uris, want) {
				t.Errorf("resources: %v", uris)
			}
			var templates []string
			for r, err := range cs.ResourceTemplates(ctx, nil) {
				if err != nil {
					t.Fatal(err)
				}
				templates = append(templates, r.URITemplate)
			}
			if !slices.Equal(templates, []string{"file:///srv/public/{name}"}) {
				t.Errorf("templates: %v", templates)
			}
			var prompts []string
			for p, err := range cs.Prompts(ctx, nil) {
				if err != nil {
					t.Fatal(err)
				}
				prompts = append(prompts, p.Name)
			}
			slices.Sort(prompts)
			if !slices.Equal(prompts, []string{"greet", "summarize"}) {
				t.Errorf("prompts: %v", prompts)
			}

			call := func(name string, args any) *mcp.CallToolResult {
				t.Helper()
				r, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				return r
			}
			// Denied by glob: a tool error naming the policy, never upstream.
			for _, name := range []string{"delete_repo", "purge_cache"} {
				r := call(name, map[string]any{})
				if !r.IsError || !strings.Contains(toolText(t, r), `policy "guests-read-only"`) {
					t.Errorf("%s: %+v %q", name, r.IsError, toolText(t, r))
				}
			}
			if !d.has("guests-read-only", "tools.deny[0]", pipeline.ActionDeny) || !d.has("guests-read-only", "tools.allow", pipeline.ActionDeny) {
				t.Error("deny decisions missing")
			}
			// The CEL rules.
			if r := call("query", map[string]any{"sql": "DROP TABLE users"}); !r.IsError || !strings.Contains(toolText(t, r), "only SELECT queries are allowed") {
				t.Errorf("DROP: %q", toolText(t, r))
			}
			if r := call("query", map[string]any{"sql": "SELECT 1", "limit": 80}); !r.IsError || !strings.Contains(toolText(t, r), "at most 50 rows") || !strings.Contains(toolText(t, r), "rules[1]") {
				t.Errorf("limit 80: %q", toolText(t, r))
			}
			if r := call("query", map[string]any{"sql": "SELECT 1", "limit": 5}); r.IsError || !strings.Contains(toolText(t, r), "SELECT 1") {
				t.Errorf("SELECT: %v %q", r.IsError, toolText(t, r))
			}
			// Schema validation: which argument, which rule.
			r := call("query", map[string]any{"sql": "SELECT 1", "limit": "ten", "extra": true})
			txt := toolText(t, r)
			if !r.IsError || !strings.Contains(txt, "argument /limit") || !strings.Contains(txt, "/properties/limit/type") || !strings.Contains(txt, "additionalProperties") || !strings.Contains(txt, "extra") {
				t.Errorf("invalid arguments: %q", txt)
			}
			if !d.has("guests-read-only", "validate_input", pipeline.ActionInvalid) {
				t.Error("no invalid decision")
			}
			// Redaction with the detectors and the operator's pattern.
			txt = toolText(t, call("leak", map[string]any{}))
			for _, secret := range []string{polAWSKey, polJWT, polGitHub, polEmpID} {
				if strings.Contains(txt, secret) {
					t.Errorf("leak shows %s: %q", secret, txt)
				}
			}
			for _, mark := range []string{"[REDACTED:aws-access-key]", "[REDACTED:jwt]", "[REDACTED:github-token]", "[REDACTED:employee-id]"} {
				if !strings.Contains(txt, mark) {
					t.Errorf("leak lacks %s: %q", mark, txt)
				}
			}
			if !d.has("guests-read-only", "redact[0]", pipeline.ActionRedact) && !d.has("guests-read-only", "redact[1]:aws-access-key", pipeline.ActionRedact) {
				t.Error("no redact decision")
			}
			// Block: the whole result is withheld.
			if r := call("dump_key", map[string]any{}); !r.IsError || strings.Contains(toolText(t, r), "MIIE") || !strings.Contains(toolText(t, r), "block[0]") {
				t.Errorf("dump_key: %q", toolText(t, r))
			}
			// Resources: denied is a JSON-RPC error naming the policy;
			// allowed contents are redacted.
			if _, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "file:///srv/private/keys.txt"}); err == nil || !strings.Contains(err.Error(), "guests-read-only") {
				t.Errorf("private resource: %v", err)
			}
			rr, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "file:///srv/public/readme.txt"})
			if err != nil || len(rr.Contents) != 1 || rr.Contents[0].Text != "token [REDACTED:github-token]" {
				t.Errorf("readme: %v %+v", err, rr)
			}
			// Prompts: denied, and messages redacted.
			if _, err := cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: "admin_reset"}); err == nil || !strings.Contains(err.Error(), "guests-read-only") {
				t.Errorf("admin_reset: %v", err)
			}
			gp, err := cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: "greet"})
			if err != nil || len(gp.Messages) != 1 || gp.Messages[0].Content.(*mcp.TextContent).Text != "use key [REDACTED:aws-access-key]" {
				t.Errorf("greet: %v %+v", err, gp)
			}
			// Notifications: a log message carrying a key arrives redacted.
			if era.version == core.Version20251125 {
				if err := cs.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: "debug"}); err != nil {
					t.Fatal(err)
				}
				call("notify", map[string]any{})
				select {
				case l := <-logs:
					if strings.Contains(l, polAWSKey) || !strings.Contains(l, "[REDACTED:aws-access-key]") {
						t.Errorf("log notification %s", l)
					}
				case <-ctx.Done():
					t.Error("no log notification")
				}
			}
			for _, name := range ps.ran() {
				if name == "delete_repo" || name == "purge_cache" {
					t.Errorf("%s reached the server", name)
				}
			}
			if n := strings.Count(strings.Join(ps.ran(), ","), "query"); n != 1 {
				t.Errorf("query ran %d times upstream; only the valid SELECT may", n)
			}
		})
	}
}

// TestPolicyPerGroup: two API-key principals on one route, one in a group a
// policy matches: each sees and may call what its policies say.
func TestPolicyPerGroup(t *testing.T) {
	t.Parallel()
	guest, _ := auth.NewKey()
	admin, _ := auth.NewKey()
	ps := startPolicyServer(t, false)
	pols := []config.Policy{
		{Name: "guests", Match: config.PolicyMatch{Groups: []string{"guest"}}, Tools: &config.PolicyList{Allow: []string{"search_*", "get_*"}}},
		{Name: "everyone", Tools: &config.PolicyList{Deny: []string{"purge_*"}}},
		{Name: "admins-only-acme", Match: config.PolicyMatch{Tenants: []string{"acme"}, Groups: []string{"admins"}},
			Rules: []config.PolicyRule{{Deny: `tool == "delete_repo" && principal != "root"`, Message: "only root deletes"}}},
	}
	g, d := startPolicyGateway(t, ps.URL, pols, []config.APIKey{
		{KeySHA256: auth.HashKey(guest), Principal: "gina", Tenant: "acme", Groups: []string{"guest"}},
		{KeySHA256: auth.HashKey(admin), Principal: "ada", Tenant: "acme", Groups: []string{"admins"}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, gh := newBearerClient(guest)
	_, ah := newBearerClient(admin)
	gs := connectSDK(ctx, t, g.URL+"/mcp", core.Version20251125, gh)
	as := connectSDK(ctx, t, g.URL+"/mcp", core.Version20251125, ah)
	if got := listToolNames(ctx, t, gs); !slices.Equal(got, []string{"get_item", "search_docs"}) {
		t.Errorf("guest sees %v", got)
	}
	if got := listToolNames(ctx, t, as); slices.Contains(got, "purge_cache") || !slices.Contains(got, "delete_repo") || len(got) != 7 {
		t.Errorf("admin sees %v", got)
	}
	for _, c := range []struct {
		cs      *mcp.ClientSession
		tool    string
		refused string
	}{
		{gs, "search_docs", ""}, {gs, "delete_repo", `policy "guests"`}, {gs, "purge_cache", `policy "guests"`},
		{as, "search_docs", ""}, {as, "purge_cache", `policy "everyone"`}, {as, "delete_repo", "only root deletes"},
	} {
		r, err := c.cs.CallTool(ctx, &mcp.CallToolParams{Name: c.tool, Arguments: map[string]any{}})
		if err != nil {
			t.Fatal(err)
		}
		if got := toolText(t, r); (c.refused == "") == r.IsError || (c.refused != "" && !strings.Contains(got, c.refused)) {
			t.Errorf("%s: isError %v %q; want refusal %q", c.tool, r.IsError, got, c.refused)
		}
	}
	if !d.has("admins-only-acme", "rules[0]", pipeline.ActionDeny) || !d.has("everyone", "tools.deny[0]", pipeline.ActionDeny) {
		t.Error("decisions missing")
	}
}

// smugglingServer answers tools/list with pages written to slip a denied
// tool past a filter: a second copy of the tools member, names in another
// letter case, a denied tool on a later page.
func smugglingServer(t testing.TB) string {
	t.Helper()
	h := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params struct {
				Cursor string `json:"cursor"`
			} `json:"params"`
		}
		if r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&req) != nil {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		if req.ID == nil {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		var result string
		switch {
		case req.Method == "initialize":
			result = `{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"smuggler","version":"1"}}`
		case req.Method == "tools/list" && req.Params.Cursor == "":
			result = `{"tools":[{"name":"search_a","inputSchema":{"type":"object"}}],"nextCursor":"p2"}`
		case req.Method == "tools/list" && req.Params.Cursor == "p2":
			result = `{"tools":[{"name":"delete_all","inputSchema":{"type":"object"}},{"name":"search_b","Name":"delete_b","inputSchema":{"type":"object"}}],` +
				`"nextCursor":"p3","TOOLS":[{"name":"delete_c","inputSchema":{"type":"object"}}]}`
		case req.Method == "tools/list" && req.Params.Cursor == "p3":
			result = `{"tools":[{"name":"search_c","inputSchema":{"type":"object"}}],"tools":[{"name":"delete_d","inputSchema":{"type":"object"}}]}`
		case req.Method == "tools/call":
			result = `{"content":[{"type":"text","text":"ran"}]}`
		default:
			result = `{}`
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Mcp-Session-Id", "smuggler-session")
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":%s}`, req.ID, result)
	}))
	t.Cleanup(h.Close)
	return h.URL + "/"
}

// TestPolicyPaginationSmuggling: every page is filtered, whatever copy or
// spelling carries the denied tools; the cursors stay as the server gave
// them, so the client reads every page.
func TestPolicyPaginationSmuggling(t *testing.T) {
	t.Parallel()
	url := smugglingServer(t)
	g, _ := startPolicyGateway(t, url, []config.Policy{{Name: "no-deletes", Tools: &config.PolicyList{Deny: []string{"delete_*"}}}}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cs := connectSDK(ctx, t, g.URL+"/mcp", core.Version20251125, nil)
	if got := listToolNames(ctx, t, cs); !slices.Equal(got, []string{"search_a", "search_c"}) {
		t.Errorf("tools %v", got)
	}
	// Raw pages: the smuggled copies are gone, the cursor kept.
	res, err := cs.ListTools(ctx, &mcp.ListToolsParams{Cursor: "p2"})
	if err != nil || res.NextCursor != "p3" || len(res.Tools) != 0 {
		t.Errorf("page 2: %v %+v", err, res)
	}
	r, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "delete_b", Arguments: map[string]any{}})
	if err != nil || !r.IsError {
		t.Errorf("delete_b: %v %+v", err, r)
	}
}

// TestPolicyValidationBeforeListing: a call made before the client listed
// the tools is validated too (the stage lists them itself), and a route
// without a matching policy has no policy stage.
func TestPolicyValidationBeforeListing(t *testing.T) {
	t.Parallel()
	ps := startPolicyServer(t, false)
	g, _ := startPolicyGateway(t, ps.URL, []config.Policy{{Name: "validate", ValidateInput: true}}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cs := connectSDK(ctx, t, g.URL+"/mcp", core.Version20251125, nil)
	r, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "query", Arguments: map[string]any{"limit": 0}})
	if err != nil {
		t.Fatal(err)
	}
	txt := toolText(t, r)
	if !r.IsError || !strings.Contains(txt, "sql") || !strings.Contains(txt, "/required") || !strings.Contains(txt, "argument /limit") {
		t.Errorf("unlisted call: %q", txt)
	}
	if slices.Contains(ps.ran(), "query") {
		t.Error("an invalid call reached the server")
	}
	r, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "no_such_tool", Arguments: map[string]any{}})
	if err != nil || !r.IsError || !strings.Contains(toolText(t, r), "not in the server's tool list") {
		t.Errorf("unknown tool: %v %q", err, toolText(t, r))
	}
}

// jsonMessages reads the JSON-RPC messages of a response body, JSON (one
// message or a batch) or SSE.
func jsonMessages(t testing.TB, body string) []map[string]json.RawMessage {
	t.Helper()
	var raws []string
	if strings.HasPrefix(strings.TrimSpace(body), "[") || strings.HasPrefix(strings.TrimSpace(body), "{") {
		raws = []string{body}
	} else {
		for _, line := range strings.Split(body, "\n") {
			if d, ok := strings.CutPrefix(line, "data: "); ok && strings.TrimSpace(d) != "" {
				raws = append(raws, d)
			}
		}
	}
	var out []map[string]json.RawMessage
	for _, r := range raws {
		var batch []map[string]json.RawMessage
		if json.Unmarshal([]byte(r), &batch) == nil {
			out = append(out, batch...)
			continue
		}
		var one map[string]json.RawMessage
		if err := json.Unmarshal([]byte(r), &one); err != nil {
			t.Fatalf("not JSON-RPC: %q", r)
		}
		out = append(out, one)
	}
	return out
}

// TestPolicyBatchAndRestore: the policy holds for every message of a
// batch, and for a session the gateway restored after a restart (its
// catalog empty: the stage lists the tools itself to validate a call).
func TestPolicyBatchAndRestore(t *testing.T) {
	t.Parallel()
	ps := startPolicyServer(t, false)
	pol := []config.Policy{{Name: "p", Tools: &config.PolicyList{Deny: []string{"delete_*"}}, ValidateInput: true,
		Redact: []config.PolicyRedact{{Detectors: []string{"secrets"}}}}}
	addr, dir := freeAddr(t), t.TempDir()
	persist := func(c *config.Config) {
		c.Listeners[0].Address = addr
		c.Store.Kind, c.Store.DataDir = config.StoreEmbedded, dir
	}
	g, _, stop := startPolicyGatewayWith(t, ps.URL, pol, nil, persist)
	url := g.URL + "/mcp"
	// Batches exist in 2025-03-26.
	id := sessionAt(t, url, "2025-03-26")
	batch := `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_repo","arguments":{}}},` +
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"leak","arguments":{}}},` +
		`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"query","arguments":{"sql":7}}}]`
	r := do(t, "POST", url, batch, sessHdr(id, "2025-03-26"))
	msgs := jsonMessages(t, r.Body)
	if r.Status != http.StatusOK || len(msgs) != 3 {
		t.Fatalf("batch: %d %s", r.Status, r.Body)
	}
	for _, m := range msgs {
		res := string(m["result"])
		switch string(m["id"]) {
		case "1":
			if !strings.Contains(res, `"isError":true`) || !strings.Contains(res, `policy \"p\"`) {
				t.Errorf("delete_repo in a batch: %s", res)
			}
		case "2":
			if strings.Contains(res, polAWSKey) || !strings.Contains(res, "[REDACTED:aws-access-key]") {
				t.Errorf("leak in a batch: %s", res)
			}
		case "3":
			if !strings.Contains(res, `"isError":true`) || !strings.Contains(res, "/properties/sql/type") {
				t.Errorf("query in a batch: %s", res)
			}
		}
	}

	// A go-sdk session listed the tools before the restart.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Retries on: the client reconnects its stream to the new gateway.
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "policy-e2e", Version: "1"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: url}, &mcp.ClientSessionOptions{ProtocolVersion: core.Version20251125})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if got := listToolNames(ctx, t, cs); slices.Contains(got, "delete_repo") {
		t.Fatalf("tools %v", got)
	}
	stop()
	startPolicyGatewayWith(t, ps.URL, pol, nil, persist)
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "query", Arguments: map[string]any{"sql": ""}})
	if err != nil || !res.IsError || !strings.Contains(toolText(t, res), "argument /sql") || !strings.Contains(toolText(t, res), "minLength") {
		t.Errorf("restored session, invalid query: %v %q", err, toolText(t, res))
	}
	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "delete_repo", Arguments: map[string]any{}})
	if err != nil || !res.IsError {
		t.Errorf("restored session, delete_repo: %v %+v", err, res)
	}
	if slices.Contains(ps.ran(), "delete_repo") || slices.Contains(ps.ran(), "query") {
		t.Errorf("refused calls reached the server: %v", ps.ran())
	}
}

// TestPolicyTypeScriptClient: the TypeScript SDK client sees the same
// policy as the go-sdk clients.
func TestPolicyTypeScriptClient(t *testing.T) {
	t.Parallel()
	ps := startPolicyServer(t, false)
	g, _ := startPolicyGateway(t, ps.URL, []config.Policy{guestPolicy}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	runTSClient(ctx, t, 7, nil, "policy.mjs", g.URL+"/mcp")
}

// TestPolicyReload: a reload that changes the policies applies to live
// sessions from their next message; a reload that removes them takes the
// policy stage out of the route.
func TestPolicyReload(t *testing.T) {
	t.Parallel()
	ps := startPolicyServer(t, false)
	g, _ := startPolicyGateway(t, ps.URL, []config.Policy{{Name: "first", Tools: &config.PolicyList{Deny: []string{"delete_*"}}}}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, changed := listChangedClient(ctx, t, g.URL+"/mcp", core.Version20251125)
	refusedBy := func(tool string) string {
		t.Helper()
		r, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: map[string]any{}})
		if err != nil {
			t.Fatal(err)
		}
		if !r.IsError {
			return ""
		}
		return toolText(t, r)
	}
	if !strings.Contains(refusedBy("delete_repo"), `"first"`) || refusedBy("purge_cache") != "" {
		t.Fatal("first policy not in force")
	}
	next := func(pols []config.Policy) {
		t.Helper()
		cfg := reloadConfig(t, func(c *config.Config) { c.Policies = pols }, httpRoute("tools", "/mcp", ps.URL))
		if err := g.Reload(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	next([]config.Policy{{Name: "second", Tools: &config.PolicyList{Deny: []string{"purge_*"}}}})
	// The session is told its tools changed (its GET stream is open: the
	// go-sdk client opens one after initialize).
	waitFor(t, "notifications/tools/list_changed after the reload", func() bool { return changed.Load() >= 1 })
	if refusedBy("delete_repo") != "" || !strings.Contains(refusedBy("purge_cache"), `"second"`) {
		t.Error("second policy not in force after reload")
	}
	next(nil)
	if refusedBy("delete_repo") != "" || refusedBy("purge_cache") != "" {
		t.Error("a policy still applies after the reload removed them")
	}
}

// TestPolicyReloadModernListChanged: a 2026-07-28 client, which listens
// for list changes through subscriptions/listen, hears that its tools
// changed when a reload changes the route's policies.
func TestPolicyReloadModernListChanged(t *testing.T) {
	t.Parallel()
	ps := startPolicyServer(t, false)
	g, _ := startPolicyGateway(t, ps.URL, []config.Policy{{Name: "first", Tools: &config.PolicyList{Deny: []string{"delete_*"}}}}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, changed := listChangedClient(ctx, t, g.URL+"/mcp", core.Version20260728)
	if _, err := cs.ListTools(ctx, nil); err != nil {
		t.Fatal(err)
	}
	cfg := reloadConfig(t, func(c *config.Config) {
		c.Policies = []config.Policy{{Name: "second", Tools: &config.PolicyList{Deny: []string{"purge_*"}}}}
	}, httpRoute("tools", "/mcp", ps.URL))
	// The client's listen stream may still be on its way: reload until it
	// hears one (each reload changes the policies, and tells it).
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; changed.Load() == 0; i++ {
		if time.Now().After(deadline) {
			t.Fatal("no notifications/tools/list_changed reached the 2026-07-28 client")
		}
		cfg.Policies[0].Name = fmt.Sprintf("second-%d", i)
		if err := g.Reload(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// listChangedClient connects a go-sdk client at version to url, counting
// the notifications/tools/list_changed it hears; closed with the test.
func listChangedClient(ctx context.Context, t *testing.T, url, version string) (*mcp.ClientSession, *atomic.Int32) {
	t.Helper()
	changed := new(atomic.Int32)
	c := mcp.NewClient(&mcp.Implementation{Name: "policy-reload", Version: "1"}, &mcp.ClientOptions{
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) { changed.Add(1) },
	})
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs, changed
}
