package config

import (
	"errors"
	"fmt"
	"log/slog"
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
        command: server
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
		{"unknown top-level", "listners: []\n",
			[]string{`listners: unknown field; did you mean "listeners"? (line 1)`}},
		{"wrong type", "server:\n  keepalive: [1]\n", []string{"server.keepalive: want a duration such as 30s or 5m (line 2)"}},
		{"bad duration", "server:\n  keepalive: 5 minutes\n", []string{`server.keepalive: invalid duration "5 minutes" (want e.g. 30s, 5m, 1h) (line 2)`}},
		{"bad size", "server:\n  max_body_bytes: 4 parsecs\n", []string{`server.max_body_bytes: invalid size "4 parsecs" (want e.g. 4MiB, 512KiB, 1024) (line 2)`}},
		{"int for bool", "routes:\n  - path: /m\n    upstream:\n      stdio: {command: x, inherit_env: maybe}\n",
			[]string{`routes[0].upstream.stdio.inherit_env: want a boolean, got "maybe" (line 4)`}},
		{"duplicate key", "log:\n  level: info\n  level: debug\n", []string{"log.level: duplicate field (line 3)"}},
		{"several at once", `
listeners:
  - address: nope
routes:
  - path: mcp
    upstream:
      http: {url: "ftp://x"}
      stdio: {command: x}
  - path: /b
    upstream: {era: sideways}
log: {format: xml}
`, []string{
			`listeners[0].address: want host:port, got "nope"`,
			`log.format: want json or text, got "xml"`,
			`routes[0].path: want an absolute path such as /mcp or /servers/name/mcp, got "mcp"`,
			`routes[0].upstream: set exactly one of http and stdio, not both`,
			`routes[1].upstream.era: want auto, legacy or modern, got "sideways"`,
			`routes[1].upstream: set exactly one of http and stdio`,
		}},
		{"no routes", "log: {level: info}\n", []string{"routes: at least one route is required"}},
		{"managed header", "routes:\n  - path: /m\n    upstream:\n      http: {url: 'http://x', headers: {Mcp-Session-Id: a}}\n",
			[]string{"routes[0].upstream.http.headers.Mcp-Session-Id: managed by mcpgate; cannot be set"}},
		{"cluster needs the hop for stdio", `
store: {kind: redis}
sessions: {id_keys: [{id: k1, secret: "0123456789abcdef0123456789abcdef"}]}
routes:
  - {path: /a, upstream: {http: {url: "http://x"}}}
  - {path: /b, upstream: {stdio: {command: x}}}
`, []string{"cluster.listen: required with store kind redis and a stdio route (routes[1]): other replicas forward that route's sessions to the replica running its process"}},
		{"cluster settings", `
cluster: {listen: "0.0.0.0:9301"}
routes: [{path: /a, upstream: {stdio: {command: x}}}]
`, []string{
			"cluster.listen: set only with store kind redis",
			"cluster.advertise: required when cluster.listen is a wildcard address: other replicas need an address to dial",
		}},
		{"cluster advertise without listen", "cluster: {advertise: \"10.0.0.1:9301\"}\nroutes: [{path: /a, upstream: {stdio: {command: x}}}]\n",
			[]string{"cluster.advertise: set only with cluster.listen"}},
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
	f.Add([]byte("routes:\n  - path: /mcp\n    upstream: {stdio: {command: x}}\n"))
	f.Add([]byte("listeners: [{address: 1}]\nserver: {max_body_bytes: 1KiB}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := Parse(b)
		if err != nil {
			return
		}
		cfg.SetDefaults()
		_ = cfg.Validate()
	})
}
