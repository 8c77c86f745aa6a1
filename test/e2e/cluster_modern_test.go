package e2e

import (
	"encoding/json"
	"fmt"
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
	requireRedis(t)
	bin := buildMCPGate(t)
	prefix := "mcpgate-test:" + session.NewID()[:12] + ":"
	t.Cleanup(func() { cleanupRedis(t, prefix) })
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
`, addr, prefix, freeAddr(t), strings.Repeat("s", 40), fixtureBin)
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
	samplingMeta := `{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"sampling":{}}}`
	ask := `{"name":"test_sampling","arguments":{"prompt":"What is the capital of France?"},"_meta":` + samplingMeta + `}`
	mrtr := func(askOn, retryOn string, hdr map[string]string) {
		t.Helper()
		h := map[string]string{"Mcp-Name": "test_sampling"}
		for k, v := range hdr {
			h[k] = v
		}
		r := modernDo(t, askOn, "tools/call", ask, h)
		var ir struct {
			ResultType    string                     `json:"resultType"`
			InputRequests map[string]json.RawMessage `json:"inputRequests"`
			RequestState  string                     `json:"requestState"`
		}
		if r.Status != http.StatusOK || json.Unmarshal(resultOf(t, r.Body), &ir) != nil || ir.ResultType != "input_required" || len(ir.InputRequests) != 1 {
			t.Fatalf("asking call: %d %s", r.Status, r.Body)
		}
		var inputKey string
		for k := range ir.InputRequests {
			inputKey = k
		}
		retry := fmt.Sprintf(`{"name":"test_sampling","arguments":{"prompt":"What is the capital of France?"},"requestState":%q,"inputResponses":{%q:{"role":"assistant","content":{"type":"text","text":"Paris"},"model":"m","stopReason":"endTurn"}},"_meta":%s}`,
			ir.RequestState, inputKey, samplingMeta)
		r = modernDo(t, retryOn, "tools/call", retry, h)
		if r.Status != http.StatusOK || !strings.Contains(r.Body, "Paris") {
			t.Fatalf("retry on another replica: %d %s", r.Status, r.Body)
		}
	}
	mrtr(addrs[1], addrs[2], map[string]string{"Mcpgate-Session": key})
	mrtr(addrs[2], addrs[0], nil) // keyless: replica 2's session for this address

	// The echoing client holds one session, the keyless one on replica 2
	// another: one place under the cap of 3 is left.
	if r := modernDo(t, addrs[1], "tools/list", `{"_meta":`+meta+`}`, nil); r.Status != http.StatusOK {
		t.Fatalf("a third session: %d %s; want 200 (the echoing client holds one)", r.Status, r.Body)
	}
}
