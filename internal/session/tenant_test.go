package session_test

import (
	"errors"
	"testing"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/session"
)

// TestPrincipalCapsPerTenant: principals of one name in two tenants are two
// holders: the per-principal cap counts each apart, and eviction in one
// tenant never takes the other tenant's session.
func TestPrincipalCapsPerTenant(t *testing.T) {
	t.Parallel()
	m := session.NewManager(session.Options{PerPrincipal: session.Cap{Max: 1, Policy: session.EvictOldest}})
	defer m.Close(t.Context())
	mk := func(tenant string) *session.Session {
		t.Helper()
		r, err := m.Reserve(t.Context(), session.Admission{Route: "r", Principal: "bot", Tenant: tenant})
		if err != nil {
			t.Fatalf("Reserve in %q: %v", tenant, err)
		}
		s, err := r.Commit(&core.SessionInfo{Route: "r", Principal: "bot", Tenant: tenant}, session.Limits{}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	acme := mk("acme")
	globex := mk("globex")
	if got := m.Count(session.ScopePrincipal, core.PrincipalKey("acme", "bot")); got != 1 {
		t.Fatalf("acme/bot counts %d, want 1", got)
	}
	if got := m.Count(session.ScopePrincipal, core.PrincipalKey("globex", "bot")); got != 1 {
		t.Fatalf("globex/bot counts %d, want 1", got)
	}
	// A second session of acme's bot evicts acme's first, not globex's.
	mk("acme")
	if _, err := m.Get(acme.ID()); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("acme's first session survived its own cap: %v", err)
	}
	if _, err := m.Get(globex.ID()); err != nil {
		t.Fatalf("globex's session was evicted by acme's: %v", err)
	}
}

func TestPrincipalKey(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ tenant, principal, want string }{
		{"", "bot", "bot"},
		{"acme", "bot", "acme/bot"},
		{"a/b", "c", "a%2Fb/c"}, // never the key of tenant "a", principal "b/c"
		{"a", "b/c", "a/b/c"},
	} {
		if got := core.PrincipalKey(c.tenant, c.principal); got != c.want {
			t.Errorf("PrincipalKey(%q, %q) = %q, want %q", c.tenant, c.principal, got, c.want)
		}
	}
}
