package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/core"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// audience is the resource identifier of the test route.
const audience = "https://gw.example.com/mcp"

// signer is a signing key of the test issuer, published under kid.
type signer struct {
	kid    string
	method jwt.SigningMethod
	key    crypto.Signer
}

var (
	rsaMu   sync.Mutex
	rsaKeys = map[int]*rsa.PrivateKey{}
)

// rsaKey is the i-th RSA key of the package, made once when first asked
// for (making one takes a while).
func rsaKey(i int) *rsa.PrivateKey {
	rsaMu.Lock()
	defer rsaMu.Unlock()
	if k := rsaKeys[i]; k != nil {
		return k
	}
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	rsaKeys[i] = k
	return k
}

func rsaSigner(kid string, i int) *signer {
	return &signer{kid: kid, method: jwt.SigningMethodRS256, key: rsaKey(i)}
}

func ecSigner(t testing.TB, kid string) *signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &signer{kid: kid, method: jwt.SigningMethodES256, key: k}
}

func edSigner(t testing.TB, kid string) *signer {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &signer{kid: kid, method: jwt.SigningMethodEdDSA, key: k}
}

// token signs claims; the header names s.kid unless it is empty.
func (s *signer) token(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(s.method, claims)
	if s.kid != "" {
		tok.Header["kid"] = s.kid
	}
	out, err := tok.SignedString(s.key)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// jwk is the public JWK of s, as an issuer publishes it.
func (s *signer) jwk() map[string]any {
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	m := map[string]any{"kid": s.kid, "use": "sig", "alg": s.method.Alg()}
	switch k := s.key.Public().(type) {
	case *rsa.PublicKey:
		m["kty"], m["n"], m["e"] = "RSA", b64(k.N.Bytes()), b64(big.NewInt(int64(k.E)).Bytes())
	case *ecdsa.PublicKey:
		m["kty"], m["crv"] = "EC", "P-256"
		m["x"], m["y"] = b64(k.X.FillBytes(make([]byte, 32))), b64(k.Y.FillBytes(make([]byte, 32)))
	case ed25519.PublicKey:
		m["kty"], m["crv"], m["x"] = "OKP", "Ed25519", b64(k)
	}
	return m
}

// idp is a test authorization server: its JWKS over HTTP on loopback,
// whose keys the test changes, counting the fetches.
type idp struct {
	srv     *httptest.Server
	mu      sync.Mutex
	keys    []*signer
	fetches atomic.Int64
}

func newIDP(t testing.TB, keys ...*signer) *idp {
	p := &idp{keys: keys}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.fetches.Add(1)
		p.mu.Lock()
		set := make([]map[string]any, len(p.keys))
		for i, k := range p.keys {
			set[i] = k.jwk()
		}
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": set})
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *idp) issuer() string  { return p.srv.URL }
func (p *idp) jwksURL() string { return p.srv.URL + "/jwks" }

// publish replaces the published keys.
func (p *idp) publish(keys ...*signer) {
	p.mu.Lock()
	p.keys = keys
	p.mu.Unlock()
}

// claims are a valid token's claims for sub at now.
func (p *idp) claims(sub string, now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"iss": p.issuer(), "aud": []any{audience, "https://other.example.com"}, "sub": sub,
		"exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix(), "nbf": now.Add(-time.Second).Unix(),
		"scope": "mcp:tools mcp:read", "org_id": "acme", "groups": []any{"ops", "dev"},
	}
}

// oauthConfig is a valid configuration whose top-level auth validates
// tokens of p; mutate adjusts it before it is defaulted and validated.
func oauthConfig(t testing.TB, p *idp, mutate func(*config.Config)) *config.Config {
	t.Helper()
	cfg := &config.Config{
		Auth: &config.Auth{OAuth: &config.OAuth{
			Issuer: p.issuer(), JWKSURL: p.jwksURL(), Audience: audience,
			TenantClaim: "org_id", GroupsClaim: "groups", RequiredScopes: []string{"mcp:tools"},
		}},
		Routes: []config.Route{{Name: "mcp", Path: "/mcp", Upstream: config.Upstream{HTTP: &config.HTTPUpstream{URL: "http://127.0.0.1:9/"}}}},
	}
	if mutate != nil {
		mutate(cfg)
	}
	return validated(t, cfg)
}

func validated(t testing.TB, cfg *config.Config) *config.Config {
	t.Helper()
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// build is New with the test's clock, closed at the end of the test.
func build(t testing.TB, cfg *config.Config, opts Options) *Authenticator {
	t.Helper()
	a, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	if a == nil {
		t.Fatal("New returned no authenticator for a configuration with credentials")
	}
	t.Cleanup(a.Close)
	return a
}

// request is a POST to path with the given headers (Authorization may
// repeat: give it twice).
func request(path string, hdr ...string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	return r
}

func bearer(token string) []string { return []string{"Authorization", "Bearer " + token} }

// refusal is what a refusal says, for comparison.
type refusal struct {
	Status    int
	Code      int
	Challenge string
}

func refusalOf(e *core.Error) refusal {
	if e == nil {
		return refusal{}
	}
	return refusal{Status: e.HTTPStatus(), Code: e.Code, Challenge: e.Header.Get("WWW-Authenticate")}
}
