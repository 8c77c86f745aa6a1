package e2e

import (
	"encoding/json"
	"fmt"
	"github.com/mcpgate/mcpgate/internal/testutil/testenv"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/session"
)

// resultOf is the JSON-RPC result of a response body, JSON or SSE (the
// last data line).
func resultOf(t testing.TB, body string) json.RawMessage {
	t.Helper()
	if i := strings.LastIndex(body, "data: "); i >= 0 {
		body = strings.TrimSpace(strings.SplitN(body[i+len("data: "):], "\n", 2)[0])
	}
	var env struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal([]byte(body), &env); err != nil || env.Result == nil {
		t.Fatalf("no result in %q", body)
	}
	return env.Result
}

// TestClusterModernSessions: three replicas on one Redis in front of a
// stdio server. A modern client that echoes its Mcpgate-Session key keeps
// one gateway session whichever replica its requests reach (they are
// forwarded to the replica holding it), so it cannot fill the cluster's
// cap; an MRTR retry that reaches another replica than the one holding the
// pending call is served there — with the key, and without one (the
// requestState names the session).
func TestClusterModernSessions(t *testing.T) {
	t.Parallel()
	requireRedis(t)
	bin := mcpgateBin
	prefix := "mcpgate-test:" + session.NewID()[:12] + ":"
	t.Cleanup(func() { cleanupRedis(t, prefix) })
	secret := testenv.IDKeySecret() // shared by the replicas
	var addrs []string
	for i := range 3 {
		addr := freeAddr(t)
		cfg := fmt.Sprintf(`
listeners: [{address: "%s"}]
store: {kind: redis, redis: {addr: "127.0.0.1:6379", prefix: "%s"}}
cluster: {listen: "%s"}
sessions:
  id_keys: [{id: k1, secret: "%s"}]
routes:
  - {name: fixture, path: /mcp, max_sessions: 3, when_full: reject, upstream: {era: legacy, stdio: {command: "%s"}}}
`, addr, prefix, freeAddr(t), secret, fixtureBin)
		path := filepath.Join(t.TempDir(), fmt.Sprintf("replica%d.yaml", i))
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		startProcess(t, bin, "--config", path)
		addrs = append(addrs, "http://"+addr+"/mcp")
	}
	meta := modernMeta("echoer")
	first := modernDo(t, addrs[0], "tools/list", `{"_meta":`+meta+`}`, nil)
	key := first.Header.Get("Mcpgate-Session")
	if first.Status != http.StatusOK || key == "" {
		t.Fatalf("first request: %d %s (key %q)", first.Status, first.Body, key)
	}
	call := `{"name":"test_simple_text","arguments":{},"_meta":` + meta + `}`
	for i := range 12 {
		r := modernDo(t, addrs[i%3], "tools/call", call, map[string]string{"Mcpgate-Session": key, "Mcp-Name": "test_simple_text"})
		if r.Status != http.StatusOK || !strings.Contains(r.Body, "simple text response") {
			t.Fatalf("call %d on replica %d with the echoed key: %d %s", i, i%3, r.Status, r.Body)
		}
		if k := r.Header.Get("Mcpgate-Session"); k != "" {
			t.Fatalf("call %d on replica %d was given a new session key: the echoed key was not found", i, i%3)
		}
	}

	// MRTR across replicas.
	mrtr := func(askOn, retryOn string, hdr map[string]string) {
		t.Helper()
		state, input := askSampling(t, askOn, hdr)
		if r := retrySampling(t, retryOn, "test_sampling", state, input, hdr); r.Status != http.StatusOK || !strings.Contains(r.Body, "Paris") {
			t.Fatalf("retry on another replica: %d %s", r.Status, r.Body)
		}
	}
	mrtr(addrs[1], addrs[2], map[string]string{"Mcpgate-Session": key})
	mrtr(addrs[2], addrs[0], nil) // keyless: replica 2's session for this address
	// A retry refused on another replica ends the pending call on the
	// replica holding it: the call does not wait for a retry to come.
	state, input := askSampling(t, addrs[0], map[string]string{"Mcpgate-Session": key})
	if r := retrySampling(t, addrs[1], "wrong_name", state, input, map[string]string{"Mcpgate-Session": key}); r.Status != http.StatusBadRequest || r.Code != -32020 {
		t.Fatalf("retry with a mismatched Mcp-Name: %d %s; want 400 -32020", r.Status, r.Body)
	}
	if r := retrySampling(t, addrs[2], "test_sampling", state, input, map[string]string{"Mcpgate-Session": key}); r.Code != -32602 || !strings.Contains(r.Msg, "ended") {
		t.Fatalf("retry after a refused one: %d %s; want -32602 (the call was cancelled)", r.Status, r.Body)
	}

	// The echoing client holds one session, the keyless one on replica 2
	// another: one place under the cap of 3 is left.
	if r := modernDo(t, addrs[1], "tools/list", `{"_meta":`+meta+`}`, nil); r.Status != http.StatusOK {
		t.Fatalf("a third session: %d %s; want 200 (the echoing client holds one)", r.Status, r.Body)
	}
}
