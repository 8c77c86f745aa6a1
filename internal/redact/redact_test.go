package redact_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/redact"
)

func secrets(t testing.TB) *redact.Redactor {
	t.Helper()
	rules, ok := redact.Lookup("secrets")
	if !ok {
		t.Fatal("no secrets detectors")
	}
	r, err := redact.Compile(rules)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSecretsDetectors(t *testing.T) {
	t.Parallel()
	r := secrets(t)
	for _, tc := range []struct{ name, in, want string }{
		{"aws-access-key", "key AKIAIOSFODNN7EXAMPLE here", "key [REDACTED:aws-access-key] here"},
		{"aws-secret-key", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "[REDACTED:aws-secret-key]"},
		{"google-api-key", "AIzaSyA1234567890abcdefghijklmnopqrstuv", "[REDACTED:google-api-key]"},
		{"github-token", "token ghp_0123456789abcdefghijABCDEFGHIJ012345 ok", "token [REDACTED:github-token] ok"},
		{"github-token", "github_pat_11ABCDEFG0123456789_abcdefghijklmnop", "[REDACTED:github-token]"},
		{"gitlab-token", "glpat-abcdefghij0123456789", "[REDACTED:gitlab-token]"},
		{"slack-token", "xoxb-1234567890-abcdefghij", "[REDACTED:slack-token]"},
		{"slack-webhook", "https://hooks.slack.com/services/T000/B000/XXXX", "[REDACTED:slack-webhook]"},
		{"stripe-key", "sk_live_0123456789abcdefABCD", "[REDACTED:stripe-key]"},
		{"private-key", "a\n-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\nb", "a\n[REDACTED:private-key]\nb"},
		{"private-key", "-----BEGIN PRIVATE KEY-----\ntruncated", "[REDACTED:private-key]"},
		{"jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "[REDACTED:jwt]"},
		{"bearer-token", "Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345", "Authorization: Bearer [REDACTED:bearer-token]"},
	} {
		got, hit := r.String(tc.in)
		if got != tc.want || hit != tc.name {
			t.Errorf("%s: %q → %q (hit %q)", tc.name, tc.in, got, hit)
		}
	}
	if got, hit := r.String("nothing secret here, AKIA too short"); hit != "" || got != "nothing secret here, AKIA too short" {
		t.Errorf("false positive %q %q", got, hit)
	}
}

func TestJSONKeepsDocument(t *testing.T) {
	t.Parallel()
	r := secrets(t)
	// The key is written with escapes: a client reads AKIA…, so does the
	// redactor. Keys are never rewritten; other values keep their bytes.
	in := `{"content":[{"type":"text","text":"id \u0041KIAIOSFODNN7EXAMPLE \"q\" \u00e9"}],"AKIAIOSFODNN7EXAMPLE":1, "n": 1.50}`
	out, hit, changed := r.JSON([]byte(in))
	if !changed || hit != "aws-access-key" {
		t.Fatalf("changed %v hit %q", changed, hit)
	}
	var v map[string]any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	text := v["content"].([]any)[0].(map[string]any)["text"].(string)
	if text != `id [REDACTED:aws-access-key] "q" é` {
		t.Fatalf("text %q", text)
	}
	if !strings.Contains(string(out), `"AKIAIOSFODNN7EXAMPLE":1, "n": 1.50}`) {
		t.Fatalf("rest rewritten: %s", out)
	}
}

func TestNothingFoundCostsNothing(t *testing.T) {
	r := secrets(t)
	doc := []byte(`{"content":[{"type":"text","text":"` + strings.Repeat("plain words ", 300) + `"}]}`)
	allocs := testing.AllocsPerRun(100, func() {
		if _, _, changed := r.JSON(doc); changed {
			t.Fatal("changed")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations", allocs)
	}
}

func TestOperatorPatterns(t *testing.T) {
	t.Parallel()
	r, err := redact.Compile([]redact.Rule{{Pattern: `(?i)password=(\S+)`, Replace: "password=[hidden]"}, {Pattern: `user-(\d+)`, Replace: "user-${1}x"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := r.String("PASSWORD=hunter2 user-42"); got != "password=[hidden] user-42x" {
		t.Fatalf("%q", got)
	}
	if _, err := redact.Compile([]redact.Rule{{Pattern: `(`}}); err == nil || !strings.Contains(err.Error(), "missing closing )") {
		t.Fatalf("bad pattern: %v", err)
	}
	if r.FindJSON([]byte(`{"a":["x","user-7"]}`)) == "" || r.FindJSON([]byte(`{"user-7":1}`)) != "" {
		t.Fatal("FindJSON")
	}
}

func FuzzJSON(f *testing.F) {
	f.Add([]byte(`{"text":"AKIAIOSFODNN7EXAMPLE","k":["\u0041KIAIOSFODNN7EXAMPLE"]}`))
	f.Add([]byte(`{"a":"-----BEGIN PRIVATE KEY-----\n\ud83d\ude00"}`))
	f.Add([]byte(`"Bearer abcdefghijklmnopqrstuvwxyz"`))
	f.Add([]byte(`{"a":"\ud800"}`))
	r := secrets(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		out, _, changed := r.JSON(in)
		if !changed {
			return
		}
		if json.Valid(in) && !json.Valid(out) {
			t.Fatalf("%q became invalid JSON %q", in, out)
		}
		if json.Valid(in) && r.FindJSON(out) != "" {
			t.Fatalf("%q still holds a secret after redaction: %q", in, out)
		}
	})
}

func BenchmarkJSON4KiB(b *testing.B) {
	r := secrets(b)
	text := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 90)
	clean := []byte(`{"content":[{"type":"text","text":"` + text + `"}]}`)
	dirty := []byte(`{"content":[{"type":"text","text":"` + text + ` AKIAIOSFODNN7EXAMPLE"}]}`)
	b.Run("clean", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r.JSON(clean)
		}
	})
	b.Run("secret", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r.JSON(dirty)
		}
	})
}
