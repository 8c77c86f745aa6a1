package frontend

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/store"
	redisstore "github.com/mcpgate/mcpgate/internal/store/redis"
)

func TestHopSignature(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	signer := &hop{keys: [][]byte{[]byte("new-key-new-key-new-key-new-key!"), []byte("old-key-old-key-old-key-old-key!")}}
	oldSigner := &hop{keys: [][]byte{[]byte("old-key-old-key-old-key-old-key!")}}
	stranger := &hop{keys: [][]byte{[]byte("another-cluster-another-cluster!")}}
	req := func(h *hop, at time.Time, mutate func(*http.Request)) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
		r.Header.Set("Mcp-Session-Id", "sess-1")
		r.Header.Set(hopClientHeader, "203.0.113.7:5555")
		r.Header.Set(hopHeader, h.sign(r.Method, r.URL.Path, "sess-1", "203.0.113.7:5555", at))
		if mutate != nil {
			mutate(r)
		}
		return r
	}
	tests := []struct {
		name string
		r    *http.Request
		ok   bool
	}{
		{"signed with the current key", req(signer, now, nil), true},
		{"signed with a key being rotated out", req(oldSigner, now, nil), true},
		{"another cluster's key", req(stranger, now, nil), false},
		{"too old", req(signer, now.Add(-time.Minute), nil), false},
		{"from the future", req(signer, now.Add(time.Minute), nil), false},
		{"other session", req(signer, now, func(r *http.Request) { r.Header.Set("Mcp-Session-Id", "sess-2") }), false},
		{"other client address", req(signer, now, func(r *http.Request) { r.Header.Set(hopClientHeader, "198.51.100.1:1") }), false},
		{"other method", req(signer, now, func(r *http.Request) { r.Method = http.MethodDelete }), false},
		{"other path", req(signer, now, func(r *http.Request) { r.URL.Path = "/other" }), false},
		{"no signature", req(signer, now, func(r *http.Request) { r.Header.Del(hopHeader) }), false},
		{"garbage", req(signer, now, func(r *http.Request) { r.Header.Set(hopHeader, "x.y") }), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, ok := signer.verify(tt.r, now)
			if ok != tt.ok {
				t.Fatalf("verify = %v; want %v", ok, tt.ok)
			}
			if ok && client != "203.0.113.7:5555" {
				t.Fatalf("client = %q", client)
			}
		})
	}
	var none *hop
	if _, ok := none.verify(req(signer, now, nil), now); ok {
		t.Fatal("a replica without the hop accepted a hop request")
	}
}

// redisForTest opens a Redis store under a fresh prefix on the test Redis
// (127.0.0.1:6379), removing its keys at the end. Without Redis the test
// fails under CI=true and is skipped elsewhere.
func redisForTest(t *testing.T) *redisstore.Store {
	t.Helper()
	prefix := "mcpgate-test:" + session.NewID()[:12] + ":"
	st, err := redisstore.Open(t.Context(), redisstore.Options{Addr: "127.0.0.1:6379", Prefix: prefix})
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Redis at 127.0.0.1:6379: %v", err)
		}
		t.Skipf("Redis at 127.0.0.1:6379: %v", err)
	}
	t.Cleanup(func() {
		c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", Protocol: 2, DisableIdentity: true})
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if keys, _ := c.Keys(ctx, prefix+"*").Result(); len(keys) > 0 {
			_ = c.Del(ctx, keys...).Err()
		}
		_ = st.Close()
	})
	return st
}

// TestHopForwardFailureVisible: a request for a stdio session whose owner
// replica dies while serving it fails with 502 and the request's id on
// the replica that forwarded it, and that replica logs hop_forward_failed
// (with the owner, never the session id) and reports it by reason.
func TestHopForwardFailureVisible(t *testing.T) {
	t.Parallel()
	st := redisForTest(t)
	mgr := session.NewManager(session.Options{})
	t.Cleanup(func() { mgr.Close(context.Background()) })
	var log syncBuffer
	var mu sync.Mutex
	var reasons []string
	f, err := New(Options{
		Sessions: mgr, Logger: slog.New(slog.NewJSONHandler(&log, nil)),
		ForwardErrors: func(reason string) { mu.Lock(); reasons = append(reasons, reason); mu.Unlock() },
	}, []*Route{{Name: "r", Path: "/mcp", Clients: EraAuto, Local: true}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Provision(Provisions{Store: st, ClusterKeys: [][]byte{[]byte("hop-key-hop-key-hop-key-hop-key!")}}); err != nil {
		t.Fatal(err)
	}

	// The owner accepts the forwarded request and dies before answering.
	dying := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = c.Close()
		}
	}))
	t.Cleanup(dying.Close)
	ctx := t.Context()
	if err := st.Announce(ctx, "owner-1", strings.TrimPrefix(dying.URL, "http://"), time.Minute); err != nil {
		t.Fatal(err)
	}
	id := session.NewID()
	rec := &store.Record{ID: id, Route: "r", Era: core.EraLegacy, ProtocolVersion: "2025-11-25", InitRaw: []byte(`{}`),
		Owner: "owner-1", Created: time.Now(), LastActive: time.Now(), IdleTimeout: time.Hour}
	if err := st.Put(ctx, rec); err != nil {
		t.Fatal(err)
	}

	req := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":7,"method":"tools/list"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", id)
	req.Header.Set("MCP-Protocol-Version", "2025-11-25")
	req.Host = "127.0.0.1"
	rec2 := httptest.NewRecorder()
	f.Handler(ListenerPolicy{Loopback: true}).ServeHTTP(rec2, req)
	if rec2.Code != http.StatusBadGateway || !strings.Contains(rec2.Body.String(), `"id":7`) || !strings.Contains(rec2.Body.String(), "-32010") {
		t.Fatalf("forward to a dying owner: %d %s; want 502, -32010, with the request's id", rec2.Code, rec2.Body.String())
	}
	mu.Lock()
	got := strings.Join(reasons, ",")
	mu.Unlock()
	if got != "broken" {
		t.Errorf("ForwardErrors told %q; want broken", got)
	}
	logged := log.String()
	for _, want := range []string{`"msg":"hop_forward_failed"`, `"owner":"owner-1"`, `"reason":"broken"`, `"session":"` + core.Fingerprint(id) + `"`} {
		if !strings.Contains(logged, want) {
			t.Errorf("log lacks %s:\n%s", want, logged)
		}
	}
	if strings.Contains(logged, id) {
		t.Errorf("log carries the session id:\n%s", logged)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a reader at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestHopSignatureModernKey: for a modern request the signature covers
// its Mcpgate-Session key, so a forwarded request cannot be replayed for
// another modern session.
func TestHopSignatureModernKey(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	h := &hop{keys: [][]byte{[]byte("new-key-new-key-new-key-new-key!")}}
	r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	r.Header.Set(SessionHeader, "modern-1")
	r.Header.Set(hopClientHeader, "203.0.113.7:5555")
	r.Header.Set(hopHeader, h.sign(r.Method, r.URL.Path, hopSession(r), "203.0.113.7:5555", now))
	if _, ok := h.verify(r, now); !ok {
		t.Fatal("a signed modern request was refused")
	}
	r.Header.Set(SessionHeader, "modern-2")
	if _, ok := h.verify(r, now); ok {
		t.Fatal("a signed modern request was accepted for another session key")
	}
}
