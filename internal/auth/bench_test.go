package auth

import (
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
)

// BenchmarkAuthenticate measures one request's authentication: an API key
// (hash and look-up), a JWT served from the validation cache, and a JWT
// checked in full each time (RS256 signature, claims).
func BenchmarkAuthenticate(b *testing.B) {
	key, _ := NewKey()
	k1 := rsaSigner("k1", 0)
	p := newIDP(b, k1)
	withKey := func(c *config.Config) {
		c.Auth.APIKeys = []config.APIKey{{KeySHA256: HashKey(key), Principal: "ci-bot"}}
	}
	claims := p.claims("alice", time.Now())
	claims["exp"] = time.Now().Add(time.Hour).Unix()
	token := k1.token(b, claims)
	for _, bc := range []struct {
		name  string
		token string
		ttl   time.Duration
	}{
		{"api_key", key, 0},
		{"jwt_cached", token, 0},
		{"jwt_uncached", token, -1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			a := build(b, oauthConfig(b, p, withKey), Options{CacheTTL: bc.ttl})
			r := request("/mcp", bearer(bc.token)...)
			if _, e := a.Authenticate(r); e != nil {
				b.Fatal(e)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, e := a.Authenticate(r); e != nil {
					b.Fatal(e)
				}
			}
		})
	}
}
