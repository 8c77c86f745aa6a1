package credentials

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

var _ upstream.Credential = (*Source)(nil)

// Options configure New. Exactly one of PerPrincipal, TokenExchange and
// Forward is set.
type Options struct {
	// Route names the route in logs and errors.
	Route string
	// Name is the header or environment variable the credential goes in.
	Name string
	// Env says Name is an environment variable (a stdio upstream): it is
	// then taken as it is, not as a header name.
	Env bool

	PerPrincipal  *PerPrincipal
	TokenExchange *TokenExchange
	// Forward is the client header carried to Name.
	Forward string

	// Static, when set, is what a principal without a credential gets
	// (fallback: static). Nil: such a principal is refused.
	Static *string
}

// PerPrincipal reads secrets from File, a YAML mapping principal: secret.
type PerPrincipal struct {
	File string
	// Format is the value with {secret} standing for the secret; empty
	// means the secret alone.
	Format string
}

// Source is the credential of one route. Safe for concurrent use.
type Source struct {
	route  string
	name   string
	log    *slog.Logger
	static *string
	format format

	file     *secretsFile
	exchange *exchanger
	forward  string
}

// New builds a route's credential source. A secrets file is read now: one
// that cannot be read, is readable by others than its owner, is owned by
// another user or does not parse is an error. A nil logger discards.
func New(o Options, logger *slog.Logger) (*Source, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Source{route: o.Route, name: o.Name, log: logger.With("route", o.Route), static: o.Static}
	if !o.Env {
		s.name = http.CanonicalHeaderKey(o.Name)
	}
	n := 0
	switch {
	case o.PerPrincipal != nil:
		n++
		s.format = parseFormat(o.PerPrincipal.Format)
		f, err := openSecrets(o.PerPrincipal.File, s.log)
		if err != nil {
			return nil, fmt.Errorf("credentials: %w", err)
		}
		s.file = f
	}
	if o.TokenExchange != nil {
		n++
		f := o.TokenExchange.Format
		if f == "" {
			f = "Bearer {secret}"
		}
		s.format = parseFormat(f)
		x, err := newExchanger(*o.TokenExchange)
		if err != nil {
			return nil, fmt.Errorf("credentials: token_exchange: %w", err)
		}
		s.exchange = x
	}
	if o.Forward != "" {
		n++
		s.forward = http.CanonicalHeaderKey(o.Forward)
	}
	if n != 1 {
		return nil, errors.New("credentials: want exactly one of per_principal, token_exchange and forward")
	}
	if s.name == "" {
		return nil, errors.New("credentials: no header or variable to carry the credential")
	}
	return s, nil
}

// Name implements upstream.Credential.
func (s *Source) Name() string { return s.name }

// Value implements upstream.Credential: the credential of the principal
// of sess (or, without a session, of the ctx's Caller).
func (s *Source) Value(ctx context.Context, sess *core.SessionInfo) (string, error) {
	c := upstream.CallerOf(ctx)
	principal, tenant := "", ""
	switch {
	case sess != nil:
		principal, tenant = sess.Principal, sess.Tenant
	case c != nil:
		principal, tenant = c.Principal, c.Tenant
	}
	v, err := s.value(ctx, principal, tenant, c)
	if err == nil {
		return v, nil
	}
	var e *core.Error
	if s.static != nil && errors.As(err, &e) && e.Code == core.CodeNoCredential {
		return *s.static, nil
	}
	return "", err
}

func (s *Source) value(ctx context.Context, principal, tenant string, c *upstream.Caller) (string, error) {
	switch {
	case s.forward != "":
		// The request's own header, so a request whose caller is not known
		// (a stream the gateway reopens) has none to forward.
		if c != nil {
			if v := c.Header.Get(s.forward); v != "" && core.ValidHeaderValue(v) {
				return v, nil
			}
		}
		return "", s.missing("the request has no " + s.forward + " header for the gateway to forward as " + s.name + " (credentials.forward)")
	case anonymous(principal):
		return "", s.missing("this route's upstream needs a credential of your own, and the request is not authenticated")
	case s.file != nil:
		secret, ok := s.file.lookup(principal)
		if !ok {
			return "", s.missing("the gateway has no " + s.name + " credential for your principal (credentials.per_principal)")
		}
		return s.format.apply(secret), nil
	}
	tok, err := s.exchange.token(ctx, principal+"\x00"+tenant, c, s)
	if err != nil {
		return "", err
	}
	return s.format.apply(tok), nil
}

// missing is the refusal for a caller the route has no credential for.
func (s *Source) missing(why string) error {
	return core.NewError(core.CodeNoCredential, "no upstream credential: "+why+" on route "+quote(s.route)).
		WithStatus(http.StatusForbidden).Wrap(upstream.ErrCredential)
}

func anonymous(p string) bool { return p == "" || p == "anonymous" }

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }

// format is a value with one or more {secret} in it.
type format struct{ parts []string }

func parseFormat(f string) format {
	if f == "" {
		f = "{secret}"
	}
	return format{parts: strings.Split(f, "{secret}")}
}

func (f format) apply(secret string) string {
	return strings.Join(f.parts, secret)
}
