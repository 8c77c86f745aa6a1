package core

import (
	"context"
	"log/slog"
	"slices"
)

// Anonymous is the principal of a caller that presented no credentials.
const Anonymous = "anonymous"

// IsAnonymous reports whether principal stands for no authenticated
// caller ("" is the principal of records written before identities were
// kept).
func IsAnonymous(principal string) bool { return principal == "" || principal == Anonymous }

// Identity is who a request comes from, as the authentication step
// established it from the request's credentials. It is decided on every
// request, before any session is looked up or admitted: a session id or
// key is a handle, never a credential, so a session serves only the
// identity that created it (its principal and tenant).
//
// An Identity is shared once made (the authentication step may cache
// it): readers must not modify Groups, Claims or Scopes.
type Identity struct {
	// Principal is the caller's stable id (Anonymous without credentials).
	// Sessions, caps and rate limits are held by it. For an OAuth access
	// token it is the issuer and the subject ("https://idp#alice"), so a
	// refreshed token of the same subject is the same principal.
	Principal string
	// Tenant groups principals for quotas; empty when not configured.
	Tenant string
	// Groups are the principal's group memberships, for policies.
	Groups []string
	// Claims are the credential's claims (JSON values), for policies.
	Claims map[string]any
	// Scopes are the scopes the credential grants (an access token's
	// scope or scp claim; an API key's configured scopes), for the
	// per-message authorisation of the auth stage. They belong to this
	// request's credential, not to the session: a client that obtained a
	// token with more scopes is served with them in the same session.
	Scopes []string
	// Token is the validated bearer token the request presented ("" for
	// none, and for API keys), for a later exchange of it for an upstream
	// credential. It is never logged (LogValue, String), never encoded
	// (json:"-") and never part of a session's record.
	Token string `json:"-"`
}

// IsAnonymous reports whether the identity stands for no authenticated
// caller.
func (id Identity) IsAnonymous() bool { return IsAnonymous(id.Principal) }

// HasScope reports whether the credential grants scope.
func (id Identity) HasScope(scope string) bool { return slices.Contains(id.Scopes, scope) }

// LogValue logs the identity without its token, and the principal and
// tenant as fingerprints (they may be personal data).
func (id Identity) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("principal", Fingerprint(id.Principal)),
		slog.String("tenant", Fingerprint(id.Tenant)),
		slog.Bool("token", id.Token != ""),
	)
}

// String keeps the token out of fmt's output.
func (id Identity) String() string {
	s := "principal=" + id.Principal
	if id.Tenant != "" {
		s += " tenant=" + id.Tenant
	}
	if id.Token != "" {
		s += " token=REDACTED"
	}
	return s
}

// GoString keeps the token out of %#v.
func (id Identity) GoString() string { return "core.Identity{" + id.String() + "}" }

// CallerKey is the context key under which the identity of the request a
// client message came in on travels through the chain (a *Identity). Use
// WithCaller and CallerOf; the key is exported so that a context type of
// the frontend's, which carries more than the caller in one allocation,
// can answer it too.
type CallerKey struct{}

// WithCaller returns ctx carrying the caller's identity.
func WithCaller(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, CallerKey{}, id)
}

// CallerOf is the identity of the request the message handled under ctx
// came in on: the caller of a client message, nil for what the gateway or
// the server sends.
func CallerOf(ctx context.Context) *Identity {
	id, _ := ctx.Value(CallerKey{}).(*Identity)
	return id
}
