package config

// Values of routes[].upstream.share.
const (
	ShareSession   = "session"
	SharePrincipal = "principal"
	ShareTenant    = "tenant"
	ShareRoute     = "route"
)

// DefaultMaxShared is routes[].upstream.max_shared when left out.
const DefaultMaxShared = 32

// MaxMaxShared bounds routes[].upstream.max_shared: one upstream's
// traffic is one pipe (stdio) or one upstream session.
const MaxMaxShared = 10000

// Shared reports whether the route's client sessions share upstreams.
func (u Upstream) Shared() bool { return u.Share != "" && u.Share != ShareSession }

func (u *Upstream) setShareDefaults() {
	if u.Share == "" {
		u.Share = ShareSession
	}
	if u.Shared() && u.MaxShared == 0 {
		u.MaxShared = DefaultMaxShared
	}
}

// checkShare validates a route's share and max_shared; path is the
// route's upstream ("routes[0].upstream").
func checkShare(path string, u Upstream, bad func(path, format string, args ...any)) {
	switch u.Share {
	case ShareSession, SharePrincipal, ShareTenant, ShareRoute:
	default:
		bad(path+".share", "want session, principal, tenant or route, got %q", u.Share)
		return
	}
	if !u.Shared() {
		if u.MaxShared != 0 {
			bad(path+".max_shared", "only with share principal, tenant or route (share is session)")
		}
		return
	}
	if u.MaxShared < 1 || u.MaxShared > MaxMaxShared {
		bad(path+".max_shared", "want 1 to %d client sessions per shared upstream, got %d", MaxMaxShared, u.MaxShared)
	}
	if u.Credentials != nil && u.Share != SharePrincipal {
		bad(path+".share", "%s would give several principals one upstream, and credentials are per principal (use share: principal)", u.Share)
	}
}
