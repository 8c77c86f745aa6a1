package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRestartKeepsRateLimits: the gateway killed with SIGKILL and started
// again on the same embedded store continues its rate limits where they
// were: a client address whose request bucket was empty gets 429 at once,
// and one whose creation window was full cannot open a session. The
// limiters' state is saved every flush_interval, so the test waits one
// out before the kill (a crash loses at most that much).
func TestRestartKeepsRateLimits(t *testing.T) {
	t.Parallel()
	bin := mcpgateBin
	addr, dir := freeAddr(t), t.TempDir()
	const flush = 100 * time.Millisecond
	cfg := fmt.Sprintf(`listeners:
  - address: %q
sessions:
  request_rate: {per_second: 0.001, burst: 10}
  creation_rate:
    per_address: {limit: 3, window: 1h}
routes:
  - path: /mcp
    upstream:
      http: {url: %q}
store:
  kind: embedded
  data_dir: %q
  flush_interval: %s
`, addr, fixtureHTTP(t, false), filepath.Join(dir, "data"), flush)
	cfgPath := filepath.Join(dir, "mcpgate.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	gw := startProcess(t, bin, "--config", cfgPath)
	url := "http://" + addr + "/mcp"
	const v = "2025-06-18"

	// Three sessions fill the address's creation window; their
	// initialize requests take three tokens of the bucket.
	var ids []string
	for range 3 {
		ids = append(ids, sessionAt(t, url, v))
	}
	admitted := 0
	for {
		r := pingAs(t, url, ids[0], v)
		if r.Code == -32012 {
			break
		}
		if r.Status != http.StatusOK {
			t.Fatalf("ping: %d %s", r.Status, r.Body)
		}
		if admitted++; admitted > 10 {
			t.Fatal("the request bucket never refuses")
		}
	}
	if admitted != 7 {
		t.Errorf("%d pings admitted, want 7 (burst 10, three initialize requests)", admitted)
	}
	if r := do(t, "POST", url, initBody, nil); r.Status != http.StatusTooManyRequests || !strings.Contains(r.Msg, "creation rate limit") {
		t.Fatalf("a fourth creation before the restart: %d %s", r.Status, r.Body)
	}

	time.Sleep(2*flush + 250*time.Millisecond)
	gw.kill()
	startProcess(t, bin, "--config", cfgPath)

	r := pingAs(t, url, ids[1], v)
	if r.Status != http.StatusTooManyRequests || r.Code != -32012 || retryAfter(r.Header) < 900 {
		t.Errorf("a request after the restart: %d (Retry-After %q) %s; want 429 until the next token, ~1000s away",
			r.Status, r.Header.Get("Retry-After"), r.Body)
	}
	r = do(t, "POST", url, initBody, nil)
	if r.Status != http.StatusTooManyRequests || !strings.Contains(r.Msg, "creation rate limit") || retryAfter(r.Header) < 3000 {
		t.Errorf("a creation after the restart: %d (Retry-After %q) %s; want 429 from the full creation window",
			r.Status, r.Header.Get("Retry-After"), r.Body)
	}
}
