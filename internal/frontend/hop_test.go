package frontend

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
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
