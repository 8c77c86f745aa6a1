package auth

import (
	"crypto/sha256"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unsafe"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/pipeline"
)

// Options are what the configuration does not say. Zero values are the
// defaults.
type Options struct {
	// Logger. If nil, a discard logger is used.
	Logger *slog.Logger
	// HTTPClient fetches the issuers' key sets. If nil, a client with a
	// 10 s timeout and the environment's proxy settings.
	HTTPClient *http.Client
	// RefreshInterval is how often a key set is fetched again. If zero, 1h.
	RefreshInterval time.Duration
	// UnknownKIDInterval is the least time between two fetches of a key
	// set that tokens naming a key it does not hold trigger. If zero, 30s.
	UnknownKIDInterval time.Duration
	// CacheSize bounds the token validations kept per oauth block. If
	// zero, 10000.
	CacheSize int
	// CacheTTL bounds how long a validation is kept (never past the
	// token's exp). If zero, 1 minute; negative: nothing is kept.
	CacheTTL time.Duration
	// Now is the clock. If nil, time.Now.
	Now func() time.Time

	ownClient bool // HTTPClient is the default one, closed with the Authenticator
}

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.HTTPClient == nil {
		o.HTTPClient = defaultHTTPClient()
		o.ownClient = true
	}
	if o.RefreshInterval == 0 {
		o.RefreshInterval = time.Hour
	}
	if o.UnknownKIDInterval == 0 {
		o.UnknownKIDInterval = 30 * time.Second
	}
	if o.CacheSize == 0 {
		o.CacheSize = 10000
	}
	if o.CacheTTL == 0 {
		o.CacheTTL = time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Authenticator establishes the identity of every request from the
// configuration's auth blocks: the block of the route the request's path
// names (routes[].auth, else the top level's), the top level's for any
// other path. It is safe for concurrent use; it is immutable once built
// (a reload builds a new one).
type Authenticator struct {
	byPath  map[string]*scheme // route path
	byRoute map[string]*scheme // route name
	def     *scheme            // paths that are no route
	meta    map[string][]byte  // Protected Resource Metadata by path
	keySets []*jwks
	opts    Options
}

// scheme is one route's authentication: the credentials its auth block
// configures, and the challenge its refusals carry.
type scheme struct {
	anonymous bool
	// credentials: api keys or oauth configured; without, the request's
	// Authorization is not read at all (anonymous only).
	credentials bool
	keys        keyTable
	oauth       *verifier
	rules       scopeRules
	challenge   *challenge
}

// Configured reports whether cfg configures credentials anywhere (API
// keys or OAuth). Without, New returns nil: every request is anonymous
// and nothing runs for it.
func Configured(cfg *config.Config) bool {
	if cfg.Auth.Credentials() {
		return true
	}
	for i := range cfg.Routes {
		if cfg.Routes[i].Auth.Credentials() {
			return true
		}
	}
	return false
}

// New builds the authenticator of a validated configuration; nil (and no
// error) when it configures no credentials (Configured). Key sets are
// fetched when the first token needs them, or Warm.
func New(cfg *config.Config, opts Options) (*Authenticator, error) {
	if !Configured(cfg) {
		return nil, nil
	}
	opts.setDefaults()
	a := &Authenticator{byPath: map[string]*scheme{}, byRoute: map[string]*scheme{}, meta: map[string][]byte{}, opts: opts}
	sets := map[string]*jwks{}
	verifiers := map[*config.OAuth]*verifier{}
	base := func(b *config.Auth) *scheme {
		s := &scheme{anonymous: true}
		if b == nil {
			return s
		}
		s.anonymous, s.credentials = b.Anonymous, b.Credentials()
		s.keys = newKeyTable(b.APIKeys)
		s.rules = newScopeRules(b.Scopes)
		if o := b.OAuth; o != nil {
			v := verifiers[o]
			if v == nil {
				ks := sets[o.JWKSURL]
				if ks == nil {
					ks = newJWKS(o.JWKSURL, &a.opts, a.opts.Logger)
					sets[o.JWKSURL] = ks
					a.keySets = append(a.keySets, ks)
				}
				v = newVerifier(o, ks, &a.opts)
				verifiers[o] = v
			}
			s.oauth = v
		}
		return s
	}
	// with is s as served at path: its challenge names the metadata of
	// that path.
	with := func(s scheme, b *config.Auth, path string) *scheme {
		s.challenge = &challenge{}
		if b != nil && b.OAuth != nil {
			s.challenge.metadataURL = metadataURL(b.OAuth.Audience, path)
			s.challenge.scopes = b.OAuth.RequiredScopes
		}
		return &s
	}
	top := base(cfg.Auth)
	a.def = with(*top, cfg.Auth, "")
	if cfg.Auth != nil && cfg.Auth.OAuth != nil {
		a.meta[config.WellKnownResource] = metadataDoc(cfg.Auth)
	}
	for i, rc := range cfg.Routes {
		b := cfg.RouteAuth(i)
		s := top
		if rc.Auth != nil {
			s = base(rc.Auth)
		}
		rs := with(*s, b, rc.Path)
		a.byPath[rc.Path], a.byRoute[rc.Name] = rs, rs
		if b != nil && b.OAuth != nil {
			a.meta[config.WellKnownResource+rc.Path] = metadataDoc(b)
		}
	}
	// The metadata is also where RFC 9728 puts it for the resource
	// identifier itself, when that path is not a route's.
	for i := range cfg.Routes {
		if b := cfg.RouteAuth(i); b != nil && b.OAuth != nil {
			if u, err := url.Parse(b.OAuth.Audience); err == nil {
				p := config.WellKnownResource + strings.TrimSuffix(u.Path, "/")
				if _, taken := a.meta[p]; !taken {
					a.meta[p] = metadataDoc(b)
				}
			}
		}
	}
	return a, nil
}

// Warm fetches every key set now, rather than when the first token needs
// it; it returns when they are fetched (or failed, which is logged and
// retried when a token needs them).
func (a *Authenticator) Warm() {
	if a == nil {
		return
	}
	for _, k := range a.keySets {
		_ = k.start()
	}
}

// Close stops refreshing the key sets.
func (a *Authenticator) Close() {
	if a == nil {
		return
	}
	for _, k := range a.keySets {
		k.close()
	}
	if a.opts.ownClient {
		a.opts.HTTPClient.CloseIdleConnections()
	}
}

// Authenticate establishes the identity of r; it is the gateway's
// frontend.Authenticator. A request without credentials is anonymous
// where its route admits anonymous callers, else refused 401 with the
// route's challenge; credentials that are presented must be valid, or the
// request is refused (401 invalid_token, 400 invalid_request), never
// taken as anonymous.
func (a *Authenticator) Authenticate(r *http.Request) (core.Identity, *core.Error) {
	s := a.byPath[r.URL.Path]
	if s == nil {
		s = a.def
	}
	return s.authenticate(r)
}

func (s *scheme) authenticate(r *http.Request) (core.Identity, *core.Error) {
	if !s.credentials {
		return core.Identity{Principal: core.Anonymous}, nil
	}
	if q := r.URL.RawQuery; q != "" && strings.Contains(q, "access_token") {
		if _, in := r.URL.Query()["access_token"]; in {
			return core.Identity{}, s.challenge.malformedRequest("access tokens in the URL query are refused (they end up in logs and histories): send Authorization: Bearer <token>")
		}
	}
	values := r.Header["Authorization"]
	if len(values) == 0 {
		if s.anonymous {
			return core.Identity{Principal: core.Anonymous}, nil
		}
		return core.Identity{}, s.challenge.missing()
	}
	token, err := ParseAuthorization(values)
	switch err {
	case nil:
	case ErrMultipleAuthorization:
		return core.Identity{}, s.challenge.malformedRequest("send exactly one Authorization header")
	case ErrNotBearer:
		return core.Identity{}, s.challenge.notBearer()
	default:
		return core.Identity{}, s.challenge.invalid("the bearer token is malformed (want Authorization: Bearer <token>)", err)
	}
	sum := hashToken(token)
	if id, ok := s.keys.lookup(sum); ok {
		return *id, nil
	}
	if s.oauth != nil && looksLikeJWT(token) {
		return s.oauth.verify(r.Context(), token, sum, s.challenge)
	}
	if s.oauth != nil {
		return core.Identity{}, s.challenge.invalid("the bearer token is neither a known API key nor a JWT access token", nil)
	}
	return core.Identity{}, s.challenge.invalid("unknown API key", nil)
}

// hashToken is the SHA-256 of a token, without copying it (a JWT is
// kilobytes, hashed on every request): the bytes are only read.
func hashToken(token string) [32]byte {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
}

// Stage is the route's auth pipeline stage: the per-message scopes of its
// auth.scopes. A route without scope rules gets an empty stage, which the
// chain leaves out.
func (a *Authenticator) Stage(route string) pipeline.Stage {
	st := pipeline.Stage{Name: "auth"}
	if a == nil {
		return st
	}
	if s := a.byRoute[route]; s != nil && len(s.rules) > 0 {
		st.ClientToServer = s.authorize
	}
	return st
}

// metadataURL is the Protected Resource Metadata URL of a route at path
// whose resource identifier is audience: the well-known path on the
// audience's origin, followed by the route's path (RFC 9728 section 3.1).
func metadataURL(audience, path string) string {
	u, err := url.Parse(audience)
	if err != nil {
		return ""
	}
	return u.Scheme + "://" + u.Host + config.WellKnownResource + path
}

// ensure Authenticate has the shape of frontend.Authenticator.
var _ func(*http.Request) (core.Identity, *core.Error) = (*Authenticator)(nil).Authenticate
