package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/testutil/testenv"
)

// rotator sends every request to the next replica in turn, and to the one
// after when a replica does not answer at all (as a load balancer that
// drops a dead backend would).
type rotator struct {
	addrs  []string
	next   atomic.Uint64
	served sync.Map // addr → *atomic.Int64
}

func (r *rotator) RoundTrip(req *http.Request) (*http.Response, error) {
	var lastErr error
	for range r.addrs {
		addr := r.addrs[int(r.next.Add(1))%len(r.addrs)]
		out := req.Clone(req.Context())
		out.URL.Host, out.Host = addr, addr
		if req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			out.Body = body
		}
		resp, err := http.DefaultTransport.RoundTrip(out)
		if err == nil {
			n, _ := r.served.LoadOrStore(addr, new(atomic.Int64))
			n.(*atomic.Int64).Add(1)
			return resp, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// TestClusterAnyReplicaServesAnySession: three mcpgate processes share one
// Redis; clients send every request to the next replica; one replica is
// killed mid-run. Over an HTTP upstream, any replica serves any session;
// over stdio, requests reach the replica running the session's process
// over the internal hop, and the sessions of the killed replica are taken
// over (their processes respawned) by the others. The route's session cap
// holds across the cluster, and a session ended on one replica is gone on
// all of them.
func TestClusterAnyReplicaServesAnySession(t *testing.T) {
	t.Parallel()
	requireRedis(t)
	bin := mcpgateBin
	upstreams := map[string]string{
		"http":  fmt.Sprintf(`{era: legacy, http: {url: "%s"}}`, fixtureHTTP(t, false)),
		"stdio": fmt.Sprintf(`{era: legacy, stdio: {command: "%s"}}`, fixtureBin),
	}
	for name, up := range upstreams {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			clusterRun(t, bin, up)
		})
	}
}

func clusterRun(t *testing.T, bin, upstream string) {
	prefix := "mcpgate-test:" + session.NewID()[:12] + ":"
	t.Cleanup(func() { cleanupRedis(t, prefix) })
	const clients, calls = 4, 12
	secret := testenv.IDKeySecret() // shared by the replicas
	var addrs []string
	var procs []*gatewayProcess
	for i := range 3 {
		addr := freeAddr(t)
		cfg := fmt.Sprintf(`
listeners: [{address: "%s"}]
store: {kind: redis, redis: {addr: "%s", prefix: "%s"}}
cluster: {listen: "%s"}
sessions:
  id_keys: [{id: k1, secret: "%s"}]
routes:
  - {name: fixture, path: /mcp, max_sessions: %d, when_full: reject, upstream: %s}
`, addr, redisAddr, prefix, freeAddr(t), secret, clients, upstream)
		path := filepath.Join(t.TempDir(), fmt.Sprintf("replica%d.yaml", i))
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, startProcess(t, bin, "--config", path))
		addrs = append(addrs, addr)
	}
	rot := &rotator{addrs: addrs}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var sessions []*mcp.ClientSession
	for i := range clients {
		// Sessions start on every replica in turn (1, 2, 0, 1), so the
		// replica killed below holds some.
		rot.next.Store(uint64(i))
		c := newSDKClient()
		cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: "http://" + addrs[0] + "/mcp", HTTPClient: &http.Client{Transport: rot}}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, cs)
	}
	// The cap of 4 is the cluster's, not each replica's: every replica
	// refuses a fifth session.
	initialize := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"extra","version":"1"}}}`
	for _, addr := range addrs {
		r := do(t, "POST", "http://"+addr+"/mcp", initialize, nil)
		if r.Status != http.StatusServiceUnavailable || !strings.Contains(r.Body, "-32013") {
			t.Errorf("fifth session on %s: %d %s; want 503 with -32013 (cluster-wide cap)", addr, r.Status, r.Body)
		}
	}
	var failed atomic.Int64
	var wg sync.WaitGroup
	for i, cs := range sessions {
		wg.Go(func() {
			for n := range calls {
				if i == 0 && n == calls/2 {
					procs[2].kill() // one replica dies mid-run
				}
				res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text"})
				if err != nil || textOf(t, res) != "This is a simple text response for testing." {
					failed.Add(1)
					t.Logf("session %s call %d: %v", cs.ID(), n, err)
				}
			}
		})
	}
	wg.Wait()
	for _, addr := range addrs {
		n, ok := servedBy(rot, addr)
		if !ok || n < 5 {
			t.Errorf("replica %s served %d requests; the rotation did not spread them", addr, n)
		}
	}
	// Only requests in flight to the killed replica may fail.
	if f := failed.Load(); f > clients {
		t.Errorf("%d of %d calls failed", f, clients*calls)
	}
	t.Logf("calls: %d, failed: %d", clients*calls, failed.Load())
	// Ending a session on one replica ends it on all, and frees its place
	// under the cap for a session on any replica.
	ended := sessions[0].ID()
	if err := sessions[0].Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the ended session to be gone on every live replica", func() bool {
		for _, addr := range addrs[:2] {
			r := do(t, "POST", "http://"+addr+"/mcp", `{"jsonrpc":"2.0","id":1,"method":"ping"}`,
				map[string]string{"Mcp-Session-Id": ended, "MCP-Protocol-Version": "2025-11-25"})
			if r.Status != http.StatusNotFound {
				return false
			}
		}
		return true
	})
	if r := do(t, "POST", "http://"+addrs[1]+"/mcp", initialize, nil); r.Status != http.StatusOK {
		t.Errorf("a new session after one ended: %d %s; want 200", r.Status, r.Body)
	}
	for _, cs := range sessions[1:] {
		_ = cs.Close()
	}
}

func servedBy(rot *rotator, addr string) (int64, bool) {
	v, ok := rot.served.Load(addr)
	if !ok {
		return 0, false
	}
	return v.(*atomic.Int64).Load(), true
}
