package config

import (
	"strings"
	"testing"
)

func TestShareConfig(t *testing.T) {
	t.Parallel()
	cfg, err := LoadBytes([]byte(`routes:
  - {name: a, path: /a/mcp, upstream: {stdio: {command: sh}}}
  - {name: b, path: /b/mcp, upstream: {stdio: {command: sh}, share: route}}
  - {name: c, path: /c/mcp, upstream: {http: {url: "http://127.0.0.1:1/mcp"}, share: tenant, max_shared: 17}}
`))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct {
		share string
		max   int
	}{{ShareSession, 0}, {ShareRoute, DefaultMaxShared}, {ShareTenant, 17}} {
		u := cfg.Routes[i].Upstream
		if u.Share != want.share || u.MaxShared != want.max {
			t.Errorf("routes[%d]: share %q max_shared %d, want %q %d", i, u.Share, u.MaxShared, want.share, want.max)
		}
	}
}

func TestShareErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, in, want string }{
		{"bad share", `share: everyone`, `routes[0].upstream.share: want session, principal, tenant or route, got "everyone"`},
		{"max without share", `max_shared: 4`, "routes[0].upstream.max_shared: only with share"},
		{"max too small", `share: route, max_shared: -1`, "routes[0].upstream.max_shared: want 1 to"},
		{"max too large", `share: route, max_shared: 100000`, "routes[0].upstream.max_shared: want 1 to"},
		{"credentials", `share: route, credentials: {per_principal: {file: x.yaml}}`, "routes[0].upstream.share: route would give several principals"},
		{"fine", `share: principal, max_shared: 2`, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := problems(t, "routes:\n  - path: /mcp\n    upstream: {stdio: {command: sh}, "+tt.in+"}\n")
			if tt.want == "" {
				if len(got) != 0 {
					t.Fatalf("problems = %q, want none", got)
				}
				return
			}
			found := false
			for _, g := range got {
				found = found || strings.Contains(g, tt.want)
			}
			if !found {
				t.Fatalf("problems = %q, want one containing %q", got, tt.want)
			}
		})
	}
}
