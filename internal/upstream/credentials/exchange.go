package credentials

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// RFC 8693 names.
const (
	GrantTokenExchange     = "urn:ietf:params:oauth:grant-type:token-exchange"
	TokenTypeAccessToken   = "urn:ietf:params:oauth:token-type:access_token"
	tokenTypeJWT           = "urn:ietf:params:oauth:token-type:jwt"
	exchangeTimeout        = 10 * time.Second
	defaultMargin          = 30 * time.Second
	defaultLifetime        = time.Minute
	maxTokenResponse       = 1 << 20
	maxCachedPrincipals    = 4096
	maxErrorCodeCharacters = 64
)

// TokenExchange configures OAuth 2.0 Token Exchange (RFC 8693): the
// caller's validated token (upstream.Caller.Token) is the subject token,
// the gateway authenticates with HTTP Basic, and the issued token is
// cached per principal until Margin before it expires.
type TokenExchange struct {
	TokenURL     string
	ClientID     string
	ClientSecret string
	// Audience and Scope are sent when not empty.
	Audience, Scope string
	// Format is the value with {secret} standing for the issued token;
	// empty means "Bearer {secret}".
	Format string
	// Margin is how long before its expiry an issued token is exchanged
	// again. Zero: 30s, and at most a quarter of the token's lifetime.
	Margin time.Duration
	// Client sends the requests to the token service. Nil: a client of
	// its own (10s timeout, no redirects).
	Client *http.Client
}

type exchanger struct {
	cfg    TokenExchange
	url    string
	client *http.Client

	mu    sync.Mutex
	cache map[string]*issued // by principal and tenant
}

// issued is a principal's token, or the exchange that is getting it.
type issued struct {
	token  string
	until  time.Time     // use it until then
	flight chan struct{} // closed when the exchange under way ends; nil when none
	err    error         // the result of the flight, for its waiters
}

func newExchanger(c TokenExchange) (*exchanger, error) {
	u, err := url.Parse(c.TokenURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("token_url: want an http or https URL")
	}
	client := c.Client
	if client == nil {
		client = &http.Client{
			Timeout:       exchangeTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return &exchanger{cfg: c, url: u.String(), client: client, cache: map[string]*issued{}}, nil
}

// token returns the principal's issued token: the cached one while it is
// fresh, else the result of one exchange per principal at a time, which
// concurrent callers for the same principal wait for.
func (x *exchanger) token(ctx context.Context, key string, c *upstream.Caller, s *Source) (string, error) {
	for {
		x.mu.Lock()
		e := x.cache[key]
		if e != nil && e.flight == nil && e.token != "" && time.Now().Before(e.until) {
			tok := e.token
			x.mu.Unlock()
			return tok, nil
		}
		if e != nil && e.flight != nil {
			fl := e.flight
			x.mu.Unlock()
			select {
			case <-fl:
			case <-ctx.Done():
				return "", ctx.Err()
			}
			x.mu.Lock()
			tok, err := e.token, e.err
			x.mu.Unlock()
			if err == nil && tok != "" {
				return tok, nil
			}
			if err != nil {
				return "", err
			}
			continue
		}
		// Only the caller's own token, for its own principal, is ever
		// exchanged for the principal's cache.
		principal := key[:indexNUL(key)]
		if c == nil || c.Token == "" || c.Principal != principal {
			x.mu.Unlock()
			return "", s.missing("the gateway needs your bearer token to exchange for the upstream's (credentials.token_exchange), and this request carries none")
		}
		e = &issued{flight: make(chan struct{})}
		x.cache[key] = e
		x.pruneLocked()
		fl := e.flight
		x.mu.Unlock()

		// The exchange serves every waiting caller of the principal: one
		// client giving up does not cancel it.
		xctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), exchangeTimeout)
		tok, life, err := x.exchange(xctx, c.Token, s)
		cancel()
		x.mu.Lock()
		e.flight, e.err = nil, err
		if err == nil {
			e.token, e.until = tok, time.Now().Add(life-x.margin(life))
		} else {
			delete(x.cache, key) // the next caller tries again
		}
		x.mu.Unlock()
		close(fl)
		return tok, err
	}
}

func indexNUL(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return i
		}
	}
	return len(s)
}

func (x *exchanger) margin(life time.Duration) time.Duration {
	m := x.cfg.Margin
	if m <= 0 {
		m = defaultMargin
	}
	return min(m, life/4)
}

// pruneLocked drops expired tokens once the cache is large.
func (x *exchanger) pruneLocked() {
	if len(x.cache) <= maxCachedPrincipals {
		return
	}
	now := time.Now()
	for k, e := range x.cache {
		if e.flight == nil && !now.Before(e.until) {
			delete(x.cache, k)
		}
	}
}

// tokenResponse is the token service's answer (RFC 8693 section 2.2).
type tokenResponse struct {
	AccessToken     string          `json:"access_token"`
	IssuedTokenType string          `json:"issued_token_type"`
	TokenType       string          `json:"token_type"`
	ExpiresIn       json.RawMessage `json:"expires_in"`
	Error           string          `json:"error"`
}

// exchange runs one token exchange.
func (x *exchanger) exchange(ctx context.Context, subject string, s *Source) (string, time.Duration, error) {
	form := url.Values{
		"grant_type":           {GrantTokenExchange},
		"subject_token":        {subject},
		"subject_token_type":   {TokenTypeAccessToken},
		"requested_token_type": {TokenTypeAccessToken},
	}
	if x.cfg.Audience != "" {
		form.Set("audience", x.cfg.Audience)
	}
	if x.cfg.Scope != "" {
		form.Set("scope", x.cfg.Scope)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, x.url, bytes.NewBufferString(form.Encode()))
	if err != nil {
		return "", 0, s.failed("could not build the request", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	// RFC 6749 section 2.3.1: both form-encoded before Basic.
	req.SetBasicAuth(url.QueryEscape(x.cfg.ClientID), url.QueryEscape(x.cfg.ClientSecret))
	resp, err := x.client.Do(req)
	if err != nil {
		return "", 0, s.failed("the token service could not be reached", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponse))
	if err != nil {
		return "", 0, s.failed("the token service's answer could not be read", err)
	}
	var tr tokenResponse
	_ = json.Unmarshal(body, &tr)
	if resp.StatusCode != http.StatusOK {
		code := errorCode(tr.Error)
		if code == "invalid_grant" {
			// The subject token itself was refused: the caller's.
			return "", 0, core.NewError(core.CodeNoCredential, "no upstream credential: the token service refused to exchange your token (invalid_grant) on route "+quote(s.route)).
				WithStatus(http.StatusForbidden).Wrap(fmt.Errorf("%w: token exchange: HTTP %d invalid_grant", upstream.ErrCredential, resp.StatusCode))
		}
		why := "HTTP " + strconv.Itoa(resp.StatusCode)
		if code != "" {
			why += " " + code
		}
		return "", 0, s.failed("the token service answered "+why, nil)
	}
	switch tr.IssuedTokenType {
	case "", TokenTypeAccessToken, tokenTypeJWT:
	default:
		return "", 0, s.failed("the token service issued a token of another type ("+errorCode(tr.IssuedTokenType)+")", nil)
	}
	if tr.AccessToken == "" || !core.ValidHeaderValue(tr.AccessToken) {
		return "", 0, s.failed("the token service's answer holds no usable access_token", nil)
	}
	return tr.AccessToken, lifetime(tr.ExpiresIn), nil
}

// lifetime reads expires_in (seconds, a number or a string of one); a
// token without one is kept for a minute.
func lifetime(raw json.RawMessage) time.Duration {
	var n json.Number
	if len(raw) == 0 || json.Unmarshal(raw, &n) != nil {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return defaultLifetime
		}
		n = json.Number(s)
	}
	secs, err := n.Float64()
	if err != nil || secs <= 0 {
		return defaultLifetime
	}
	if secs > 366*24*3600 {
		secs = 366 * 24 * 3600
	}
	return time.Duration(secs * float64(time.Second))
}

// errorCode keeps an OAuth error code printable and short: it ends up in
// an answer and a log line.
func errorCode(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s) && len(b) < maxErrorCodeCharacters; i++ {
		c := s[i]
		if c == '_' || c == '-' || c == ':' || c == '.' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			b = append(b, c)
		}
	}
	return string(b)
}

// failed is a token exchange that failed on the token service's side or
// the gateway's: 502, like an upstream failure.
func (s *Source) failed(why string, cause error) error {
	err := fmt.Errorf("%w: token exchange: %s", upstream.ErrCredential, why)
	if cause != nil {
		err = fmt.Errorf("%w: %v", err, cause)
	}
	s.log.Warn("credentials_exchange_failed", "reason", why, "error", cause)
	return core.NewError(core.CodeUpstreamError, "upstream credential unavailable: token exchange failed: "+why+" (route "+quote(s.route)+")").
		WithStatus(http.StatusBadGateway).Wrap(err)
}
