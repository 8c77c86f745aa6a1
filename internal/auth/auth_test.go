package auth

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/core"
)

const apiChallenge = `Bearer realm="mcpgate"`

// keysConfig is a configuration with API keys: ci-bot's at the top level,
// and a route /admin/mcp whose own auth admits only admin's key.
func keysConfig(t testing.TB, ciKey, adminKey string, anonymous bool) *config.Config {
	up := config.Upstream{HTTP: &config.HTTPUpstream{URL: "http://127.0.0.1:9/"}}
	return validated(t, &config.Config{
		Auth: &config.Auth{Anonymous: anonymous, APIKeys: []config.APIKey{
			{KeySHA256: strings.ToUpper(HashKey(ciKey)), Principal: "ci-bot", Tenant: "acme", Groups: []string{"ci"}, Scopes: []string{"mcp:tools"}},
		}},
		Routes: []config.Route{
			{Name: "mcp", Path: "/mcp", Upstream: up},
			{Name: "admin", Path: "/admin/mcp", Upstream: up, Auth: &config.Auth{APIKeys: []config.APIKey{{KeySHA256: HashKey(adminKey), Principal: "admin"}}}},
		},
	})
}

// TestAPIKeys: a configured key is its principal; an unknown one, or the
// key of another route (routes[].auth replaces the top level's), is
// refused with invalid_token; without credentials the request is refused,
// or anonymous where the block says so — and a bad key is never taken as
// anonymous.
func TestAPIKeys(t *testing.T) {
	t.Parallel()
	ci, _ := NewKey()
	admin, _ := NewKey()
	invalid := refusal{http.StatusUnauthorized, -32014, apiChallenge + `, error="invalid_token", error_description="unknown API key"`}
	missing := refusal{http.StatusUnauthorized, -32014, apiChallenge}
	for _, anon := range []bool{false, true} {
		a := build(t, keysConfig(t, ci, admin, anon), Options{})
		tests := []struct {
			name, path string
			header     []string
			principal  string
			want       refusal
		}{
			{"ci key", "/mcp", bearer(ci), "ci-bot", refusal{}},
			{"admin key on its route", "/admin/mcp", bearer(admin), "admin", refusal{}},
			{"unknown key", "/mcp", bearer(ci + "x"), "", invalid},
			{"admin key on the top level's route", "/mcp", bearer(admin), "", invalid},
			{"ci key on the admin route", "/admin/mcp", bearer(ci), "", invalid},
			{"no credentials on the admin route", "/admin/mcp", nil, "", missing},
			{"ci key on a path that is no route", "/nowhere", bearer(ci), "ci-bot", refusal{}},
		}
		if anon {
			tests = append(tests, struct {
				name, path string
				header     []string
				principal  string
				want       refusal
			}{"no credentials, anonymous allowed", "/mcp", nil, core.Anonymous, refusal{}})
		} else {
			tests = append(tests, struct {
				name, path string
				header     []string
				principal  string
				want       refusal
			}{"no credentials", "/mcp", nil, "", missing})
		}
		for _, tt := range tests {
			id, e := a.Authenticate(request(tt.path, tt.header...))
			if diff := cmp.Diff(tt.want, refusalOf(e)); diff != "" {
				t.Errorf("anonymous %v, %s: refusal (-want +got):\n%s", anon, tt.name, diff)
				continue
			}
			if id.Principal != tt.principal {
				t.Errorf("anonymous %v, %s: principal %q; want %q", anon, tt.name, id.Principal, tt.principal)
			}
		}
		id, _ := a.Authenticate(request("/mcp", bearer(ci)...))
		if id.Tenant != "acme" || !slices.Equal(id.Groups, []string{"ci"}) || !id.HasScope("mcp:tools") || id.Token != "" {
			t.Errorf("ci-bot's identity %#v groups %v scopes %v; want acme, [ci], mcp:tools, no token", id, id.Groups, id.Scopes)
		}
	}
}

// TestNoCredentials: a configuration without credentials builds no
// authenticator (anonymous, at no cost); the nil one serves no metadata
// and no stage.
func TestNoCredentials(t *testing.T) {
	t.Parallel()
	cfg := validated(t, &config.Config{Auth: &config.Auth{Anonymous: true},
		Routes: []config.Route{{Path: "/mcp", Upstream: config.Upstream{HTTP: &config.HTTPUpstream{URL: "http://127.0.0.1:9/"}}}}})
	a, err := New(cfg, Options{})
	if err != nil || a != nil {
		t.Fatalf("New = %v, %v; want nil, nil", a, err)
	}
	if st := a.Stage("default"); st.ClientToServer != nil {
		t.Error("a stage without rules")
	}
	rec := httptest.NewRecorder()
	a.ServeMetadata(rec, httptest.NewRequest(http.MethodGet, config.WellKnownResource, nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("metadata without oauth: %d", rec.Code)
	}
	a.Close()
	a.Warm()
}

// TestMetadata: the Protected Resource Metadata of RFC 9728 at the
// route's path and at the root, and what a challenge points at.
func TestMetadata(t *testing.T) {
	t.Parallel()
	p := newIDP(t, rsaSigner("k1", 0))
	a := build(t, oauthConfig(t, p, func(c *config.Config) {
		c.Auth.Scopes = map[string][]string{"tools/call:deploy_*": {"mcp:admin"}}
	}), Options{})
	want := map[string]any{
		"resource": audience, "authorization_servers": []any{p.issuer()},
		"scopes_supported": []any{"mcp:tools", "mcp:admin"}, "bearer_methods_supported": []any{"header"},
	}
	for _, path := range []string{config.WellKnownResource + "/mcp", config.WellKnownResource} {
		rec := httptest.NewRecorder()
		a.ServeMetadata(rec, httptest.NewRequest(http.MethodGet, path, nil))
		var got map[string]any
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" || json.Unmarshal(rec.Body.Bytes(), &got) != nil {
			t.Fatalf("%s: %d %s", path, rec.Code, rec.Body)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", path, diff)
		}
		if rec.Header().Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s: not open to browser clients", path)
		}
	}
	for path, status := range map[string]int{config.WellKnownResource + "/nope": http.StatusNotFound} {
		rec := httptest.NewRecorder()
		a.ServeMetadata(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != status || !strings.Contains(rec.Body.String(), `"code":-32600`) {
			t.Errorf("%s: %d %s; want %d with a JSON-RPC error", path, rec.Code, rec.Body, status)
		}
	}
	rec := httptest.NewRecorder()
	a.ServeMetadata(rec, httptest.NewRequest(http.MethodPost, config.WellKnownResource, nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", rec.Code)
	}
	if !IsMetadataPath(config.WellKnownResource+"/x") || IsMetadataPath("/mcp") {
		t.Error("IsMetadataPath")
	}
}

// TestScopeStage: the auth stage lets a message through only when the
// caller of its request holds every scope its rules require: 403
// insufficient_scope naming what is needed (with the scopes every request
// needs), 401 for an anonymous caller; responses and server messages are
// not its concern.
func TestScopeStage(t *testing.T) {
	t.Parallel()
	p := newIDP(t, rsaSigner("k1", 0))
	a := build(t, oauthConfig(t, p, func(c *config.Config) {
		c.Auth.Anonymous = true
		c.Auth.Scopes = map[string][]string{
			"tools/call":           {"mcp:tools"},
			"tools/call:deploy_*":  {"mcp:admin"},
			"resources/*":          {"mcp:read"},
			"notifications/roots*": {"mcp:roots"},
		}
	}), Options{Logger: slog.New(slog.DiscardHandler)})
	st := a.Stage("mcp")
	if st.Name != "auth" || st.ClientToServer == nil {
		t.Fatalf("stage %+v", st)
	}
	if a.Stage("unknown").ClientToServer != nil {
		t.Fatal("a stage for a route that does not exist")
	}
	passed := 0
	h := st.ClientToServer(func(context.Context, *core.Message) (*core.Message, error) { passed++; return nil, nil })
	user := &core.Identity{Principal: "u", Scopes: []string{"mcp:tools"}}
	admin := &core.Identity{Principal: "a", Scopes: []string{"mcp:tools", "mcp:admin"}}
	anon := &core.Identity{Principal: core.Anonymous}
	msg := func(raw string, dir core.Direction) *core.Message {
		m, err := core.Decode([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		m.Direction = dir
		return m
	}
	call := func(tool string) string {
		return `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + tool + `"}}`
	}
	const meta = `resource_metadata="https://gw.example.com/.well-known/oauth-protected-resource/mcp"`
	tests := []struct {
		name   string
		caller *core.Identity
		raw    string
		dir    core.Direction
		want   refusal
	}{
		{"user calls echo", user, call("echo"), core.ClientToServer, refusal{}},
		{"user calls deploy", user, call("deploy_prod"), core.ClientToServer,
			refusal{http.StatusForbidden, -32015, "Bearer " + meta + `, scope="mcp:tools mcp:admin", error="insufficient_scope", error_description="tools/call deploy_prod needs the scope(s) mcp:admin"`}},
		{"admin calls deploy", admin, call("deploy_prod"), core.ClientToServer, refusal{}},
		{"anonymous calls echo", anon, call("echo"), core.ClientToServer,
			refusal{http.StatusUnauthorized, -32014, "Bearer " + meta + `, scope="mcp:tools"`}},
		{"no caller", nil, call("echo"), core.ClientToServer,
			refusal{http.StatusUnauthorized, -32014, "Bearer " + meta + `, scope="mcp:tools"`}},
		{"user reads a resource", user, `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///x"}}`, core.ClientToServer,
			refusal{http.StatusForbidden, -32015, "Bearer " + meta + `, scope="mcp:tools mcp:read", error="insufficient_scope", error_description="resources/read file:///x needs the scope(s) mcp:read"`}},
		{"anonymous lists tools", anon, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, core.ClientToServer, refusal{}},
		{"a notification", user, `{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}`, core.ClientToServer,
			refusal{http.StatusForbidden, -32015, "Bearer " + meta + `, scope="mcp:tools mcp:roots", error="insufficient_scope", error_description="notifications/roots/list_changed needs the scope(s) mcp:roots"`}},
		{"a client's answer", anon, `{"jsonrpc":"2.0","id":1,"result":{}}`, core.ClientToServer, refusal{}},
		{"a server request", nil, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}`, core.ServerToClient, refusal{}},
	}
	for _, tt := range tests {
		ctx := context.Background()
		if tt.caller != nil {
			ctx = core.WithCaller(ctx, tt.caller)
		}
		before := passed
		_, err := h(ctx, msg(tt.raw, tt.dir))
		e := core.AsError(err)
		if err == nil {
			e = nil
		}
		if diff := cmp.Diff(tt.want, refusalOf(e)); diff != "" {
			t.Errorf("%s: refusal (-want +got):\n%s", tt.name, diff)
		}
		if (err == nil) != (passed == before+1) {
			t.Errorf("%s: passed %v with error %v", tt.name, passed > before, err)
		}
	}
}

func TestGlob(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true}, {"*", "anything", true}, {"deploy_*", "deploy_prod", true}, {"deploy_*", "deploy_", true},
		{"deploy_*", "xdeploy_prod", false}, {"*_prod", "deploy_prod", true}, {"a*b*c", "aXbYc", true},
		{"a*b*c", "aXbY", false}, {"tools/call", "tools/call", true}, {"tools/call", "tools/calls", false},
		{"**", "x", true}, {"a*a", "aaa", true}, {"", "", true}, {"", "x", false},
	} {
		if got := glob(tt.pattern, tt.s); got != tt.want {
			t.Errorf("glob(%q, %q) = %v", tt.pattern, tt.s, got)
		}
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := NewKey()
	if !strings.HasPrefix(k, KeyPrefix) || len(k) != len(KeyPrefix)+43 || k == k2 || !b64token(k) {
		t.Fatalf("keys %q, %q", k, k2)
	}
	if h := HashKey(k); len(h) != 64 || h == HashKey(k2) || strings.ToLower(h) != h {
		t.Fatalf("hash %q", h)
	}
}

// TestIdentityRedacted: the token never shows in logs or fmt output.
func TestIdentityRedacted(t *testing.T) {
	t.Parallel()
	id := core.Identity{Principal: "p", Token: "secret-token-value"}
	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("x", "who", id)
	js, _ := json.Marshal(id)
	for _, out := range []string{b.String(), string(js), id.String(), id.GoString()} {
		if strings.Contains(out, "secret-token-value") {
			t.Errorf("token shown: %s", out)
		}
	}
}
