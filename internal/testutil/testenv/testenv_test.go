package testenv_test

import (
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/testutil/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// childEnv marks the run of this binary that plays a package whose test
// needs a Redis.
const childEnv = "MCPGATE_TESTENV_CHILD"

// TestChildNeedsRedis is the test the child runs; in the parent it does
// nothing.
func TestChildNeedsRedis(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		return
	}
	testenv.Redis(t)
}

// TestMissingRedisIsReported runs a test that needs a Redis against an
// address where none answers (MCPGATE_TEST_REDIS_ADDR pointing at a port
// that is not Redis): without CI the test skips and the package says so
// when it ends; with CI=true it fails.
func TestMissingRedisIsReported(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
			_ = c.Close()
		}
	}()
	addr := ln.Addr().String()
	tests := []struct {
		name     string
		ci       string
		wantCode int
		want     string // a line of the output
	}{
		{"skipped with a note", "", 0, `(?m)^note: testenv: 1 test\(s\) skipped: no Redis at ` + regexp.QuoteMeta(addr) + ` \(not a Redis: answered "HTTP/1.1 400 Bad Request" to PING\); start one .* or set MCPGATE_TEST_REDIS_ADDR=host:port$`},
		{"failed under CI", "true", 1, `Redis: no Redis at ` + regexp.QuoteMeta(addr) + ` .*\(CI=true: required\)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestChildNeedsRedis$", "-test.count=1")
			cmd.Env = append(os.Environ(), childEnv+"=1", testenv.RedisAddrEnv+"="+addr, "CI="+tt.ci)
			out, err := cmd.CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantCode || !regexp.MustCompile(tt.want).Match(out) {
				t.Errorf("exit %d, output:\n%s\nwant exit %d and a line matching %s", code, out, tt.wantCode, tt.want)
			}
			if tt.ci == "" && strings.Count(string(out), "note:") != 1 {
				t.Errorf("want one note, got:\n%s", out)
			}
		})
	}
}

// TestIDKeySecret: the helper's secrets pass configuration's checks and
// differ each time.
func TestIDKeySecret(t *testing.T) {
	a, b := testenv.IDKeySecret(), testenv.IDKeySecret()
	if a == b {
		t.Errorf("secrets %q, %q", a, b)
	}
	for _, s := range []string{a, b} {
		yaml := "sessions: {id_keys: [{id: k1, secret: \"" + s + "\"}]}\nroutes: [{path: /mcp, upstream: {http: {url: \"http://127.0.0.1:9/\"}}}]\n"
		if _, err := config.LoadBytes([]byte(yaml)); err != nil {
			t.Errorf("secret %q: %v", s, err)
		}
	}
}
