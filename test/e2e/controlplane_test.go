package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/admin"
	"github.com/mcpgate/mcpgate/internal/auth"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/gateway"
	"github.com/mcpgate/mcpgate/internal/testutil/nodetool"
)

// TestControlPlaneFromOutside: the mcpgate binary with the admin MCP
// server on. The MCP Inspector's CLI drives it in each protocol era (a
// tool and a resource); `mcpgate ctl` applies a file; an edit of the file
// the gateway runs from and a SIGHUP each reload it; the history says who
// applied each version and how.
func TestControlPlaneFromOutside(t *testing.T) {
	t.Parallel()
	script := nodetool.Bin(t, inspectorPackage, "clients/launcher/build/index.js")
	key, _ := auth.NewKey()
	addr, adminAddr := freeAddr(t), freeAddr(t)
	write := func(path string, max int) {
		cfg := fmt.Sprintf(`listeners: [{address: "%s"}]
store: {kind: memory}
sessions: {max: %d}
admin:
  listen: "%s"
  mcp: {enabled: true, api_keys: [{key_sha256: %s, role: admin, principal: ops}]}
routes:
  - {name: fixture, path: /mcp, upstream: {stdio: {command: "%s"}}}
`, addr, max, adminAddr, auth.HashKey(key), fixtureBin)
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "mcpgate.yaml")
	write(path, 100)
	p := startProcess(t, mcpgateBin, "--config", path)
	adminURL := "http://" + adminAddr + "/mcp"

	catalog := filepath.Join(t.TempDir(), "mcp.json")
	for _, era := range []string{"legacy", "modern", "auto"} {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"--method", "tools/call", "--tool-name", "sessions_list"}, `"total"`},
			{[]string{"--method", "resources/read", "--uri", "mcpgate://config"}, "api_keys"},
		} {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			argv := append([]string{"--cli", adminURL, "--transport", "http", "--protocol-era", era,
				"--header", "Authorization: Bearer " + key, "--format", "json", "--quiet"}, tc.args...)
			c := nodetool.Command(ctx, t, script, argv...)
			c.Env = append(c.Env, "MCP_CATALOG_PATH="+catalog, "HOME="+t.TempDir())
			var stdout, stderr bytes.Buffer
			c.Stdout, c.Stderr = &stdout, &stderr
			err := c.Run()
			cancel()
			if err != nil || !strings.Contains(stdout.String(), tc.want) {
				t.Fatalf("inspector --protocol-era %s %v: %v\nstdout: %s\nstderr: %s", era, tc.args, err, stdout.String(), stderr.String())
			}
		}
	}

	ctl := func(args ...string) string {
		t.Helper()
		c := exec.Command(mcpgateBin, append([]string{"ctl", "--url", adminURL}, args...)...)
		c.Env = append(os.Environ(), "MCPGATE_ADMIN_KEY="+key)
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("mcpgate ctl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	next := filepath.Join(dir, "next.yaml")
	write(next, 50)
	if out := ctl("config", "apply", next); !strings.Contains(out, "applied as version 2") {
		t.Fatalf("ctl config apply: %s", out)
	}
	write(path, 40) // the file the gateway runs from
	waitFor(t, "the edited file applied", func() bool { return strings.Contains(ctl("config", "history"), "file") })
	write(path, 30)
	// SIGHUP with the file watch racing it: either applies version 4 or 5.
	if err := syscall.Kill(p.cmd.Process.Pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "max 30 in force", func() bool { return strings.Contains(ctl("config", "show"), "max: 30") })
	hist := ctl("config", "history")
	for _, want := range []string{"start", "ops", "admin", "file"} {
		if !strings.Contains(hist, want) {
			t.Fatalf("history lacks %q:\n%s", want, hist)
		}
	}
}

// TestApplyAndRollbackUnderLoad: go-sdk clients of both eras call a tool
// without pause while the configuration is applied and rolled back 50
// times, each version with another policy; no call fails for a reload,
// and the policy of each version holds from the very next call.
func TestApplyAndRollbackUnderLoad(t *testing.T) {
	t.Parallel()
	ps := startPolicyServer(t, false)
	text := func(deny string) []byte {
		return []byte(fmt.Sprintf(`listeners: [{address: "127.0.0.1:0"}]
store: {kind: memory}
server: {shutdown_timeout: 5s}
policies: [{name: deny-%[1]s, tools: {deny: ["%[1]s_*"]}}]
routes: [{name: tools, path: /mcp, upstream: {http: {url: "%[2]s"}}}]
`, deny, ps.URL))
	}
	first := text("delete")
	cfg, err := config.LoadBytes(first)
	if err != nil {
		t.Fatal(err)
	}
	gg, err := gateway.New(cfg, gateway.Options{Logger: testLogger(t), Source: gateway.ConfigSource{Text: first}})
	if err != nil {
		t.Fatal(err)
	}
	runGateway(t, gg)
	url := "http://" + gg.Addrs()[0].String() + "/mcp"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	stop := make(chan struct{})
	var calls, failed atomic.Int64
	var wg sync.WaitGroup
	for _, v := range []string{"2025-11-25", "2025-11-25", "2026-07-28", "2026-07-28"} {
		cs := connectEra(ctx, t, url, v)
		defer cs.Close()
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "get_item", Arguments: map[string]any{}})
				calls.Add(1)
				if err != nil || r.IsError {
					failed.Add(1)
					t.Errorf("%s call during reloads: %v %v", v, err, r)
					return
				}
			}
		})
	}
	checker := connectEra(ctx, t, url, "2025-11-25")
	defer checker.Close()
	denied := func(tool string) bool {
		t.Helper()
		r, err := checker.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: map[string]any{}})
		if err != nil {
			t.Fatal(err)
		}
		return r.IsError
	}
	for i := range 50 {
		var rep *gateway.ApplyReport
		var err error
		if i%2 == 0 {
			rep, err = gg.Apply(ctx, text("purge"), "ops", "admin", false)
		} else {
			rep, err = gg.Rollback(ctx, 1, "ops", false)
		}
		if err != nil || rep.Outcome != gateway.ReloadApplied {
			t.Fatalf("reload %d: %+v %v", i, rep, err)
		}
		purge := i%2 == 0
		if denied("purge_cache") != purge || denied("delete_repo") == purge {
			t.Fatalf("reload %d: the version's policy does not hold on the next call (purge denied %v, delete denied %v)", i, denied("purge_cache"), denied("delete_repo"))
		}
	}
	close(stop)
	wg.Wait()
	if calls.Load() < 50 || failed.Load() > 0 {
		t.Fatalf("%d calls during the reloads, %d failed", calls.Load(), failed.Load())
	}
	if h := gg.History(); len(h) != 51 || h[50].Source != "rollback" {
		t.Fatalf("history: %d versions", len(h))
	}
}

// TestTypeScriptClientAdmin: the TypeScript SDK client drives the admin
// MCP server with an operator key: its tools (with output schemas), a
// refusal by role, a resource, and a subscription that hears of a new
// session.
func TestTypeScriptClientAdmin(t *testing.T) {
	t.Parallel()
	key, _ := auth.NewKey()
	text := []byte(fmt.Sprintf(`listeners: [{address: "127.0.0.1:0"}]
store: {kind: memory}
server: {shutdown_timeout: 5s}
admin: {listen: "127.0.0.1:0", mcp: {enabled: true, api_keys: [{key_sha256: %s, role: operator, principal: ts}]}}
routes: [{name: fixture, path: /mcp, upstream: {http: {url: "%s"}}}]
`, auth.HashKey(key), fixtureHTTP(t, false)))
	cfg, err := config.LoadBytes(text)
	if err != nil {
		t.Fatal(err)
	}
	gg, err := gateway.New(cfg, gateway.Options{Logger: testLogger(t), Source: gateway.ConfigSource{Text: text}})
	if err != nil {
		t.Fatal(err)
	}
	ctl := admin.New(admin.Options{Gateway: gg})
	t.Cleanup(ctl.Close)
	gg.HandleAdmin("/mcp", ctl)
	runGateway(t, gg)
	g := &gw{Gateway: gg, URL: "http://" + gg.Addrs()[0].String()}
	adminURL := "http://" + g.AdminAddr().String() + "/mcp"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	runTSClient(ctx, t, 5, func(line string) {
		if line == "subscribed" {
			connectSDK(ctx, t, g.URL+"/mcp", "2025-11-25", nil)
		}
	}, "admin.mjs", adminURL, key)
}

// TestAdminOAuthRoleClaim: with admin.mcp.role_claim, the gateway's own
// OAuth access tokens reach the admin server with the role their claim
// names; a token naming none is refused 403, a bad token 401.
func TestAdminOAuthRoleClaim(t *testing.T) {
	t.Parallel()
	k1 := newIssuerKey(t, "k1")
	is := newTestIssuer(t, k1)
	audience := "https://gw.example.com/mcp"
	g := startGateway(t, func(c *config.Config) {
		c.Auth = &config.Auth{OAuth: is.oauth(audience)}
		c.Admin.Listen = "127.0.0.1:0"
		c.Admin.MCP = config.AdminMCP{Enabled: true, RoleClaim: "mcpgate_role"}
	}, httpRoute("fixture", "/mcp", fixtureHTTP(t, false)))
	ctl := admin.New(admin.Options{Gateway: g.Gateway})
	t.Cleanup(ctl.Close)
	g.HandleAdmin("/mcp", ctl)
	adminURL := "http://" + g.AdminAddr().String() + "/mcp"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tok := func(sub string, role any) string {
		return is.token(t, k1, audience, sub, func(c jwt.MapClaims) {
			if role != nil {
				c["mcpgate_role"] = role
			}
		})
	}
	as := func(token string) *mcp.ClientSession {
		t.Helper()
		_, hc := newBearerClient(token)
		cs, err := mcp.NewClient(&mcp.Implementation{Name: "ops", Version: "1"}, nil).Connect(ctx,
			&mcp.StreamableClientTransport{Endpoint: adminURL, HTTPClient: hc, MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		t.Cleanup(func() { _ = cs.Close() })
		return cs
	}
	end := func(cs *mcp.ClientSession) *mcp.CallToolResult {
		t.Helper()
		r, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "sessions_end", Arguments: map[string]any{"route": "fixture"}})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := end(as(tok("alice", "operator"))); r.IsError {
		t.Fatalf("an operator's sessions_end: %+v", r.Content)
	}
	if r := end(as(tok("bob", []any{"viewer", "nonsense"}))); !r.IsError {
		t.Fatal("a viewer's sessions_end was not refused")
	}
	for name, c := range map[string]struct {
		token  string
		status int
	}{
		"no role claim":         {tok("carol", nil), http.StatusForbidden},
		"unknown role":          {tok("dave", "root"), http.StatusForbidden},
		"expired":               {is.token(t, k1, audience, "erin", func(c jwt.MapClaims) { c["mcpgate_role"] = "admin"; c["exp"] = time.Now().Add(-time.Hour).Unix() }), http.StatusUnauthorized},
		"an API-key-like token": {"mcpg_not-a-token", http.StatusUnauthorized},
	} {
		r := do(t, "POST", adminURL, initBodyVersion("2025-11-25"), authz(c.token))
		if r.Status != c.status {
			t.Errorf("%s: %d %s; want %d", name, r.Status, r.Body, c.status)
		}
	}
}

// TestInspectorSessionTools: the MCP Inspector's CLI reads a session's own
// resources and calls its status tool in each era; in 2026-07-28 it checks
// every result against the schema (cache hints included).
func TestInspectorSessionTools(t *testing.T) {
	t.Parallel()
	script := nodetool.Bin(t, inspectorPackage, "clients/launcher/build/index.js")
	route := stdioRoute("fixture", "/mcp", fixtureBin)
	route.SessionTools = true
	g := startGateway(t, nil, route)
	catalog := filepath.Join(t.TempDir(), "mcp.json")
	for _, era := range []string{"legacy", "modern"} {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"--method", "resources/read", "--uri", "mcpgate://session"}, `"route\": \"fixture\"`},
			{[]string{"--method", "resources/read", "--uri", "mcpgate://health"}, `"upstream`},
			{[]string{"--method", "tools/call", "--tool-name", "mcpgate_session_status"}, `structuredContent`},
		} {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			argv := append([]string{"--cli", g.URL + "/mcp", "--transport", "http", "--protocol-era", era, "--format", "json", "--quiet"}, tc.args...)
			c := nodetool.Command(ctx, t, script, argv...)
			c.Env = append(c.Env, "MCP_CATALOG_PATH="+catalog, "HOME="+t.TempDir())
			var stdout, stderr bytes.Buffer
			c.Stdout, c.Stderr = &stdout, &stderr
			err := c.Run()
			cancel()
			if err != nil || !strings.Contains(stdout.String(), tc.want) {
				t.Fatalf("inspector --protocol-era %s %v: %v\nstdout: %s\nstderr: %s", era, tc.args, err, stdout.String(), stderr.String())
			}
		}
	}
}
