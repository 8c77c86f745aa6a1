package e2e

import (
	"context"
	"github.com/mcpgate/mcpgate/internal/testutil/testenv"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcpgate/mcpgate/internal/config"
)

// TestClusterSurvivesRedisDataLoss: two replicas on a Redis that loses
// everything (FLUSHALL, as a restart of the README's Redis without persistence
// would). Each replica notices (the epoch it remembers is gone) and writes
// back what it holds — records, owners, places under the caps — before
// anyone is admitted again: every session still works through either
// replica (an HTTP session read back from the store, a stdio session
// forwarded to its owner), and the cluster-wide cap still refuses a
// session beyond it.
func TestClusterSurvivesRedisDataLoss(t *testing.T) {
	t.Parallel()
	rs := startRedisServer(t)
	upstream := fixtureHTTP(t, false)
	const max = 4
	secret := testenv.IDKeySecret() // shared by the replicas
	replica := func() *gw {
		return startGateway(t, func(c *config.Config) {
			c.Store = config.Store{Kind: config.StoreRedis, Redis: &config.RedisStore{Addr: rs.addr}}
			c.Cluster = config.Cluster{Listen: freeAddr(t)}
			c.Sessions.IDKeys = []config.IDKey{{ID: "k1", Secret: config.Secret(secret)}}
			c.Sessions.Max, c.Sessions.WhenFull = max, "reject"
		}, httpRoute("http", "/http", upstream), stdioRoute("stdio", "/stdio", fixtureBin))
	}
	a, b := replica(), replica()

	type held struct {
		path string
		on   *gw // the replica it was created on
		hdr  map[string]string
	}
	var sessions []held
	for _, h := range []held{{"/http", a, nil}, {"/stdio", a, nil}, {"/http", b, nil}, {"/stdio", b, nil}} {
		h.hdr = map[string]string{"Mcp-Session-Id": legacySession(t, h.on.URL+h.path), "MCP-Protocol-Version": "2025-06-18"}
		sessions = append(sessions, h)
	}
	capFull := func(when string) {
		t.Helper()
		for _, g := range []*gw{a, b} {
			if r := do(t, "POST", g.URL+"/http", initBody, nil); r.Status != http.StatusServiceUnavailable || !strings.Contains(r.Body, "-32013") {
				t.Errorf("%s: session %d on %s: %d %s; want 503 -32013 (the cluster's cap of %d)", when, max+1, g.URL, r.Status, r.Body, max)
			}
		}
	}
	capFull("before the loss")

	c := redis.NewClient(&redis.Options{Addr: rs.addr, Protocol: 2, DisableIdentity: true})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}

	// The other replica of each session serves it: the store has it back.
	call := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"test_simple_text","arguments":{}}}`
	other := map[*gw]*gw{a: b, b: a}
	served := func(when string, through func(h held) *gw) {
		t.Helper()
		for _, h := range sessions {
			r := do(t, "POST", through(h).URL+h.path, call, h.hdr)
			for deadline := time.Now().Add(10 * time.Second); r.Status == http.StatusServiceUnavailable && time.Now().Before(deadline); {
				// Right after a restart a pooled connection may still
				// fail once: the client is told to retry, never 404.
				time.Sleep(50 * time.Millisecond)
				r = do(t, "POST", through(h).URL+h.path, call, h.hdr)
			}
			if r.Status != http.StatusOK || !strings.Contains(r.Body, "simple text response") {
				t.Errorf("%s: %s session created on %s: %d %s", when, h.path, h.on.URL, r.Status, r.Body)
			}
		}
	}
	served("flushed, through the other replica", func(h held) *gw { return other[h.on] })
	// The live sessions count again: the cap still holds.
	capFull("after the flush")
	if n, err := c.Exists(ctx, "mcpgate:epoch").Result(); err != nil || n != 1 {
		t.Errorf("epoch after the recovery: %d, %v", n, err)
	}

	// The same after a restart of a Redis that keeps nothing.
	rs.kill()
	rs.start()
	served("restarted, through the replica that created it", func(h held) *gw { return h.on })
	served("restarted, through the other replica", func(h held) *gw { return other[h.on] })
	capFull("after the restart")
}
