package frontend

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

// TestClientAddress: forwarding headers are believed only from a trusted
// peer, walked from the right past trusted hops; Forwarded (for=) wins
// over X-Forwarded-For; a hop that cannot name its client leaves the
// nearest trusted hop as the client.
func TestClientAddress(t *testing.T) {
	t.Parallel()
	p := ListenerPolicy{TrustedProxies: []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8"),
	}}
	tests := []struct {
		name   string
		peer   string
		header http.Header
		want   string
	}{
		{"no proxies configured", "198.51.100.1:1234", http.Header{"X-Forwarded-For": {"203.0.113.1"}}, "198.51.100.1:1234"},
		{"untrusted peer ignores XFF", "198.51.100.1:1234", http.Header{"X-Forwarded-For": {"203.0.113.1"}}, "198.51.100.1:1234"},
		{"untrusted peer ignores Forwarded", "198.51.100.1:1234", http.Header{"Forwarded": {"for=203.0.113.1"}}, "198.51.100.1:1234"},
		{"trusted peer, XFF", "10.0.0.5:1234", http.Header{"X-Forwarded-For": {"203.0.113.1"}}, "203.0.113.1"},
		{"rightmost untrusted hop wins over a spoofed left", "10.0.0.5:1234", http.Header{"X-Forwarded-For": {"1.2.3.4, 203.0.113.1, 10.0.0.9"}}, "203.0.113.1"},
		{"several XFF lines", "10.0.0.5:1234", http.Header{"X-Forwarded-For": {"1.2.3.4", "203.0.113.1"}}, "203.0.113.1"},
		{"all hops trusted: the leftmost", "10.0.0.5:1234", http.Header{"X-Forwarded-For": {"10.1.1.1, 10.2.2.2"}}, "10.1.1.1"},
		{"Forwarded over XFF", "10.0.0.5:1234", http.Header{"Forwarded": {`for=192.0.2.60;proto=http;by=203.0.113.43`}, "X-Forwarded-For": {"203.0.113.1"}}, "192.0.2.60"},
		{"Forwarded quoted IPv6 with port", "[fd00::1]:443", http.Header{"Forwarded": {`For="[2001:db8:cafe::17]:4711"`}}, "2001:db8:cafe::17"},
		{"Forwarded several elements", "10.0.0.5:1234", http.Header{"Forwarded": {"for=1.2.3.4, for=198.51.100.17;proto=https, for=10.9.9.9"}}, "198.51.100.17"},
		{"Forwarded without for= falls back to XFF", "10.0.0.5:1234", http.Header{"Forwarded": {"proto=https"}, "X-Forwarded-For": {"203.0.113.1"}}, "203.0.113.1"},
		{"unknown hop: the trusted proxy is the client", "10.0.0.5:1234", http.Header{"Forwarded": {"for=1.2.3.4, for=unknown"}}, "10.0.0.5"},
		{"obfuscated hop behind a trusted one", "10.0.0.5:1234", http.Header{"Forwarded": {"for=_hidden, for=10.0.0.7"}}, "10.0.0.7"},
		{"IPv4-mapped unmapped", "10.0.0.5:1234", http.Header{"X-Forwarded-For": {"::ffff:203.0.113.1"}}, "203.0.113.1"},
		{"trusted peer, no headers", "10.0.0.5:1234", nil, "10.0.0.5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
			r.RemoteAddr = tt.peer
			r.Header = tt.header
			policy := p
			if tt.name == "no proxies configured" {
				policy = ListenerPolicy{}
			}
			if got := policy.clientAddress(r); got != tt.want {
				t.Errorf("clientAddress = %q; want %q", got, tt.want)
			}
		})
	}
}

// TestIdentityOwns: a session belongs to the same principal in the same
// tenant; a record without a principal is the anonymous one's.
func TestIdentityOwns(t *testing.T) {
	t.Parallel()
	alice := Identity{Principal: "alice", Tenant: "acme"}
	for _, tt := range []struct {
		who  Identity
		p, t string
		want bool
	}{
		{alice, "alice", "acme", true},
		{alice, "alice", "", false},
		{alice, "bob", "acme", false},
		{AnonymousIdentity(), "anonymous", "", true},
		{AnonymousIdentity(), "", "", true},
		{AnonymousIdentity(), "alice", "", false},
		{Identity{Principal: "alice"}, "anonymous", "", false},
	} {
		info := sessionInfoOf(Identity{Principal: tt.p, Tenant: tt.t})
		if got := owns(tt.who, &info); got != tt.want {
			t.Errorf("%+v owns a session of %q/%q = %v; want %v", tt.who, tt.p, tt.t, got, tt.want)
		}
	}
}
