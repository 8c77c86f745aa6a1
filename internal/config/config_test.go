package config

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLoadDefaults(t *testing.T) {
	cfg, err := LoadBytes([]byte(`
routes:
  - path: /mcp
    upstream:
      stdio:
        command: sh
        args: [--x, "y z"]
        env: {TOKEN: s3cret}
`))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Routes[0]
	want := []any{cfg.Listeners[0].Address, r.Name, r.Upstream.Era, r.RequestTimeout, r.IdleTimeout, r.Upstream.Stdio.ShutdownGrace, int64(cfg.Server.MaxBodyBytes), r.Upstream.Stdio.Args}
	got := []any{"127.0.0.1:8080", "default", "auto", 5 * time.Minute, 30 * time.Minute, 5 * time.Second, int64(4 << 20), []string{"--x", "y z"}}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	if s := fmt.Sprint(r.Upstream.Stdio.Env["TOKEN"]); s != "REDACTED" {
		t.Errorf("secret prints as %q", s)
	}
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("x", "v", r.Upstream.Stdio.Env["TOKEN"])
	if strings.Contains(b.String(), "s3cret") {
		t.Errorf("secret logged: %s", b.String())
	}
}

// TestLoadErrors keeps one fixture per problem with its exact message, and
// checks that every problem in a file is reported at once.
func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"unknown field with suggestion", "routes:\n  - path: /mcp\n    upstreem: {}\n",
			[]string{`routes[0].upstreem: unknown field; did you mean "upstream"? (line 3)`}},
		{"unknown top-level", "listners: []\n" + oneRoute,
			[]string{`listners: unknown field; did you mean "listeners"? (line 1)`}},
		{"wrong type", "server:\n  keepalive: [1]\n" + oneRoute, []string{"server.keepalive: want a duration such as 30s or 5m (line 2)"}},
		{"bad duration", "server:\n  keepalive: 5 minutes\n" + oneRoute, []string{`server.keepalive: invalid duration "5 minutes" (want e.g. 30s, 5m, 1h) (line 2)`}},
		{"bad size", "server:\n  max_body_bytes: 4 parsecs\n" + oneRoute, []string{`server.max_body_bytes: invalid size "4 parsecs" (want e.g. 4MiB, 512KiB, 1024) (line 2)`}},
		{"int for bool", "routes:\n  - path: /m\n    upstream:\n      stdio: {command: sh, inherit_env: maybe}\n",
			[]string{`routes[0].upstream.stdio.inherit_env: want a boolean, got "maybe" (line 4)`}},
		{"duplicate key", "log:\n  level: info\n  level: debug\n" + oneRoute, []string{"log.level: duplicate field (line 3)"}},
		{"several at once", `
listeners:
  - address: nope
routes:
  - path: mcp
    upstream:
      http: {url: "ftp://x"}
      stdio: {command: sh}
  - path: /b
    upstream: {era: sideways}
log: {format: xml}
`, []string{
			`listeners[0].address: want host:port, got "nope" (line 3)`,
			`routes[0].path: want an absolute path such as /mcp or /servers/name/mcp, got "mcp" (line 5)`,
			`routes[0].upstream: set exactly one of http and stdio, not both (line 6)`,
			`routes[1].upstream.era: want auto, legacy or modern, got "sideways" (line 10)`,
			`routes[1].upstream: set exactly one of http and stdio (line 10)`,
			`log.format: want json or text, got "xml" (line 11)`,
		}},
		// Decoding problems do not hide semantic ones: one pass, in file
		// order, and nothing said twice about a field that did not decode
		// (or that a misspelt key was meant to be).
		{"decoding and semantic together", `
server:
  keepalive: soon
listeners:
  - address: nope
routes:
  - path: /mcp
    request_timeout: [1]
    upstreem: {}
`, []string{
			`server.keepalive: invalid duration "soon" (want e.g. 30s, 5m, 1h) (line 3)`,
			`listeners[0].address: want host:port, got "nope" (line 5)`,
			`routes[0].request_timeout: want a duration such as 30s or 5m (line 8)`,
			`routes[0].upstreem: unknown field; did you mean "upstream"? (line 9)`,
		}},
		{"trusted proxies", "listeners:\n  - address: 127.0.0.1:8080\n    trusted_proxies: [10.0.0.0/8, 192.0.2.7, \"::1\", nope, 10.1.2.3/8, 10.0.0.0/33, \"fe80::1%eth0\"]\n" + oneRoute,
			[]string{
				`listeners[0].trusted_proxies[3]: want a CIDR (10.0.0.0/8, fd00::/8) or an IP address, got "nope" (line 3)`,
				`listeners[0].trusted_proxies[4]: "10.1.2.3/8" has address bits set past its prefix length; did you mean 10.0.0.0/8? (line 3)`,
				`listeners[0].trusted_proxies[5]: want a CIDR (10.0.0.0/8, fd00::/8) or an IP address, got "10.0.0.0/33" (line 3)`,
				`listeners[0].trusted_proxies[6]: want a CIDR (10.0.0.0/8, fd00::/8) or an IP address, got "fe80::1%eth0" (line 3)`,
			}},
		{"negative connection limit", "server: {max_connections: -1}\n" + oneRoute,
			[]string{"server.max_connections: must not be negative (line 1)"}},
		{"no routes", "log: {level: info}\n", []string{"routes: at least one route is required"}},
		{"managed header", "routes:\n  - path: /m\n    upstream:\n      http: {url: 'http://x', headers: {Mcp-Session-Id: a}}\n",
			[]string{"routes[0].upstream.http.headers.Mcp-Session-Id: managed by mcpgate; cannot be set (line 4)"}},
		{"cluster needs the hop for stdio", `
store: {kind: redis}
sessions: {id_keys: [{id: k1, secret: "Qm9vdHN0cmFwIGtleSBmb3IgdGVzdHMgb25seSE3OTFhNGM"}]}
routes:
  - {path: /a, upstream: {http: {url: "http://x"}}}
  - {path: /b, upstream: {stdio: {command: sh}}}
`, []string{"cluster.listen: required with store kind redis and a stdio route (routes[1]): other replicas forward that route's sessions to the replica running its process"}},
		{"cluster settings", `
cluster: {listen: "0.0.0.0:9301"}
routes: [{path: /a, upstream: {stdio: {command: sh}}}]
`, []string{
			"cluster.listen: set only with store kind redis (line 2)",
			"cluster.advertise: required when cluster.listen is a wildcard address: other replicas need an address to dial (line 2)",
		}},
		{"cluster advertise without listen", "cluster: {advertise: \"10.0.0.1:9301\"}\nroutes: [{path: /a, upstream: {stdio: {command: sh}}}]\n",
			[]string{"cluster.advertise: set only with cluster.listen (line 1)"}},
		{"example secret", idKey("replace-me-with-at-least-32-random-bytes-0123456789"),
			[]string{`sessions.id_keys[0].secret: looks like a placeholder (contains "replace"), not a generated secret; ` + howToSecret + ` (line 2)`}},
		{"changeme secret", idKey("ChangeMe-0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"),
			[]string{`sessions.id_keys[0].secret: looks like a placeholder (contains "change"), not a generated secret; ` + howToSecret + ` (line 2)`}},
		{"short secret", idKey("k8Qz3vX1pL0w"),
			[]string{`sessions.id_keys[0].secret: want at least 32 bytes, got 12; ` + howToSecret + ` (line 2)`}},
		{"repeated secret", idKey(strings.Repeat("a", 40)),
			[]string{`sessions.id_keys[0].secret: too predictable (about 0 bits of entropy, want at least 64): repeated or patterned characters; ` + howToSecret + ` (line 2)`}},
		{"patterned secret", idKey("0123456789abcdef0123456789abcdef"),
			[]string{`sessions.id_keys[0].secret: too predictable (about 32 bits of entropy, want at least 64): repeated or patterned characters; ` + howToSecret + ` (line 2)`}},
		{"key without id", "sessions:\n  id_keys:\n    - secret: Qm9vdHN0cmFwIGtleSBmb3IgdGVzdHMgb25seSE3OTFhNGM\n" + oneRoute,
			[]string{"sessions.id_keys[0].id: required (line 3)"}},
		{"secret from an unset variable", "sessions:\n  id_keys:\n    - {id: k1, secret: \"${MCPGATE_TEST_UNSET_KEY}\"}\n" + oneRoute,
			[]string{"sessions.id_keys[0].secret: environment variable MCPGATE_TEST_UNSET_KEY is not set (the value is ${MCPGATE_TEST_UNSET_KEY}) (line 3)"}},
		{"stdio command not in PATH", "routes:\n  - path: /m\n    upstream:\n      stdio:\n        command: mcpgate-no-such-server\n",
			[]string{`routes[0].upstream.stdio.command: "mcpgate-no-such-server" not found in PATH (line 5)`}},
		{"stdio command relative to dir", "routes:\n  - path: /m\n    upstream:\n      stdio: {command: ./server, dir: /}\n",
			[]string{`routes[0].upstream.stdio.command: /server: no such file or directory (line 4)`}},
		{"stdio command not executable", "routes:\n  - path: /m\n    upstream:\n      stdio: {command: testdata/not-executable}\n",
			[]string{`routes[0].upstream.stdio.command: testdata/not-executable is not executable (line 4)`}},
		{"stdio dir missing", "routes:\n  - path: /m\n    upstream:\n      stdio: {command: sh, dir: /nonexistent-mcpgate}\n",
			[]string{`routes[0].upstream.stdio.dir: /nonexistent-mcpgate: no such file or directory (line 4)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadBytes([]byte(tt.in))
			if err == nil {
				t.Fatal("no error")
			}
			var cerr *Error
			var got []string
			if errors.As(err, &cerr) {
				for _, p := range cerr.Problems {
					got = append(got, p.Error())
				}
			} else {
				got = []string{err.Error()}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

const howToSecret = "generate one with: openssl rand -base64 48 (and keep it out of the file: secret: ${MCPGATE_ID_KEY})"

// idKey is a configuration whose one id key has secret; the secret is on
// line 2.
func idKey(secret string) string {
	return "sessions:\n  id_keys: [{id: k1, secret: \"" + secret + "\"}]\n" + oneRoute
}

// TestSecretFromEnvironment: a secret written ${NAME} is read from the
// environment, so a shared file need not hold it.
func TestSecretFromEnvironment(t *testing.T) {
	const secret = "Qm9vdHN0cmFwIGtleSBmb3IgdGVzdHMgb25seSE3OTFhNGM"
	t.Setenv("MCPGATE_TEST_ID_KEY", secret)
	cfg, err := LoadBytes([]byte("sessions:\n  id_keys: [{id: k1, secret: \"${MCPGATE_TEST_ID_KEY}\"}]\n" + oneRoute))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Sessions.IDKeys[0].Secret.Reveal(); got != secret {
		t.Errorf("secret = %q, want the variable's value", got)
	}
}

// TestExamplesLoad: every file in examples/ loads as it is, given the
// environment its comments ask for and what the README's first command
// builds (bin/echo-server), from the directory the README runs them in.
func TestExamplesLoad(t *testing.T) {
	t.Setenv("MCPGATE_ID_KEY", "Qm9vdHN0cmFwIGtleSBmb3IgdGVzdHMgb25seSE3OTFhNGM")
	files, err := filepath.Glob("../../examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for i, f := range files {
		if files[i], err = filepath.Abs(f); err != nil {
			t.Fatal(err)
		}
	}
	// A stand-in for the built binary: validation checks that the command
	// exists and is executable, not what it does.
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "echo-server"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(root)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if _, err := Load(f); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestSplitCommand(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"npx -y server", []string{"npx", "-y", "server"}},
		{`node "my dir/s.js" --name 'a b' x\ y`, []string{"node", "my dir/s.js", "--name", "a b", "x y"}},
		{`a "" b`, []string{"a", "", "b"}},
	}
	for _, tt := range tests {
		got, err := SplitCommand(tt.in)
		if err != nil || !cmp.Equal(got, tt.want) {
			t.Errorf("SplitCommand(%q) = %q, %v", tt.in, got, err)
		}
	}
	for _, bad := range []string{"", "  ", `a "b`, `a\`} {
		if _, err := SplitCommand(bad); err == nil {
			t.Errorf("SplitCommand(%q) accepted", bad)
		}
	}
}

func TestForCommandLine(t *testing.T) {
	cfg, err := ForCommandLine("127.0.0.1:0", "", "http://127.0.0.1:9/mcp")
	if err != nil || cfg.Routes[0].Path != "/mcp" || cfg.Routes[0].Upstream.HTTP == nil {
		t.Fatalf("ForCommandLine = %+v, %v", cfg, err)
	}
	if _, err := ForCommandLine("127.0.0.1:0", "x", "http://y"); err == nil {
		t.Error("both --stdio and --http accepted")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("routes:\n  - path: /mcp\n    upstream: {stdio: {command: sh}}\n"))
	f.Add([]byte("listeners: [{address: 1}]\nserver: {max_body_bytes: 1KiB}"))
	f.Add([]byte("server:\n  keepalive: soon\nroutes:\n  - path: mcp\n    upstreem: {}\n"))
	f.Add([]byte("listeners: [{address: ':80'}]\nauth:\n  api_keys: [{key_sha256: x, principal: '#'}]\n  oauth: {issuer: 'http://127.0.0.1', audience: y}\n  scopes: {'tools/call:*': [a]}\nroutes:\n  - path: /mcp\n    auth: {anonymous: false}\n    upstream: {stdio: {command: sh}}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		// LoadBytes is Parse, SetDefaults and Validate in one pass: it
		// accepts exactly what they accept, and each problem it reports
		// names a path and a line inside the file (or none).
		_, lerr := LoadBytes(b)
		var cerr *Error
		if errors.As(lerr, &cerr) {
			lines := bytes.Count(b, []byte("\n")) + bytes.Count(b, []byte("\r")) + 1 // YAML breaks lines at either
			for _, e := range cerr.Problems {
				if p, ok := e.(*Problem); !ok || p.Path == "" || p.Line < 0 || p.Line > lines {
					t.Errorf("problem %#v in a file of %d lines", e, lines)
				}
			}
		}
		cfg, err := Parse(b)
		if err != nil {
			if lerr == nil {
				t.Errorf("Parse: %v; LoadBytes accepted", err)
			}
			return
		}
		cfg.SetDefaults()
		if verr := cfg.Validate(); (verr == nil) != (lerr == nil) {
			t.Errorf("Validate: %v; LoadBytes: %v", verr, lerr)
		}
	})
}

// TestGeneratedSecretsAccepted: what the usual generators make is never
// refused as weak (openssl rand -base64 48, -base64 32, -hex 32, -hex 16).
func TestGeneratedSecretsAccepted(t *testing.T) {
	gens := []struct {
		name string
		n    int
		enc  func([]byte) string
	}{
		{"base64 of 48 bytes", 48, base64.StdEncoding.EncodeToString},
		{"base64 of 32 bytes", 32, base64.StdEncoding.EncodeToString},
		{"base64 of 24 bytes", 24, base64.StdEncoding.EncodeToString},
		{"hex of 32 bytes", 32, hex.EncodeToString},
		{"hex of 16 bytes", 16, hex.EncodeToString},
	}
	for _, g := range gens {
		t.Run(g.name, func(t *testing.T) {
			b := make([]byte, g.n)
			for range 2000 {
				_, _ = rand.Read(b)
				if s := g.enc(b); weakSecret(s) != "" {
					t.Fatalf("%q refused: %s", s, weakSecret(s))
				}
			}
		})
	}
}

// TestParseTrustedProxy: single addresses are one-address prefixes, and
// IPv4-mapped forms are IPv4, as the frontend compares client addresses.
func TestParseTrustedProxy(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.0/8":          "10.0.0.0/8",
		"192.0.2.7":           "192.0.2.7/32",
		"::1":                 "::1/128",
		"fd00::/8":            "fd00::/8",
		"::ffff:10.0.0.0/104": "10.0.0.0/8",
		"::ffff:192.0.2.7":    "192.0.2.7/32",
	} {
		got, err := ParseTrustedProxy(in)
		if err != nil || got.String() != want {
			t.Errorf("ParseTrustedProxy(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
}

// TestPlaceholderIn: long placeholder words count anywhere, separators
// ignored; short ones only standing alone, so a random string that holds
// one by chance is not refused.
func TestPlaceholderIn(t *testing.T) {
	for s, want := range map[string]string{
		"replace-me-with-32-random-bytes-0000": "replace",
		"MySecretKeyForTheGateway":             "secret",
		"pass_word_of_the_admin":               "password",
		"dummy-key-for-tests":                  "dummy",
		"the_DUMMY_one":                        "dummy",
		"k9Qdummyx7Zp+/Ab3c4d5e6f7g8h9i0j1k2l": "",
		"q8VbL0dUMmYz2mR4tW6yX1cN3eP5gH7jK9s":  "",
	} {
		if got := placeholderIn(s); got != want {
			t.Errorf("placeholderIn(%q) = %q; want %q", s, got, want)
		}
	}
}
