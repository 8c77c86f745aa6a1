package session

import (
	"context"
	"time"
)

// Recounter is implemented by Admitters whose counts can be lost while
// the sessions they counted live on (a shared store restarted without its
// data): Recount puts one live session back under every scope, checking
// no cap and evicting nothing — it was admitted already. holder is the
// session's holder (Admission.Holder), counted as Admit counts it.
type Recounter interface {
	Recount(ctx context.Context, id, holder string, scopes []ScopeCap, idle time.Duration, created time.Time) error
}

// Recount counts the live session a describes again under the shared
// caps, after the shared store lost its counts: the scopes are the ones an
// admission of a would have (see Reserve). Without an Admitter that
// recounts, it does nothing.
func (m *Manager) Recount(ctx context.Context, a Admission, created time.Time) error {
	m.admit.Lock()
	adm := m.admitter
	m.admit.Unlock()
	rc, ok := adm.(Recounter)
	if !ok {
		return nil
	}
	scopes := m.capsFor(a)
	if len(scopes) == 0 {
		return nil
	}
	idle := a.IdleTimeout
	if idle <= 0 {
		idle = m.bounds.Load().DefaultIdleTimeout
	}
	return rc.Recount(ctx, a.ID, a.Holder(), scopes, idle, created)
}
