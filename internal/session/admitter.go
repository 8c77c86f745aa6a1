package session

import (
	"context"
	"errors"
	"github.com/mcpgate/mcpgate/internal/core"
	"time"
)

// Admitter decides admission under caps that several gateway processes
// share (a cluster on one store). With an Admitter (Provision) the
// Manager keeps no
// caps of its own: every new session is admitted by Admit, atomically
// across the cluster, and the Admitter removes a session from its counts
// when its shared record is deleted or expires.
//
// Implementations must be safe for use by multiple goroutines.
type Admitter interface {
	// Admit places the session id under every scope in scopes, making
	// room where a scope's policy says so, all or nothing: a scope that
	// refuses leaves every count unchanged and evicts nothing. A scope
	// makes room as the Manager does: its victim is a session of the
	// holder (see Admission.Holder) with the most sessions in the scope,
	// the new session counting with its own holder, which wins a tie;
	// the policy picks within that holder and between tied ones. It returns
	// the ids it evicted (already gone from the shared store and announced
	// to every replica), or a *CapError naming the full scope. idle is the
	// session's idle timeout: a session the cluster hears nothing of for
	// that long stops counting.
	Admit(ctx context.Context, id, holder string, scopes []ScopeCap, idle time.Duration) (evicted []string, err error)
	// Release removes id from every count it was admitted under. Releasing
	// an id that is not counted is not an error.
	Release(ctx context.Context, id string) error
}

// ScopeCap is one capped scope a session is admitted under.
type ScopeCap struct {
	Scope Scope
	Key   string // the route, principal, tenant or address; empty for global
	Cap   Cap
}

// capsFor lists the capped scopes of an admission, for an Admitter.
func (m *Manager) capsFor(a Admission) []ScopeCap {
	var out []ScopeCap
	add := func(kind Scope, key string, c Cap) {
		if c.Max > 0 {
			out = append(out, ScopeCap{Scope: kind, Key: key, Cap: c})
		}
	}
	b := m.bounds.Load()
	add(ScopeGlobal, "", b.Global)
	add(ScopeRoute, a.Route, a.RouteCap)
	add(ScopePrincipal, PrincipalKey(a.Tenant, a.Principal), b.PerPrincipal)
	add(ScopeTenant, a.Tenant, b.PerTenant)
	if IsAnonymous(a.Principal) && a.Address != "" {
		add(ScopeAddress, a.Address, b.PerAddress)
	}
	return out
}

// releaseTimeout bounds giving a shared place back.
const releaseTimeout = 5 * time.Second

// reserveShared admits through the Admitter. The shared store, not this
// process, decides; a session it evicts that lives here ends here at
// once (its id answers 404 before the new session counts), and the
// other replicas end theirs when they hear the announcement.
func (m *Manager) reserveShared(ctx context.Context, a Admission, adm Admitter) (Reservation, error) {
	id := a.ID
	if id == "" {
		id = NewID()
	}
	scopes := m.capsFor(a)
	if len(scopes) == 0 {
		return Reservation{m: m, id: id, restored: a.Restored}, nil
	}
	idle := a.IdleTimeout
	if idle <= 0 {
		idle = m.bounds.Load().DefaultIdleTimeout
	}
	evicted, err := adm.Admit(ctx, id, a.Holder(), scopes, idle)
	if err != nil {
		var ce *CapError
		if errors.As(err, &ce) {
			ce.RetryAfter = min(max(ce.RetryAfter, time.Second), 5*time.Minute)
		}
		return Reservation{}, err
	}
	for _, vid := range evicted {
		v, err := m.Get(vid)
		if err != nil || !m.detach(v) {
			continue // held by another replica, or already gone
		}
		m.evict(ctx, v, "cluster")
	}
	return Reservation{m: m, id: id, shared: adm, restored: a.Restored}, nil
}

// releaseShared gives a reservation's shared place back.
func (r *Reservation) releaseShared() {
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	if err := r.shared.Release(ctx, r.id); err != nil {
		// The place frees itself when its idle timeout passes unrefreshed.
		r.m.log.Warn("session_release_failed", "session", core.Fingerprint(r.id), "error", err)
	}
}
