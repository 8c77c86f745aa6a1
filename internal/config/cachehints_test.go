package config

import (
	"strings"
	"testing"
	"time"
)

func TestCacheHints(t *testing.T) {
	cfg, err := LoadBytes([]byte(`
routes:
  - {path: /a, upstream: {stdio: {command: sh}}}
  - {path: /b, upstream: {stdio: {command: sh}}, cache_hints: {ttl: 90s, scope: public}}
`))
	if err != nil {
		t.Fatal(err)
	}
	if h := cfg.Routes[0].CacheHints; h != (CacheHints{Scope: CacheScopePrivate}) {
		t.Errorf("default cache_hints = %+v; want ttl 0, scope private", h)
	}
	if h := cfg.Routes[1].CacheHints; h != (CacheHints{TTL: 90 * time.Second, Scope: CacheScopePublic}) {
		t.Errorf("cache_hints = %+v", h)
	}
	_, err = LoadBytes([]byte(`
routes:
  - {path: /a, upstream: {stdio: {command: sh}}, cache_hints: {scope: shared}}
`))
	if want := `routes[0].cache_hints.scope: want private or public, got "shared"`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v; want it to say %q", err, want)
	}
}
