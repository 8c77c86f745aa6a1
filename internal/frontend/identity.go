package frontend

import (
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/pipeline"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/store"
)

// Identity is who a request comes from, as the authentication step
// (Options.Authenticate) established it from the request's credentials
// (see core.Identity).
type Identity = core.Identity

// AnonymousIdentity is the identity of a request without credentials,
// what the default authentication step returns for every request.
func AnonymousIdentity() Identity { return Identity{Principal: session.Anonymous} }

// anonymous is the identity of a request that carries none in its
// context: shared, never modified.
var anonymous = AnonymousIdentity()

// Authenticator establishes the identity of a request. It returns an
// error to refuse the request: the error's HTTP status is the answer's
// (401 when it has none), and its Header goes with it (a
// WWW-Authenticate challenge, typically). It runs on every request, so it
// must be cheap or cache what is not.
type Authenticator func(*http.Request) (Identity, *core.Error)

// authenticate runs the authentication step of r. Without an
// Authenticator every request is anonymous, and so is a request the
// Authenticator found anonymous: nothing is allocated for it (callerOf
// returns the anonymous identity for a context that has none).
func (f *Frontend) authenticate(r *http.Request) (*http.Request, *core.Error) {
	if f.opts.Authenticate == nil {
		return r, nil
	}
	id, e := f.opts.Authenticate(r)
	if e != nil {
		if e.Status == 0 {
			c := *e // the Authenticator's error may be shared: not ours to change
			c.Status = http.StatusUnauthorized
			e = &c
		}
		return r, e
	}
	if id.Principal == "" {
		id.Principal = session.Anonymous
	}
	if id.Principal == session.Anonymous && id.Tenant == "" && id.Groups == nil && id.Claims == nil && id.Scopes == nil && id.Token == "" {
		return r, nil
	}
	return r.WithContext(core.WithCaller(r.Context(), &id)), nil
}

// callerOf is the identity the authentication step gave r; shared, not
// to be modified.
func callerOf(r *http.Request) *Identity {
	if id := core.CallerOf(r.Context()); id != nil {
		return id
	}
	return &anonymous
}

// identityOf is the identity the authentication step gave r.
func identityOf(r *http.Request) Identity { return *callerOf(r) }

// sessionInfoOf is a new session's info for identity id. Groups and
// Claims are copied: the session keeps them for its lifetime, whatever
// the Authenticator does with its own values afterwards. Neither the
// token nor the scopes of the request that created the session are kept:
// they belong to each request's credential.
func sessionInfoOf(id Identity) core.SessionInfo {
	return core.SessionInfo{Principal: id.Principal, Tenant: id.Tenant, Groups: slices.Clone(id.Groups), Claims: store.CloneClaims(id.Claims)}
}

// owns reports whether a session with info belongs to identity id: the
// same principal in the same tenant. A session created before identities
// were recorded has an empty principal, which is the anonymous one.
func owns(id Identity, info *core.SessionInfo) bool {
	return samePrincipal(id.Principal, info.Principal) && id.Tenant == info.Tenant
}

func samePrincipal(a, b string) bool {
	if session.IsAnonymous(a) || session.IsAnonymous(b) {
		return session.IsAnonymous(a) && session.IsAnonymous(b)
	}
	return a == b
}

// ownedBy reports whether g belongs to the caller of r, and logs it when
// not: session_hijack_refused, with the caller's and the owner's
// principals and tenants as fingerprints only (the id is a bearer
// handle, and principals may be personal data). The caller answers a
// mismatch exactly like an unknown session (sessionNotFound), so that a
// session's existence cannot be probed with another principal's id —
// whatever named it: a legacy Mcp-Session-Id (with or without
// Last-Event-ID), a modern Mcpgate-Session key, an MRTR requestState, a
// record in the shared store.
func (f *Frontend) ownedBy(r *http.Request, id Identity, info *core.SessionInfo) bool {
	if owns(id, info) {
		return true
	}
	f.log.Warn("session_hijack_refused", "session", info.LogID(), "route", info.Route,
		"principal", core.Fingerprint(id.Principal), "owner", core.Fingerprint(info.Principal),
		"tenant", core.Fingerprint(id.Tenant), "owner_tenant", core.Fingerprint(info.Tenant),
		"remote_addr", r.RemoteAddr)
	return false
}

// hijackRefused is the answer to a request naming another principal's
// session: the same as for an unknown session, with the cause kept for the
// observers of refusals (pipeline.CheckHijack), never for the client.
func hijackRefused() *core.Error {
	e := sessionNotFound()
	e.Err = pipeline.ErrHijack
	return e
}

// sessionNotFound is the answer to a session id or key that names no
// session of the caller: unknown, ended, or another principal's.
func sessionNotFound() *core.Error {
	return core.NewError(core.CodeSessionNotFound, "session not found: it expired, was ended or never existed; send initialize to start a new one").WithStatus(http.StatusNotFound)
}

// Client addresses behind proxies.
//
// A listener with trusted proxies (ListenerPolicy.TrustedProxies) takes
// the client's address from what those proxies forward when the direct
// peer is one of them: the Forwarded header's for= parameters (RFC 7239),
// or else X-Forwarded-For, walked from the right (the hop nearest to us)
// past every trusted proxy; the first address that is not one is the
// client's. A peer that is not trusted has its forwarding headers ignored,
// so a client cannot choose its own address (and with it the per-address
// creation limits, caps and keyless modern sessions). The derived address
// replaces the request's RemoteAddr for everything after: admission,
// SessionInfo.RemoteAddr, logs, the cluster hop.

// clientAddress is the address of r's client under p: r.RemoteAddr, or
// for a request through a trusted proxy, the address it forwarded for
// (an IP address without port).
func (p *ListenerPolicy) clientAddress(r *http.Request) string {
	if len(p.TrustedProxies) == 0 {
		return r.RemoteAddr
	}
	peer, ok := parseHopAddr(r.RemoteAddr)
	if !ok || !p.trusted(peer) {
		return r.RemoteAddr
	}
	hops := forwardedFor(r.Header.Values("Forwarded"))
	if hops == nil {
		hops = forwardedList(r.Header.Values("X-Forwarded-For"))
	}
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		addr, ok := parseHopAddr(hops[i])
		if !ok {
			// "unknown", an obfuscated identifier or garbage: the
			// trusted hop that wrote it could not name its client, so
			// that hop is the client as far as we can tell.
			break
		}
		client = addr
		if !p.trusted(addr) {
			break
		}
	}
	return client.String()
}

func (p *ListenerPolicy) trusted(a netip.Addr) bool {
	for _, pfx := range p.TrustedProxies {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}

// forwardedFor is the for= values of Forwarded headers, in order; nil when
// none has one.
func forwardedFor(lines []string) []string {
	var out []string
	for _, line := range lines {
		for elem := range strings.SplitSeq(line, ",") {
			for pair := range strings.SplitSeq(elem, ";") {
				k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if ok && strings.EqualFold(strings.TrimSpace(k), "for") {
					out = append(out, strings.Trim(strings.TrimSpace(v), `"`))
				}
			}
		}
	}
	return out
}

// forwardedList is the addresses of X-Forwarded-For headers, in order.
func forwardedList(lines []string) []string {
	var out []string
	for _, line := range lines {
		for a := range strings.SplitSeq(line, ",") {
			if a = strings.TrimSpace(a); a != "" {
				out = append(out, a)
			}
		}
	}
	return out
}

// parseHopAddr reads an address as proxies and net/http write it: an IP,
// ip:port, [ipv6] or [ipv6]:port. IPv4-mapped IPv6 addresses are unmapped
// and zones dropped, so one client has one address.
func parseHopAddr(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}
