package e2e

import (
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/testutil/testenv"
)

// cutProxy forwards TCP to a target until cut, and can be restored.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.cut {
				p.mu.Unlock()
				_ = c.Close()
				continue
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				p.mu.Unlock()
				_ = c.Close()
				continue
			}
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); _ = up.Close() }()
			go func() { _, _ = io.Copy(c, up); _ = c.Close() }()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); p.setCut(true) })
	return p
}

func (p *cutProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.conns = nil
	}
}

// TestStoreUnavailableFailsClosed: while the shared store cannot be
// reached, new sessions and look-ups the replica cannot check get 503
// with Retry-After (not 404, not a crash); sessions this replica holds keep
// working; when the store is back, everything works again.
func TestStoreUnavailableFailsClosed(t *testing.T) {
	t.Parallel()
	requireRedis(t)
	proxy := newCutProxy(t, redisAddr)
	prefix := "mcpgate-test:" + session.NewID()[:12] + ":"
	t.Cleanup(func() { cleanupRedis(t, prefix) })
	secret := testenv.IDKeySecret() // shared by the replicas
	withRedis := func(c *config.Config) {
		c.Store = config.Store{Kind: config.StoreRedis, Redis: &config.RedisStore{Addr: proxy.ln.Addr().String(), Prefix: prefix}}
		c.Sessions.IDKeys = []config.IDKey{{ID: "k1", Secret: config.Secret(secret)}}
	}
	upstream := fixtureHTTP(t, false)
	a := startGateway(t, withRedis, httpRoute("fixture", "/mcp", upstream))
	b := startGateway(t, withRedis, httpRoute("fixture", "/mcp", upstream))
	held := legacySession(t, a.URL+"/mcp")
	ping := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	hdr := map[string]string{"Mcp-Session-Id": held, "MCP-Protocol-Version": "2025-06-18"}

	proxy.setCut(true)
	if r := do(t, "POST", a.URL+"/mcp", initBody, nil); r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
		t.Fatalf("initialize with the store down: %d %s", r.Status, r.Body)
	}
	if r := do(t, "POST", b.URL+"/mcp", ping, hdr); r.Status != http.StatusServiceUnavailable {
		t.Fatalf("look-up on another replica with the store down: %d %s", r.Status, r.Body)
	}
	if r := do(t, "POST", a.URL+"/mcp", ping, hdr); r.Status != http.StatusOK {
		t.Fatalf("a session the replica holds, store down: %d %s", r.Status, r.Body)
	}

	proxy.setCut(false)
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := do(t, "POST", b.URL+"/mcp", ping, hdr)
		if r.Status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store back, another replica still answers %d %s", r.Status, r.Body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	legacySession(t, a.URL+"/mcp")
}
