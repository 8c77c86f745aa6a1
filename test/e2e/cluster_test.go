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
// killed mid-run. Sessions over an HTTP upstream continue on whichever
// replica gets the request, and a session ended on one replica is gone on
// all of them.
func TestClusterAnyReplicaServesAnySession(t *testing.T) {
	requireRedis(t)
	bin := buildMCPGate(t)
	upstream := fixtureHTTP(t, false)
	prefix := "mcpgate-test:" + session.NewID()[:12] + ":"
	t.Cleanup(func() { cleanupRedis(t, prefix) })
	var addrs []string
	var procs []*gatewayProcess
	for i := range 3 {
		addr := freeAddr(t)
		cfg := fmt.Sprintf(`
listeners: [{address: "%s"}]
store: {kind: redis, redis: {addr: "127.0.0.1:6379", prefix: "%s"}}
sessions:
  id_keys: [{id: k1, secret: "%s"}]
routes:
  - {name: fixture, path: /mcp, upstream: {era: legacy, http: {url: "%s"}}}
`, addr, prefix, strings.Repeat("s", 40), upstream)
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
	const clients, calls = 4, 12
	var sessions []*mcp.ClientSession
	for range clients {
		c := newSDKClient()
		cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: "http://" + addrs[0] + "/mcp", HTTPClient: &http.Client{Transport: rot}}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, cs)
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
	// Ending a session on one replica ends it on all.
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
