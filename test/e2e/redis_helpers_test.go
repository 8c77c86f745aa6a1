package e2e

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"
)

// requireRedis fails under CI=true and skips elsewhere when the Redis at
// 127.0.0.1:6379 is not there.
func requireRedis(t testing.TB) {
	t.Helper()
	c, err := net.DialTimeout("tcp", "127.0.0.1:6379", time.Second)
	if err != nil {
		msg := "Redis is not reachable at 127.0.0.1:6379 (start one: redis-server --daemonize yes --port 6379 --save '')"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	_ = c.Close()
}

// cleanupRedis deletes the keys a test wrote under its prefix.
func cleanupRedis(t testing.TB, prefix string) {
	keys, err := exec.Command("redis-cli", "-h", "127.0.0.1", "--scan", "--pattern", prefix+"*").Output()
	if err != nil || len(keys) == 0 {
		return
	}
	cmd := exec.Command("xargs", "redis-cli", "-h", "127.0.0.1", "DEL")
	cmd.Stdin = bytes.NewReader(keys)
	_ = cmd.Run()
}
