package auth

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/core"
)

// Algorithms are the JWS algorithms an access token may be signed with:
// asymmetric ones only. "none" and the HMAC family are never accepted: a
// resource server holds only the issuer's public keys, and an HMAC check
// keyed with a public key would let anyone who has it sign tokens.
var Algorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"}

// Leeway is the clock skew allowed on exp, nbf and iat.
const Leeway = 30 * time.Second

// jwksTimeout bounds one fetch of a JWKS.
const jwksTimeout = 10 * time.Second

// Errors a token fails with (wrapped in the refusal's cause).
var (
	errKidRequired = errors.New("the token names no key (kid) and the issuer's key set has several")
	errUnknownKid  = errors.New("the token's key (kid) is not in the issuer's key set")
	errNoKeys      = errors.New("the issuer's key set could not be fetched or is empty")
)

// jwks is one issuer's key set, fetched from its URL when the first token
// needs it (or Warm), refreshed every RefreshInterval, and fetched again
// when a token names a key it does not hold — at most once per
// UnknownKIDInterval, so tokens with made-up kids cannot make the gateway
// hammer the issuer.
type jwks struct {
	url  string
	opts *Options
	log  *slog.Logger

	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
	// inner holds the keys (fetched, refreshed on its interval); client is
	// inner behind jwkset's client, whose KeyRead fetches again for an
	// unknown kid under lim; kf reads keys from client for jwt.
	inner  jwkset.Storage
	client jwkset.Storage
	kf     keyfunc.Keyfunc
	lim    *rate.Limiter
	err    error
}

func newJWKS(url string, opts *Options, log *slog.Logger) *jwks {
	ctx, cancel := context.WithCancel(context.Background())
	return &jwks{url: url, opts: opts, log: log, ctx: ctx, cancel: cancel,
		lim: rate.NewLimiter(rate.Every(opts.UnknownKIDInterval), 1)}
}

// start fetches the key set the first time it is needed.
func (k *jwks) start() error {
	k.once.Do(func() {
		onErr := func(ctx context.Context, err error) {
			k.log.Warn("jwks_fetch_failed", "jwks_url", k.url, "error", err)
		}
		k.inner, k.err = jwkset.NewStorageFromHTTP(k.url, jwkset.HTTPClientStorageOptions{
			Client: k.opts.HTTPClient, Ctx: k.ctx, HTTPTimeout: jwksTimeout,
			NoErrorReturnFirstHTTPReq: true, RefreshErrorHandler: onErr, RefreshInterval: k.opts.RefreshInterval,
		})
		if k.err != nil {
			return
		}
		k.client, k.err = jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
			HTTPURLs: map[string]jwkset.Storage{k.url: k.inner}, RateLimitWaitMax: jwksTimeout, RefreshUnknownKID: k.lim,
		})
		if k.err != nil {
			return
		}
		k.kf, k.err = keyfunc.New(keyfunc.Options{Ctx: k.ctx, Storage: k.client, UseWhitelist: []jwkset.USE{jwkset.UseSig, ""}})
	})
	return k.err
}

func (k *jwks) close() { k.cancel() }

// refreshAllowed reports whether a fetch for an unknown key may run now.
func (k *jwks) refreshAllowed() bool { return k.lim.Tokens() >= 1 }

// keyFor is the jwt.Keyfunc of tokens validated under ctx.
func (k *jwks) keyFor(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		if err := k.start(); err != nil {
			return nil, err
		}
		kidv, named := t.Header["kid"]
		if !named {
			keys, err := k.inner.KeyReadAll(ctx)
			if err == nil && len(keys) == 0 && k.refreshAllowed() {
				// Fetch again (the first fetch may have failed): jwkset
				// refreshes on a key it does not hold, and no key has
				// an empty id.
				_, _ = k.client.KeyRead(ctx, "")
				keys, err = k.inner.KeyReadAll(ctx)
			}
			switch {
			case err != nil || len(keys) == 0:
				return nil, errNoKeys
			case len(keys) > 1:
				return nil, errKidRequired
			}
			return k.kf.KeyfuncCtx(ctx)(t)
		}
		kid, ok := kidv.(string)
		if !ok || kid == "" {
			return nil, errUnknownKid
		}
		if _, err := k.inner.KeyRead(ctx, kid); errors.Is(err, jwkset.ErrKeyNotFound) && !k.refreshAllowed() {
			return nil, errUnknownKid
		}
		key, err := k.kf.KeyfuncCtx(ctx)(t)
		if errors.Is(err, jwkset.ErrKeyNotFound) {
			return nil, errUnknownKid
		}
		return key, err
	}
}

// verifier validates the access tokens of one oauth block.
type verifier struct {
	cfg    config.OAuth
	parser *jwt.Parser
	keys   *jwks
	cache  *tokenCache
	now    func() time.Time
}

func newVerifier(cfg *config.OAuth, keys *jwks, opts *Options) *verifier {
	return &verifier{
		cfg: *cfg, keys: keys, now: opts.Now,
		cache: newTokenCache(opts.CacheSize, opts.CacheTTL),
		parser: jwt.NewParser(
			jwt.WithValidMethods(Algorithms),
			jwt.WithIssuer(cfg.Issuer),
			jwt.WithAudience(cfg.Audience),
			jwt.WithLeeway(Leeway),
			jwt.WithIssuedAt(),
			jwt.WithExpirationRequired(),
			jwt.WithTimeFunc(opts.Now),
		),
	}
}

// verify validates token (whose SHA-256 is sum) and returns its identity.
func (v *verifier) verify(ctx context.Context, token string, sum [32]byte, c *challenge) (core.Identity, *core.Error) {
	now := v.now()
	if id, ok := v.cache.get(sum, now); ok {
		return *id, nil
	}
	claims := jwt.MapClaims{}
	ctx, cancel := context.WithTimeout(ctx, jwksTimeout)
	defer cancel()
	if _, err := v.parser.ParseWithClaims(token, claims, v.keys.keyFor(ctx)); err != nil {
		return core.Identity{}, c.invalid(describe(err), err)
	}
	id, desc := v.identity(claims)
	if desc != "" {
		return core.Identity{}, c.invalid(desc, nil)
	}
	var missing []string
	for _, s := range v.cfg.RequiredScopes {
		if !id.HasScope(s) {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		return core.Identity{}, c.insufficient(false, v.cfg.RequiredScopes, "the token lacks the scope(s) this endpoint requires: "+strings.Join(missing, " "))
	}
	id.Token = token
	exp, _ := claims.GetExpirationTime() // required: the parser checked it
	if exp != nil {
		v.cache.put(sum, id, exp.Time, now)
	}
	return id, nil
}

// identity reads the identity of a validated token's claims; desc says
// why there is none.
func (v *verifier) identity(claims jwt.MapClaims) (core.Identity, string) {
	sub, _ := claims[v.cfg.PrincipalClaim].(string)
	if sub == "" {
		return core.Identity{}, "the token has no " + v.cfg.PrincipalClaim + " claim naming its subject"
	}
	id := core.Identity{Principal: v.cfg.Issuer + "#" + sub, Claims: map[string]any(claims)}
	if tc := v.cfg.TenantClaim; tc != "" {
		switch t := claims[tc].(type) {
		case nil:
		case string:
			id.Tenant = t
		default:
			return core.Identity{}, "the token's " + tc + " claim is not a string"
		}
	}
	if gc := v.cfg.GroupsClaim; gc != "" {
		id.Groups = stringList(claims[gc], false)
	}
	id.Scopes = append(stringList(claims["scope"], true), stringList(claims["scp"], true)...)
	return id, ""
}

// stringList reads a claim that holds a list of strings, or one string
// (split at spaces when fields). Other values are left out.
func stringList(v any, fields bool) []string {
	switch v := v.(type) {
	case string:
		if fields {
			return strings.Fields(v)
		}
		if v == "" {
			return nil
		}
		return []string{v}
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := e.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// describe says why a token was refused, for error_description: what the
// client can act on, nothing about the gateway's keys.
func describe(err error) string {
	switch {
	case errors.Is(err, errKidRequired):
		return "the token names no signing key (kid) and the issuer has several"
	case errors.Is(err, errUnknownKid):
		return "the token is signed with a key the issuer does not publish"
	case errors.Is(err, errNoKeys):
		return "the issuer's signing keys are unavailable; retry later"
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "the token is malformed"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "the token's signature is invalid or its algorithm is not accepted"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "the token has expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "the token is not valid yet"
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "the token was issued in the future"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "the token was not issued by this endpoint's authorization server"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "the token was not issued for this resource (aud)"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "the token lacks a required claim (exp and aud are required)"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "the token cannot be verified (unknown algorithm or key)"
	}
	return "the token is invalid"
}

// defaultHTTPClient fetches key sets: bounded, proxies from the
// environment.
func defaultHTTPClient() *http.Client {
	return &http.Client{Timeout: jwksTimeout, Transport: http.DefaultTransport.(*http.Transport).Clone()}
}
