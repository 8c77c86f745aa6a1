package cli_test

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/mcpgate/mcpgate/internal/cli"
)

func TestMain(m *testing.M) {
	// serve and validate build a whole gateway in-process; whatever they
	// start must be gone when they return. (os/signal's loop, started by
	// serve's signal.NotifyContext, lives for the process by design.)
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("os/signal.signal_recv"),
		// stdio's spawners live as long as the process, on purpose.
		goleak.IgnoreTopFunction("github.com/mcpgate/mcpgate/internal/upstream/stdio.spawnLoop"))
}

type result struct {
	code           int
	stdout, stderr string
}

// run calls cli.Main in-process from an empty working directory, so
// nothing a command writes relative to it lands in the source tree.
func run(t *testing.T, args ...string) result {
	t.Helper()
	t.Chdir(t.TempDir())
	var stdout, stderr bytes.Buffer
	code := cli.Main(args, &stdout, &stderr)
	return result{code, stdout.String(), stderr.String()}
}

// runBounded is run for commands that must return on their own: a serve
// that does not fail fast would otherwise wait for a signal forever.
func runBounded(t *testing.T, limit time.Duration, args ...string) result {
	t.Helper()
	t.Chdir(t.TempDir())
	done := make(chan result, 1)
	go func() {
		var stdout, stderr bytes.Buffer
		code := cli.Main(args, &stdout, &stderr)
		done <- result{code, stdout.String(), stderr.String()}
	}()
	select {
	case r := <-done:
		return r
	case <-time.After(limit):
		t.Fatalf("mcpgate %s did not return within %v", strings.Join(args, " "), limit)
		return result{}
	}
}

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mcpgate.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVersion(t *testing.T) {
	tests := []struct {
		name    string
		set     string // cli.Version, as -ldflags -X would set it
		pattern string
	}{
		{"build info or dev", "", `^mcpgate \S+\n$`},
		{"set at link time", "v1.2.3", `^mcpgate v1\.2\.3\n$`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := cli.Version
			cli.Version = tt.set
			t.Cleanup(func() { cli.Version = old })
			r := run(t, "version")
			if r.code != 0 || r.stderr != "" {
				t.Errorf("exit %d, stderr %q", r.code, r.stderr)
			}
			if !regexp.MustCompile(tt.pattern).MatchString(r.stdout) {
				t.Errorf("stdout = %q, want %s", r.stdout, tt.pattern)
			}
		})
	}
}

// TestServeHelp: --help shows no default for --listen, which applies only
// without --config, and says which applies when.
func TestServeHelp(t *testing.T) {
	r := run(t, "serve", "--help")
	var line string
	for l := range strings.Lines(r.stdout) {
		if strings.Contains(l, "--listen") && !strings.Contains(l, "mcpgate serve") {
			line = strings.TrimSpace(l)
		}
	}
	want := "--listen string           listen address: with --stdio or --http, default 127.0.0.1:8080; with --config, replaces the file's listeners (default: the file's)"
	if r.code != 0 || line != want {
		t.Errorf("exit %d, --listen line:\n  %s\nwant:\n  %s", r.code, line, want)
	}
}

func TestValidateOK(t *testing.T) {
	good := writeConfig(t, `
listeners:
  - address: 127.0.0.1:0
log:
  level: debug
routes:
  - path: /mcp
    upstream:
      stdio:
        command: sh
        args: [-c, "true"]
  - name: remote
    path: /servers/remote/mcp
    upstream:
      http:
        url: http://127.0.0.1:9/mcp
`)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"config file", []string{"validate", "--config", good}, "configuration OK: 1 listener(s), 2 route(s)\n"},
		{"short flag", []string{"validate", "-c", good}, "configuration OK: 1 listener(s), 2 route(s)\n"},
		{"stdio without a file", []string{"validate", "--stdio", "sh -c true"}, "configuration OK: 1 listener(s), 1 route(s)\n"},
		{"http without a file", []string{"validate", "--http", "http://127.0.0.1:9/mcp"}, "configuration OK: 1 listener(s), 1 route(s)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, tt.args...)
			want := result{code: 0, stdout: tt.want}
			if diff := cmp.Diff(want, r, cmp.AllowUnexported(result{})); diff != "" {
				t.Errorf("mcpgate %v (-want +got):\n%s", tt.args, diff)
			}
		})
	}
}

// TestValidateReportsEveryProblem: a broken file fails with exit 1 and
// stderr names every problem by its path, not just the first.
func TestValidateReportsEveryProblem(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{
			name: "semantic problems",
			yaml: `
listeners:
  - address: localhost
log:
  level: verbose
  format: xml
routes:
  - path: mcp
    upstream:
      stdio: {command: sh}
  - path: /b
    upstream:
      http: {url: "ftp://example.com/mcp"}
  - path: /c
    upstream: {}
`,
			want: []string{
				`listeners[0].address: want host:port, got "localhost"`,
				`log.format: want json or text, got "xml"`,
				`log.level: want debug, info, warn or error, got "verbose"`,
				`routes[0].path: want an absolute path such as /mcp or /servers/name/mcp, got "mcp"`,
				`routes[1].upstream.http.url: want an http or https URL, got "ftp://example.com/mcp"`,
				`routes[2].upstream: set exactly one of http and stdio`,
			},
		},
		{
			name: "policies",
			yaml: `
routes:
  - path: /mcp
    upstream:
      stdio: {command: sh}
policies:
  - name: guests
    match: {routes: [github], groups: [guest]}
    tools: {allow: ["search_[*"], deny: ["*delete*"]}
    rules:
      - deny: 'tool == "query" && !args.sql.startsWith(1)'
        message: only SELECT queries are allowed
      - deny: 'tool'
    redact:
      - pattern: 'AKIA[0-9A-Z{16}('
        replace: x
      - detectors: [secrets, passwords]
    block:
      - pattern: '-----BEGIN [A-Z ]*PRIVATE KEY-----('
  - name: guests
`,
			want: []string{
				`policies[0].match.routes[0]: no route is named "github" (line 8)`,
				`policies[0].tools.allow[0]: not a valid glob: "search_[*" (line 9)`,
				`policies[0].rules[0].deny: ERROR: <input>:1:40: found no matching overload for 'startsWith' applied to 'dyn.(int)' | tool == "query" && !args.sql.startsWith(1) |`,
				`policies[0].rules[1].deny: the expression is a string; a rule must be a bool (true denies) (line 13)`,
				`policies[0].redact[0].pattern: not a valid regular expression: error parsing regexp: missing closing ]: ` + "`[0-9A-Z{16}(`" + ` (line 15)`,
				`policies[0].redact[1].detectors[1]: unknown detector set "passwords" (known: secrets) (line 17)`,
				`policies[0].block[0].pattern: not a valid regular expression: error parsing regexp: missing closing ): ` + "`-----BEGIN [A-Z ]*PRIVATE KEY-----(`" + ` (line 19)`,
				`policies[1].name: duplicate policy name "guests" (policies[0]) (line 20)`,
			},
		},
		{
			name: "decoding problems",
			yaml: `
sever:
  keepalive: 5s
routes:
  - path: /mcp
    request_timeout: soon
    upstream:
      stdio: {command: sh, inherit_env: maybe}
`,
			want: []string{
				`sever: unknown field; did you mean "server"? (line 2)`,
				`routes[0].request_timeout: invalid duration "soon" (want e.g. 30s, 5m, 1h) (line 6)`,
				`routes[0].upstream.stdio.inherit_env: want a boolean, got "maybe" (line 8)`,
			},
		},
		{
			// One pass: a decoding problem does not hide the others, and
			// each comes with its line.
			name: "decoding and semantic problems together",
			yaml: `
listeners:
  - address: localhost
routes:
  - path: /mcp
    request_timeout: soon
    upstream:
      stdio: {command: mcpgate-no-such-server}
sessions:
  id_keys:
    - {id: k1, secret: "replace-me-with-at-least-32-random-bytes-0123456789"}
`,
			want: []string{
				`config: 4 problem(s):`,
				`listeners[0].address: want host:port, got "localhost" (line 3)`,
				`routes[0].request_timeout: invalid duration "soon" (want e.g. 30s, 5m, 1h) (line 6)`,
				`routes[0].upstream.stdio.command: "mcpgate-no-such-server" not found in PATH (line 8)`,
				`sessions.id_keys[0].secret: looks like a placeholder (contains "replace"), not a generated secret; generate one with: openssl rand -base64 48`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, "validate", "--config", writeConfig(t, tt.yaml))
			if r.code != 1 {
				t.Errorf("exit code %d, want 1", r.code)
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want nothing", r.stdout)
			}
			var missing []string
			for _, p := range tt.want {
				if !strings.Contains(r.stderr, p) {
					missing = append(missing, p)
				}
			}
			if len(missing) > 0 {
				t.Errorf("stderr lacks %d problem(s):\n  %s\nstderr:\n%s", len(missing), strings.Join(missing, "\n  "), r.stderr)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	cfg := writeConfig(t, "routes:\n  - path: /mcp\n    upstream:\n      stdio: {command: sh}\n")
	tests := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"serve with config and stdio", []string{"serve", "--config", cfg, "--stdio", "sh -c true"}, "--config excludes --stdio and --http"},
		{"validate with config and http", []string{"validate", "--config", cfg, "--http", "http://127.0.0.1:9/mcp"}, "--config excludes --stdio and --http"},
		{"stdio and http", []string{"serve", "--stdio", "sh -c true", "--http", "http://127.0.0.1:9/mcp"}, "--stdio and --http are exclusive"},
		{"no upstream", []string{"serve"}, "give --config FILE, or --stdio 'COMMAND ARGS' or --http URL"},
		{"unterminated quote", []string{"validate", "--stdio", "sh -c 'true"}, "unterminated quote"},
		{"missing config file", []string{"validate", "--config", filepath.Join(t.TempDir(), "absent.yaml")}, "no such file or directory"},
		{"unknown command", []string{"serv"}, `unknown command "serv"`},
		{"unknown flag", []string{"serve", "--stdoi", "x"}, "unknown flag: --stdoi"},
		{"positional argument", []string{"validate", "extra"}, `unknown command "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runBounded(t, 10*time.Second, tt.args...)
			if r.code != 1 {
				t.Errorf("exit code %d, want 1", r.code)
			}
			if !strings.HasPrefix(r.stderr, "mcpgate: ") || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr = %q, want \"mcpgate: ...%s...\"", r.stderr, tt.want)
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want nothing", r.stdout)
			}
		})
	}
}

// TestServeBadListenAddressFailsFast: serve must return with a clear
// error instead of waiting for a signal when it cannot listen.
func TestServeBadListenAddressFailsFast(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	route := "routes:\n  - path: /mcp\n    upstream:\n      stdio: {command: sh}\n"
	tests := []struct {
		name string
		yaml string
		want []string // in stderr
	}{
		{"not host:port", "listeners:\n  - address: localhost\n" + route,
			[]string{`listeners[0].address: want host:port, got "localhost"`}},
		{"port out of range", "listeners:\n  - address: 127.0.0.1:99999\n" + route,
			[]string{"listen 127.0.0.1:99999"}},
		{"address in use", "listeners:\n  - address: " + taken.Addr().String() + "\n" + route,
			[]string{"listen " + taken.Addr().String(), "address already in use"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runBounded(t, 20*time.Second, "serve", "--config", writeConfig(t, tt.yaml))
			if r.code != 1 {
				t.Errorf("exit code %d, want 1", r.code)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
		})
	}
}

// TestValidatePolicies: the policies section as documented is accepted.
func TestValidatePolicies(t *testing.T) {
	cfg := writeConfig(t, `
routes:
  - name: github
    path: /mcp
    upstream:
      http: {url: "http://127.0.0.1:9/mcp"}
policies:
  - name: guests-read-only
    match: {routes: [github], tenants: [acme], principals: [], groups: [guest]}
    tools:     {allow: ["search_*", "get_*"], deny: ["*delete*"]}
    resources: {allow: ["file:///srv/public/**"], deny: []}
    prompts:   {deny: ["admin_*"]}
    rules:
      - deny: 'tool == "query" && !args.sql.startsWith("SELECT")'
        message: only SELECT queries are allowed
    validate_input: true
    redact:
      - pattern: 'AKIA[0-9A-Z]{16}'
        replace: '[REDACTED:aws-access-key]'
      - detectors: [secrets]
    block:
      - pattern: '-----BEGIN [A-Z ]*PRIVATE KEY-----'
`)
	r := run(t, "validate", "--config", cfg)
	if r.code != 0 || r.stdout != "configuration OK: 1 listener(s), 1 route(s)\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}
