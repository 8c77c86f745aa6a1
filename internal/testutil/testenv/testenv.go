// Package testenv decides what a test that needs something outside Go (a
// Redis, the Node peers) does when it is missing: under CI=true it
// fails; elsewhere it skips, and the skip is reported when the package's
// tests end, because `go test ./...` shows nothing of a passing package
// but its "ok" line.
//
// A package whose tests may skip this way runs them through Main:
//
//	func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
//
// and asks for what it needs:
//
//	addr := testenv.Redis(t) // MCPGATE_TEST_REDIS_ADDR or 127.0.0.1:6379
package testenv

import (
	"cmp"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// RedisAddrEnv names the variable that points the tests at a Redis.
const RedisAddrEnv = "MCPGATE_TEST_REDIS_ADDR"

// RedisAddr is the test Redis: $MCPGATE_TEST_REDIS_ADDR, or
// 127.0.0.1:6379.
func RedisAddr() string { return cmp.Or(os.Getenv(RedisAddrEnv), "127.0.0.1:6379") }

// CI reports whether the tests run in CI (CI=true), where nothing they
// need may be missing.
func CI() bool { return os.Getenv("CI") == "true" }

var redisUp = sync.OnceValue(func() error {
	c, err := net.DialTimeout("tcp", RedisAddr(), 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	// A listener that is not Redis (or a wrong port) must not pass.
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "PING\r\n"); err != nil {
		return err
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if reply := string(buf[:n]); !strings.HasPrefix(reply, "+PONG") && !strings.HasPrefix(reply, "-NOAUTH") {
		return fmt.Errorf("not a Redis: answered %q to PING", strings.TrimSpace(reply))
	}
	return nil
})

// Redis returns the test Redis's address, or skips t (fails it under
// CI=true) when none answers there.
func Redis(t testing.TB) string {
	t.Helper()
	if err := redisUp(); err != nil {
		Missing(t, "Redis", fmt.Sprintf("no Redis at %s (%v); start one (redis-server --daemonize yes --port 6379 --save '') or set %s=host:port", RedisAddr(), err, RedisAddrEnv))
	}
	return RedisAddr()
}

var (
	mu     sync.Mutex
	skips  = map[string]int{}    // what → tests skipped
	reason = map[string]string{} // what → why, the first time
)

// Missing is what a test does without what it needs: under CI=true it
// fails; elsewhere it skips, and Main reports the skip.
func Missing(t testing.TB, what, why string) {
	t.Helper()
	if CI() {
		t.Fatalf("%s: %s (CI=true: required)", what, why)
	}
	mu.Lock()
	skips[what]++
	if _, ok := reason[what]; !ok {
		reason[what] = why
	}
	mu.Unlock()
	t.Skipf("%s: %s", what, why)
}

// Main runs the tests and, when some were skipped for something missing,
// says so once: on stderr (shown by go test -v and for failing
// packages) and on the terminal, since plain `go test ./...` hides the
// output of a passing package. It returns the exit code.
func Main(m *testing.M) int {
	code := m.Run()
	Report()
	return code
}

// Report writes the note of the skips so far, if any (Main calls it;
// for a TestMain that cannot, as goleak's Cleanup option).
func Report() {
	note := Note()
	if note == "" {
		return
	}
	fmt.Fprint(os.Stderr, note)
	if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
		fmt.Fprint(tty, note)
		_ = tty.Close()
	}
}

// Note is the report of the skips so far, "" when there were none.
func Note() string {
	mu.Lock()
	defer mu.Unlock()
	if len(skips) == 0 {
		return ""
	}
	pkg := "tests"
	if len(os.Args) > 0 {
		pkg = strings.TrimSuffix(baseName(os.Args[0]), ".test")
	}
	var b strings.Builder
	for _, what := range slices.Sorted(maps.Keys(skips)) {
		fmt.Fprintf(&b, "note: %s: %d test(s) skipped: %s\n", pkg, skips[what], reason[what])
	}
	return b.String()
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

// IDKeySecret returns a fresh random secret for sessions.id_keys:
// configuration refuses repeated or patterned ones.
func IDKeySecret() string {
	b := make([]byte, 36)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}
