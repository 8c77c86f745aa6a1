package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestResilienceConfig: the example loads as written; an empty
// block takes the documented defaults; absent blocks stay off.
func TestResilienceConfig(t *testing.T) {
	t.Parallel()
	cfg, err := LoadBytes([]byte(`routes:
  - name: github
    path: /github/mcp
    upstream:
      http: {url: "https://mcp.example.com/mcp"}
      retry: {attempts: 3, backoff: 100ms, max_backoff: 2s, jitter: full, budget: 10s, on: [connect, reset, timeout, 502, 503, 504, 429]}
      breaker: {failure_ratio: 0.5, min_requests: 20, window: 30s, open_for: 15s, half_open_requests: 3}
  - name: defaults
    path: /d/mcp
    upstream:
      stdio: {command: sh}
      retry: {}
      breaker: {}
  - name: off
    path: /off/mcp
    upstream: {stdio: {command: sh}}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := Retry{Attempts: 3, Backoff: 100 * time.Millisecond, MaxBackoff: 2 * time.Second, Jitter: "full", Budget: 10 * time.Second,
		On: []string{"connect", "reset", "timeout", "502", "503", "504", "429"}}
	wantB := Breaker{FailureRatio: 0.5, MinRequests: 20, Window: 30 * time.Second, OpenFor: 15 * time.Second, HalfOpenRequests: 3}
	for _, i := range []int{0, 1} {
		u := cfg.Routes[i].Upstream
		if u.Retry == nil || u.Breaker == nil {
			t.Fatalf("routes[%d]: retry %v, breaker %v", i, u.Retry, u.Breaker)
		}
		if diff := cmp.Diff(want, *u.Retry); diff != "" {
			t.Errorf("routes[%d].upstream.retry (-want +got):\n%s", i, diff)
		}
		if diff := cmp.Diff(wantB, *u.Breaker); diff != "" {
			t.Errorf("routes[%d].upstream.breaker (-want +got):\n%s", i, diff)
		}
	}
	if u := cfg.Routes[2].Upstream; u.Retry != nil || u.Breaker != nil {
		t.Errorf("absent blocks must stay off, got retry %v breaker %v", u.Retry, u.Breaker)
	}
}

func TestResilienceErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, in string
		want     []string
	}{
		{"attempts", `retry: {attempts: 11}`, []string{"routes[0].upstream.retry.attempts: want 1 to 10"}},
		{"negative attempts", `retry: {attempts: -1}`, []string{"routes[0].upstream.retry.attempts"}},
		{"backoff", `retry: {backoff: -1s}`, []string{"routes[0].upstream.retry.backoff: invalid duration"}},
		{"max below backoff", `retry: {backoff: 3s, max_backoff: 1s}`, []string{"routes[0].upstream.retry.max_backoff: must be at least backoff"}},
		{"jitter", `retry: {jitter: half}`, []string{`routes[0].upstream.retry.jitter: want full or none, got "half"`}},
		{"budget", `retry: {budget: -1s}`, []string{"routes[0].upstream.retry.budget: invalid duration"}},
		{"empty on", `retry: {on: []}`, []string{"routes[0].upstream.retry.on: list at least one"}},
		{"bad class", `retry: {on: [connect, 500]}`, []string{`routes[0].upstream.retry.on[1]: want one of connect, reset, timeout, 502, 503, 504, 429, got "500"`}},
		{"duplicate class", `retry: {on: [reset, reset]}`, []string{`routes[0].upstream.retry.on[1]: duplicate "reset"`}},
		{"unknown key", `retry: {attempt: 2}`, []string{"routes[0].upstream.retry.attempt"}},
		{"ratio", `breaker: {failure_ratio: 1.5}`, []string{"routes[0].upstream.breaker.failure_ratio: want a ratio in (0, 1]"}},
		{"min requests", `breaker: {min_requests: -2}`, []string{"routes[0].upstream.breaker.min_requests: must be at least 1"}},
		{"window", `breaker: {window: 10ms}`, []string{"routes[0].upstream.breaker.window: must be at least 100ms"}},
		{"open_for", `breaker: {open_for: -1s}`, []string{"routes[0].upstream.breaker.open_for: invalid duration"}},
		{"half open", `breaker: {half_open_requests: -1}`, []string{"routes[0].upstream.breaker.half_open_requests: must be at least 1"}},
		{"fine", `{retry: {attempts: 1}, breaker: {min_requests: 1}}`, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := tt.in
			if !strings.HasPrefix(in, "{") {
				in = "{" + in + "}"
			}
			in = strings.TrimSuffix(strings.TrimPrefix(in, "{"), "}")
			got := problems(t, "routes:\n  - path: /mcp\n    upstream: {stdio: {command: sh}, "+in+"}\n")
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
