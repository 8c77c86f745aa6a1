package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestQuotaConfig: the example loads as written, with its
// defaults, and matching is AND across fields, OR within one.
func TestQuotaConfig(t *testing.T) {
	cfg, err := LoadBytes([]byte(oneRoute + `quotas:
  - name: per-session-default
    match: {routes: [], tenants: [], principals: [], groups: []}
    per: session
    window: 0
    requests: 1000
    tool_calls: 200
    tools: {search: 50}
    result_tokens: 500000
    result_bytes: 64MiB
    call_timeout: 60s
    session_time: 8h
    concurrent: 8
    warn_at: 0.8
  - name: acme.daily
    match: {routes: [default], tenants: [acme], groups: [paid, trial]}
    per: tenant
    window: 24h
    result_bytes: 1GiB
    tokenizer: bytes4
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Quota{{
		Name: "per-session-default", Per: "session", Requests: 1000, ToolCalls: 200,
		Tools: map[string]int64{"search": 50}, ResultTokens: 500000, ResultBytes: 64 << 20,
		CallTimeout: time.Minute, SessionTime: 8 * time.Hour, Concurrent: 8, WarnAt: 0.8, Tokenizer: "o200k_base",
		Match: QuotaMatch{Routes: []string{}, Tenants: []string{}, Principals: []string{}, Groups: []string{}},
	}, {
		Name: "acme.daily", Per: "tenant", Window: 24 * time.Hour, ResultBytes: 1 << 30, Tokenizer: "bytes4",
		Match: QuotaMatch{Routes: []string{"default"}, Tenants: []string{"acme"}, Groups: []string{"paid", "trial"}},
	}}
	if diff := cmp.Diff(want, cfg.Quotas); diff != "" {
		t.Errorf("quotas (-want +got):\n%s", diff)
	}
	q := cfg.Quotas[1]
	for _, tt := range []struct {
		tenant, principal string
		groups            []string
		want              bool
	}{
		{"acme", "alice", []string{"trial"}, true},
		{"acme", "alice", []string{"free"}, false},
		{"other", "alice", []string{"paid"}, false},
		{"acme", "bob", nil, false},
	} {
		if got := q.MatchesIdentity(tt.tenant, tt.principal, tt.groups); got != tt.want {
			t.Errorf("MatchesIdentity(%q, %q, %v) = %v", tt.tenant, tt.principal, tt.groups, got)
		}
	}
	if !q.MatchesRoute("default") || q.MatchesRoute("other") || !cfg.Quotas[0].MatchesRoute("other") {
		t.Error("MatchesRoute: routes: [default] must match only default, an empty list every route")
	}
}

func TestQuotaErrors(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		want     []string // substrings, one problem each
	}{
		{"no name", `[{requests: 1}]`, []string{"quotas[0].name: required"}},
		{"bad name", `[{name: "a b", requests: 1}]`, []string{"quotas[0].name: want 1-64"}},
		{"duplicate", `[{name: a, requests: 1}, {name: a, requests: 2}]`, []string{`quotas[1].name: duplicate quota name "a"`}},
		{"unknown route", `[{name: a, requests: 1, match: {routes: [nope]}}]`, []string{`quotas[0].match.routes[0]: no route is named "nope"`}},
		{"per", `[{name: a, requests: 1, per: user}]`, []string{`quotas[0].per: want session, principal or tenant, got "user"`}},
		{"principal without window", `[{name: a, requests: 1, per: principal}]`, []string{"quotas[0].window: per: principal needs a rolling window"}},
		{"window too short", `[{name: a, requests: 1, window: 10ms}]`, []string{"quotas[0].window: want 0"}},
		{"negative", `[{name: a, requests: -1}]`, []string{"quotas[0].requests: must not be negative"}},
		{"tool zero", `[{name: a, tools: {search: 0}}]`, []string{"quotas[0].tools.search: want a positive number"}},
		{"warn_at", `[{name: a, requests: 1, warn_at: 1.5}]`, []string{"quotas[0].warn_at: want a fraction"}},
		{"tokenizer", `[{name: a, result_tokens: 1, tokenizer: gpt2}]`, []string{`quotas[0].tokenizer: want o200k_base, cl100k_base or bytes4, got "gpt2"`}},
		{"no limit", `[{name: a}]`, []string{"quotas[0]: sets no limit"}},
		{"unknown key", `[{name: a, requests: 1, request: 2}]`, []string{"quotas[0].request"}},
		{"bad size", `[{name: a, result_bytes: lots}]`, []string{"quotas[0].result_bytes"}},
		{"concurrent principal, no window", `[{name: a, per: principal, concurrent: 2}]`, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := problems(t, oneRoute+"quotas: "+tt.in+"\n")
			if len(got) != len(tt.want) {
				t.Fatalf("problems = %q, want %d like %q", got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}
