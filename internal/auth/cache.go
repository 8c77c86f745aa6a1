package auth

import (
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
)

// tokenCache keeps successful token validations by the token's SHA-256,
// until the token expires or the cache's TTL passes, whichever is first,
// so that the requests of one client cost a map look-up instead of a
// signature check. It holds at most max entries: a full cache first drops
// what has expired, then entries in no particular order (Go's map order),
// one per insertion, so it never stalls. Failures are not cached: a
// client that fixed its token is served at once.
type tokenCache struct {
	mu  sync.RWMutex
	m   map[[32]byte]*cached
	max int
	ttl time.Duration
	// sweep is when expired entries were last dropped.
	sweep time.Time
}

type cached struct {
	id    core.Identity
	until time.Time
}

func newTokenCache(max int, ttl time.Duration) *tokenCache {
	return &tokenCache{m: map[[32]byte]*cached{}, max: max, ttl: ttl}
}

// get returns the identity cached for the token hashing to sum, if it is
// still valid at now.
func (c *tokenCache) get(sum [32]byte, now time.Time) (*core.Identity, bool) {
	c.mu.RLock()
	e := c.m[sum]
	c.mu.RUnlock()
	if e == nil || !now.Before(e.until) {
		return nil, false
	}
	return &e.id, true
}

// put caches id until min(exp, now+ttl).
func (c *tokenCache) put(sum [32]byte, id core.Identity, exp, now time.Time) {
	if c.ttl < 0 {
		return
	}
	until := now.Add(c.ttl)
	if exp.Before(until) {
		until = exp
	}
	if !now.Before(until) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[sum]; !ok && len(c.m) >= c.max {
		if now.Sub(c.sweep) >= c.ttl {
			c.sweep = now
			for k, e := range c.m {
				if !now.Before(e.until) {
					delete(c.m, k)
				}
			}
		}
		for k := range c.m {
			if len(c.m) < c.max {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[sum] = &cached{id: id, until: until}
}

// len is the number of entries, for tests.
func (c *tokenCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
