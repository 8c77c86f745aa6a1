package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/core"
)

// credentialUpstream is a go-sdk Streamable HTTP server whose tool whoami
// answers with the Authorization header it was called with, behind a
// handler that records the Authorization of every request by upstream
// session (the initialize, before the session has an id, under "").
type credentialUpstream struct {
	URL string
	mu  sync.Mutex
	// seen maps an upstream session id to the credentials its requests
	// carried.
	seen map[string]map[string]int
}

func newCredentialUpstream(t *testing.T) *credentialUpstream {
	t.Helper()
	s := mcp.NewServer(&mcp.Implementation{Name: "credential-upstream", Version: "1.0.0"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "whoami", Description: "Say what credential the call came with"},
		func(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: req.Extra.Header.Get("Authorization")}}}, nil, nil
		})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
	cu := &credentialUpstream{seen: map[string]map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sid, cred := r.Header.Get("Mcp-Session-Id"), r.Header.Get("Authorization")
		cu.mu.Lock()
		if cu.seen[sid] == nil {
			cu.seen[sid] = map[string]int{}
		}
		cu.seen[sid][cred]++
		cu.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	cu.URL = srv.URL
	return cu
}

// check fails unless every upstream session's requests carried one
// credential, and every credential is one of want.
func (cu *credentialUpstream) check(t *testing.T, want ...string) {
	t.Helper()
	cu.mu.Lock()
	defer cu.mu.Unlock()
	for sid, creds := range cu.seen {
		for c := range creds {
			if !contains(want, c) {
				t.Errorf("an upstream request (session %q) carried %q; want one of %q", sid, c, want)
			}
		}
		if sid != "" && len(creds) != 1 {
			t.Errorf("upstream session %q saw several credentials: %v", sid, creds)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// secretsFile writes a per-principal secrets file (mode 0600).
func secretsFile(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "secrets.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func whoami(ctx context.Context, t *testing.T, cs *mcp.ClientSession) string {
	t.Helper()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "whoami", Arguments: map[string]any{}})
	if err != nil || res.IsError {
		t.Errorf("whoami: %v %v", res, err)
		return ""
	}
	return textOf(t, res)
}

// TestCredentialsPerPrincipal: two principals on one HTTP route each
// reach the upstream with their own credential, on every request of
// their sessions and under concurrency, never the other's nor the route's
// static header; a principal without one is refused with 403 naming the
// missing credential, before anything goes upstream.
func TestCredentialsPerPrincipal(t *testing.T) {
	t.Parallel()
	up := newCredentialUpstream(t)
	route := httpRoute("github", "/mcp", up.URL)
	route.Upstream.HTTP.Headers = map[string]config.Secret{"Authorization": "Bearer static"}
	route.Upstream.Credentials = &config.Credentials{PerPrincipal: &config.PerPrincipalCredentials{
		Header: "Authorization", Format: "Bearer {secret}",
		File: secretsFile(t, "user:alice: alice-secret\nuser:bob: bob-secret\n"),
	}}
	g := startIdentityGateway(t, nil, route)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	const calls = 10
	var wg sync.WaitGroup
	for _, user := range []string{"alice", "bob"} {
		for range 2 { // two sessions each
			cs := connectSDK(ctx, t, g.URL+"/mcp", "2025-11-25", asUser(user))
			for range calls {
				wg.Go(func() {
					if got, want := whoami(ctx, t, cs), "Bearer "+user+"-secret"; got != want {
						t.Errorf("%s's call reached the upstream with %q; want %q", user, got, want)
					}
				})
			}
		}
	}
	wg.Wait()
	up.check(t, "Bearer alice-secret", "Bearer bob-secret")

	// Modern clients too, whatever era the upstream speaks (the probe
	// carries its caller's credential).
	for _, user := range []string{"alice", "bob"} {
		r := modernDo(t, g.URL+"/mcp", "tools/call", `{"name":"whoami","arguments":{},"_meta":`+modernMeta("e2e")+`}`,
			map[string]string{"X-Test-User": user, "Mcp-Name": "whoami"})
		if r.Status != http.StatusOK || !strings.Contains(r.Body, "Bearer "+user+"-secret") {
			t.Errorf("%s's modern call: %d %s", user, r.Status, r.Body)
		}
	}
	if r := modernDo(t, g.URL+"/mcp", "tools/call", `{"name":"whoami","arguments":{},"_meta":`+modernMeta("e2e")+`}`,
		map[string]string{"X-Test-User": "carol", "Mcp-Name": "whoami"}); r.Status != http.StatusForbidden || r.Code != core.CodeNoCredential {
		t.Errorf("carol's modern call: %d (code %d) %s; want 403", r.Status, r.Code, r.Body)
	}
	up.check(t, "Bearer alice-secret", "Bearer bob-secret")

	for _, user := range []string{"carol", ""} {
		hdr := map[string]string{}
		if user != "" {
			hdr["X-Test-User"] = user
		}
		r := do(t, "POST", g.URL+"/mcp", initBody, hdr)
		if r.Status != http.StatusForbidden || r.Code != core.CodeNoCredential {
			t.Fatalf("%q without a credential: %d (code %d) %s; want 403 with %d", user, r.Status, r.Code, r.Body, core.CodeNoCredential)
		}
		if user != "" && !strings.Contains(r.Msg, "no Authorization credential for your principal") {
			t.Errorf("refusal %q does not name the missing credential", r.Msg)
		}
	}
	up.check(t, "Bearer alice-secret", "Bearer bob-secret")
}

// TestCredentialsFallbackStatic: with fallback: static, a principal
// without a credential of its own gets the route's static header.
func TestCredentialsFallbackStatic(t *testing.T) {
	t.Parallel()
	up := newCredentialUpstream(t)
	route := httpRoute("github", "/mcp", up.URL)
	route.Upstream.HTTP.Headers = map[string]config.Secret{"Authorization": "Bearer static"}
	route.Upstream.Credentials = &config.Credentials{Fallback: config.FallbackStatic, PerPrincipal: &config.PerPrincipalCredentials{
		Header: "Authorization", Format: "Bearer {secret}", File: secretsFile(t, "user:alice: alice-secret\n"),
	}}
	g := startIdentityGateway(t, nil, route)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for user, want := range map[string]string{"alice": "Bearer alice-secret", "carol": "Bearer static"} {
		if got := whoami(ctx, t, connectSDK(ctx, t, g.URL+"/mcp", "2025-11-25", asUser(user))); got != want {
			t.Errorf("%s: %q, want %q", user, got, want)
		}
	}
	up.check(t, "Bearer alice-secret", "Bearer static")
}

// TestCredentialsTokenExchange: the client's validated token is exchanged
// (RFC 8693) once per principal for many calls; the upstream sees the
// issued token, never the client's own; a client without a token is
// refused.
func TestCredentialsTokenExchange(t *testing.T) {
	t.Parallel()
	up := newCredentialUpstream(t)
	var exchanges atomic.Int32
	tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, secret, _ := r.BasicAuth()
		if err := r.ParseForm(); err != nil || id != "mcpgate" || secret != "client-secret" ||
			r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange" ||
			r.PostForm.Get("subject_token_type") != "urn:ietf:params:oauth:token-type:access_token" ||
			r.PostForm.Get("audience") != "upstream" {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":"invalid_request"}`)
			return
		}
		n := exchanges.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"exchanged-%s-%d","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":3600}`,
			r.PostForm.Get("subject_token"), n)
	}))
	defer tokens.Close()
	route := httpRoute("api", "/mcp", up.URL)
	route.Upstream.Credentials = &config.Credentials{TokenExchange: &config.TokenExchange{
		TokenURL: tokens.URL, ClientID: "mcpgate", ClientSecret: "client-secret", Audience: "upstream",
	}}
	g := startIdentityGateway(t, nil, route)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, user := range []string{"alice", "bob"} {
		hc := &http.Client{Transport: headerTransport{"X-Test-User": user, "X-Test-Token": "client-" + user, "Authorization": "Bearer client-" + user}}
		cs := connectSDK(ctx, t, g.URL+"/mcp", "2025-11-25", hc)
		for range 5 {
			wg.Go(func() {
				if got := whoami(ctx, t, cs); !strings.HasPrefix(got, "Bearer exchanged-client-"+user+"-") {
					t.Errorf("%s reached the upstream with %q", user, got)
				}
			})
		}
	}
	wg.Wait()
	if n := exchanges.Load(); n != 2 {
		t.Errorf("%d token exchanges for two principals' calls; want one each", n)
	}
	up.mu.Lock()
	for _, creds := range up.seen {
		for c := range creds {
			if strings.Contains(c, "Bearer client-") {
				t.Errorf("the client's own token reached the upstream: %q", c)
			}
		}
	}
	up.mu.Unlock()
	r := do(t, "POST", g.URL+"/mcp", initBody, map[string]string{"X-Test-User": "carol"})
	if r.Status != http.StatusForbidden || r.Code != core.CodeNoCredential || !strings.Contains(r.Msg, "bearer token") {
		t.Fatalf("no token to exchange: %d (code %d) %s; want 403", r.Status, r.Code, r.Body)
	}
}

// stdioServerBin is the stdio upstream tests' go-sdk server (tools env,
// alloc, ...), built by TestMain.
var stdioServerBin string

// TestCredentialsStdio: each principal's session gets a process of its
// own whose environment holds that principal's secret, never another's
// nor the route's static value.
func TestCredentialsStdio(t *testing.T) {
	t.Parallel()
	route := stdioRoute("local", "/mcp", stdioServerBin)
	route.Upstream.Stdio.Env = map[string]config.Secret{"GITHUB_TOKEN": "static", "OTHER": "kept"}
	route.Upstream.Credentials = &config.Credentials{PerPrincipal: &config.PerPrincipalCredentials{
		Env: "GITHUB_TOKEN", File: secretsFile(t, "user:alice: alice-secret\nuser:bob: bob-secret\n"),
	}}
	g := startIdentityGateway(t, nil, route)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	env := func(cs *mcp.ClientSession, name string) string {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "env", Arguments: map[string]any{"name": name}})
		if err != nil || res.IsError {
			t.Fatalf("env %s: %v %v", name, res, err)
		}
		return textOf(t, res)
	}
	for _, user := range []string{"alice", "bob", "alice"} {
		cs := connectSDK(ctx, t, g.URL+"/mcp", "2025-11-25", asUser(user))
		if got := env(cs, "GITHUB_TOKEN"); got != user+"-secret" {
			t.Errorf("%s's process has GITHUB_TOKEN=%q", user, got)
		}
		if got := env(cs, "OTHER"); got != "kept" {
			t.Errorf("%s's process has OTHER=%q; the route's other variables stay", user, got)
		}
	}
	if r := do(t, "POST", g.URL+"/mcp", initBody, map[string]string{"X-Test-User": "carol"}); r.Status != http.StatusForbidden || r.Code != core.CodeNoCredential {
		t.Fatalf("carol: %d (code %d) %s; want 403 and no process", r.Status, r.Code, r.Body)
	}
}
