package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func httpCredRoute(creds string) string {
	return "routes:\n  - path: /mcp\n    upstream:\n      http:\n        url: https://api.example/mcp\n        headers: {Authorization: Bearer static}\n      credentials:\n" + creds
}

func TestCredentialsConfig(t *testing.T) {
	cfg, err := LoadBytes([]byte(httpCredRoute("        token_exchange: {token_url: https://sts.example/token, client_id: gw, client_secret: s, audience: api}\n")))
	if err != nil {
		t.Fatal(err)
	}
	te := cfg.Routes[0].Upstream.Credentials.TokenExchange
	if te.Header != "Authorization" || te.Format != "Bearer {secret}" || cfg.Routes[0].Upstream.Credentials.Target() != "Authorization" {
		t.Errorf("token_exchange defaults: %+v", te)
	}
}

func TestCredentialsErrors(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
	}{
		{"none", "        fallback: static\n",
			[]string{"routes[0].upstream.credentials: set exactly one of per_principal, token_exchange and forward (line 7)"}},
		{"two", "        forward: {from: X-Token, to: Authorization}\n        per_principal: {header: Authorization, file: s.yaml}\n",
			[]string{"routes[0].upstream.credentials: set exactly one of per_principal, token_exchange and forward (line 7)"}},
		{"client's own Authorization", "        forward: {from: authorization, to: Authorization}\n",
			[]string{"routes[0].upstream.credentials.forward.from: the client's own authorization is never forwarded: name a header of its own (e.g. X-Upstream-Token) (line 8)"}},
		{"env on HTTP", "        per_principal: {env: TOKEN, file: s.yaml}\n",
			[]string{"routes[0].upstream.credentials.per_principal.env: an HTTP upstream takes header, not env (line 8)"}},
		{"format without secret", "        per_principal: {header: Authorization, format: Bearer, file: s.yaml}\n",
			[]string{`routes[0].upstream.credentials.per_principal.format: want a format holding {secret}, got "Bearer" (line 8)`}},
		{"managed header", "        per_principal: {header: Mcp-Session-Id, file: s.yaml}\n",
			[]string{"routes[0].upstream.credentials.per_principal.header: Mcp-Session-Id is managed by mcpgate; cannot be set (line 8)"}},
		{"plain http token url", "        token_exchange: {token_url: http://sts.example/token, client_id: gw}\n",
			[]string{`routes[0].upstream.credentials.token_exchange.token_url: want an https URL (or http to a loopback address), got "http://sts.example/token" (line 8)`}},
		{"fallback without static", "        forward: {from: X-Token, to: X-Api-Key}\n        fallback: static\n",
			[]string{"routes[0].upstream.credentials.fallback: static needs a upstream.http.headers entry for X-Api-Key to fall back to (line 9)"}},
		{"unknown fallback", "        forward: {from: X-Token, to: X-Api-Key}\n        fallback: anything\n",
			[]string{`routes[0].upstream.credentials.fallback: want static or nothing, got "anything" (line 9)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, problems(t, httpCredRoute(tt.in))); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
	stdio := "routes:\n  - path: /mcp\n    upstream:\n      stdio: {command: sh}\n      credentials:\n"
	for in, want := range map[string]string{
		"        per_principal: {header: Authorization, file: s.yaml}\n":                "routes[0].upstream.credentials.per_principal.header: a stdio upstream takes env, not header (line 6)",
		"        token_exchange: {token_url: https://x/t, client_id: gw}\n":             "routes[0].upstream.credentials.token_exchange: an HTTP upstream only: a process's environment cannot be refreshed when the token expires (line 6)",
		"        per_principal: {env: 1TOKEN, file: s.yaml}\n":                          `routes[0].upstream.credentials.per_principal.env: "1TOKEN" is not a valid environment variable name (line 6)`,
		"        per_principal: {env: TOKEN, file: s.yaml}\n        fallback: static\n": "routes[0].upstream.credentials.fallback: static needs a upstream.stdio.env entry for TOKEN to fall back to (line 7)",
	} {
		if diff := cmp.Diff([]string{want}, problems(t, stdio+in)); diff != "" {
			t.Errorf("%s(-want +got):\n%s", in, diff)
		}
	}
}
