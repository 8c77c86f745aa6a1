package session

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Bounds are the manager's admission policy that may change while it
// runs (a configuration reload): the caps across routes and the default
// lifetimes. A route's own cap is not here: it comes with each admission
// (Admission.RouteCap), from the route table the admission was made on.
type Bounds struct {
	// Global, PerPrincipal, PerTenant and PerAddress are as in Options.
	Global, PerPrincipal, PerTenant, PerAddress Cap
	// DefaultIdleTimeout and DefaultTTL apply to sessions committed from
	// now on whose Limits leave them zero. A zero DefaultIdleTimeout keeps
	// the current one (a session always has an idle timeout).
	DefaultIdleTimeout, DefaultTTL time.Duration
}

// Bounds returns the policy in force.
func (m *Manager) Bounds() Bounds { return *m.bounds.Load() }

// SetBounds changes the admission policy, under the admission mutex: every
// admission decides under either the old policy or the new one, whole.
//
// Changing a bound ends no session. A cap lowered below its scope's live
// count evicts nothing by itself; the next admission into that scope
// decides under the new policy: reject refuses it until the count is
// under the new cap, an evicting policy makes room for it down to the new
// cap (taking each victim from the holder largest at that point), as it
// does after a route cap was lowered. Live sessions keep the idle timeout
// and TTL they were created with.
func (m *Manager) SetBounds(b Bounds) {
	m.admit.Lock()
	defer m.admit.Unlock()
	if b.DefaultIdleTimeout <= 0 {
		b.DefaultIdleTimeout = m.bounds.Load().DefaultIdleTimeout
	}
	m.global.cap = b.Global
	m.bounds.Store(&b)
}

// Provisions are what a manager gets once, after it is built and before
// its first admission: what only exists once the gateway has opened its
// store.
type Provisions struct {
	// Admitter, if not nil, shares the manager's caps with other gateway
	// processes: it decides every admission, and the manager's own cap
	// counts are not used.
	Admitter Admitter
}

// ErrProvisioned is returned by a second Provision, or by one after the
// first admission.
var ErrProvisioned = errors.New("session: manager already provisioned or admitting")

// Provision hands the manager what Provisions describes. It may be called
// once, before any session is reserved.
func (m *Manager) Provision(p Provisions) error {
	m.admit.Lock()
	defer m.admit.Unlock()
	if m.provisioned || m.admitted {
		return ErrProvisioned
	}
	m.provisioned = true
	m.admitter = p.Admitter
	return nil
}

// EndMatching ends, with reason, every live session match reports true
// for, and returns when their teardowns have finished (or ctx ended) with
// the number ended. match runs without any manager lock held.
func (m *Manager) EndMatching(ctx context.Context, match func(*Session) bool, reason Reason) int {
	var wg sync.WaitGroup
	n := 0
	for _, s := range m.all() {
		if !match(s) || !m.detach(s) {
			continue
		}
		n++
		wg.Go(func() { m.teardown(ctx, s, reason) })
	}
	wg.Wait()
	return n
}

// List returns the live sessions, in no order: a snapshot taken one
// shard at a time, which may miss sessions created or include sessions
// ended while it is taken.
func (m *Manager) List() []*Session { return m.all() }

// all lists the live sessions, one shard at a time under its read lock.
func (m *Manager) all() []*Session {
	var found []*Session
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.RLock()
		for _, s := range sh.byID {
			found = append(found, s)
		}
		sh.mu.RUnlock()
	}
	return found
}
