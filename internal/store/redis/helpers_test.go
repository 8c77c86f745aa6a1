package redisstore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcpgate/mcpgate/internal/testutil/testenv"
)

// The tests talk to a real Redis: MCPGATE_TEST_REDIS_ADDR, or
// 127.0.0.1:6379. Without one they skip (and TestMain says so), except
// under CI=true, where they fail. Each test works under its own key
// prefix and deletes its keys when it ends; nothing flushes a database.
var redisAddr = testenv.RedisAddr()

func needRedis(t testing.TB) {
	t.Helper()
	testenv.Redis(t)
}

// rawClient is a plain client on the test Redis, for looking behind the
// store's back.
func rawClient(t testing.TB) *redis.Client {
	t.Helper()
	needRedis(t)
	c := redis.NewClient(&redis.Options{Addr: redisAddr, Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// testPrefix returns a fresh key prefix and deletes its keys when t ends.
func testPrefix(t testing.TB) string {
	t.Helper()
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	p := "mcpgate-test:" + hex.EncodeToString(b) + ":"
	cleanupPrefix(t, p)
	return p
}

// pathPrefix is the prefix standing for a storetest durable path: the same
// path gives the same prefix, in the crash child too.
func pathPrefix(path string) string {
	h := sha256.Sum256([]byte(path))
	return "mcpgate-test:" + hex.EncodeToString(h[:8]) + ":"
}

// cleanupPrefix deletes every key under p when t ends. Prefixes are hex,
// so they hold no glob metacharacters.
func cleanupPrefix(t testing.TB, p string) {
	t.Helper()
	c := rawClient(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, p+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Errorf("scan %s*: %v", p, err)
			return
		}
		for len(keys) > 0 {
			n := min(len(keys), 1000)
			if err := c.Unlink(ctx, keys[:n]...).Err(); err != nil {
				t.Errorf("delete keys under %s: %v", p, err)
				return
			}
			keys = keys[n:]
		}
	})
}

// openStore opens a store on the test Redis (or opts.Addr), under a fresh
// prefix unless opts has one, closed and cleaned up when t ends.
func openStore(t testing.TB, opts Options) *Store {
	t.Helper()
	needRedis(t)
	if opts.Addr == "" {
		opts.Addr = redisAddr
	}
	if opts.Prefix == "" {
		opts.Prefix = testPrefix(t)
	}
	s, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// counter counts round trips: each command sent alone, and each pipeline
// (MULTI/EXEC included), is one.
type counter struct{ n atomic.Int64 }

func (c *counter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}

func (c *counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmds)
	}
}

func countRoundTrips(s *Store) *counter {
	c := new(counter)
	s.rdb.AddHook(c)
	return c
}

// proxy is a TCP forwarder to Redis that a test can cut (connections
// closed, new ones refused, as when Redis is down), stall (connections
// accepted, nothing answered, as in a partition) and restore, without
// touching the shared Redis.
type proxy struct {
	t      testing.TB
	target string
	addr   string

	mu      sync.Mutex
	ln      net.Listener
	conns   map[net.Conn]struct{}
	stalled bool
	wg      sync.WaitGroup
}

func newProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, target: target, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	p.start(ln)
	t.Cleanup(p.shutdown)
	return p
}

func (p *proxy) Addr() string { return p.addr }

func (p *proxy) start(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.handle(c)
		}
	})
}

func (p *proxy) handle(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		_ = c.Close()
		return
	}
	p.conns[c] = struct{}{}
	if p.stalled {
		// Read and drop: the client's writes succeed, its reads time out.
		p.wg.Go(func() { _, _ = io.Copy(io.Discard, c) })
		return
	}
	up, err := net.DialTimeout("tcp", p.target, time.Second)
	if err != nil {
		_ = c.Close()
		delete(p.conns, c)
		return
	}
	p.conns[up] = struct{}{}
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		_ = dst.Close()
		_ = src.Close()
	}
	p.wg.Go(func() { pipe(up, c) })
	p.wg.Go(func() { pipe(c, up) })
}

// closeAll closes the listener and every connection; the caller holds mu.
func (p *proxy) closeAll() {
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}

// Cut closes every connection and refuses new ones.
func (p *proxy) Cut() {
	p.mu.Lock()
	p.closeAll()
	p.mu.Unlock()
	p.wg.Wait()
}

// Stall closes every connection and accepts new ones that never answer.
func (p *proxy) Stall() {
	p.Cut()
	p.mu.Lock()
	p.stalled = true
	p.mu.Unlock()
	p.listen()
}

// Restore forwards again, on the same address.
func (p *proxy) Restore() {
	p.Cut()
	p.mu.Lock()
	p.stalled = false
	p.mu.Unlock()
	p.listen()
}

func (p *proxy) listen() {
	p.t.Helper()
	var ln net.Listener
	var err error
	// The port was ours a moment ago; retry briefly in case the kernel
	// has not let go of it.
	for range 50 {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatalf("proxy: listen again on %s: %v", p.addr, err)
	}
	p.start(ln)
}

func (p *proxy) shutdown() { p.Cut() }

// eventually polls f until it returns nil or d passes, and fails with the
// last error.
func eventually(t testing.TB, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
