package e2e

import (
	"bytes"
	"net"
	"os/exec"
	"testing"

	"github.com/mcpgate/mcpgate/internal/testutil/testenv"
)

// redisAddr is the test Redis, as for every package's tests:
// MCPGATE_TEST_REDIS_ADDR or 127.0.0.1:6379.
var redisAddr = testenv.RedisAddr()

// requireRedis fails under CI=true and skips elsewhere (TestMain says so)
// when the test Redis is not there.
func requireRedis(t testing.TB) {
	t.Helper()
	testenv.Redis(t)
}

// cleanupRedis deletes the keys a test wrote under its prefix.
func cleanupRedis(t testing.TB, prefix string) {
	host, port, _ := net.SplitHostPort(redisAddr)
	keys, err := exec.Command("redis-cli", "-h", host, "-p", port, "--scan", "--pattern", prefix+"*").Output()
	if err != nil || len(keys) == 0 {
		return
	}
	cmd := exec.Command("xargs", "redis-cli", "-h", host, "-p", port, "DEL")
	cmd.Stdin = bytes.NewReader(keys)
	_ = cmd.Run()
}
