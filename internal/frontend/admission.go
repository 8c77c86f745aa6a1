package frontend

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/limits"
	"github.com/mcpgate/mcpgate/internal/session"
)

// CreationLimits are the sliding windows a new session must pass: each a
// *limits.Window, or a window every replica shares. A nil or switched-off
// window (see limits.Off) is no limit.
type CreationLimits struct {
	Global, PerAddress, PerPrincipal limits.UndoLimiter
}

// undoTimeout bounds giving back creation slots to a shared window: the
// request that took them may be gone by then.
const undoTimeout = 2 * time.Second

// admission is a session creation that passed the rate limits and holds a
// place under the caps. Exactly one of commit and cancel follows.
type admission struct {
	f         *Frontend
	res       session.Reservation
	id        string // the new session's id, minted before admission
	addr      string
	principal string
	at        time.Time
}

// admit applies the creation rate limits (429) and the session caps (503,
// or eviction where a cap says so) before anything is opened upstream.
func (f *Frontend) admit(ctx context.Context, r *http.Request, rt *Route, principal, tenant string) (*admission, *core.Error) {
	return f.admitAs(ctx, r, rt, principal, tenant, "")
}

// admitAs is admit for a session whose id is given (a modern session key
// of ours presented again after its session was lost); "" mints one.
func (f *Frontend) admitAs(ctx context.Context, r *http.Request, rt *Route, principal, tenant, id string) (*admission, *core.Error) {
	now := time.Now()
	a := &admission{f: f, addr: clientAddr(r.RemoteAddr), principal: principal, at: now}
	c := f.opts.Creation
	checks := []struct {
		w    limits.UndoLimiter
		key  string
		what string
	}{
		{c.Global, "", "gateway-wide"},
		{c.PerAddress, a.addr, "per client address"},
		{c.PerPrincipal, principal, "per principal"},
	}
	for i, chk := range checks {
		if limits.Off(chk.w) {
			continue
		}
		retry, err := chk.w.Admit(ctx, chk.key, now)
		if err == nil {
			continue
		}
		for _, prev := range checks[:i] {
			undo(prev.w, prev.key, now)
		}
		if !limits.Refused(err) {
			// A shared window whose store cannot be reached, and the
			// gateway fails closed.
			f.log.Warn("creation_rate_unavailable", "route", rt.Name, "limit", chk.what, "error", err)
			f.countStoreError("admit")
			e := core.NewError(core.CodeInternalError, "session creation rate limit unavailable (its store cannot be reached); retry shortly").
				WithStatus(http.StatusServiceUnavailable).Wrap(err)
			e.Header = http.Header{"Retry-After": {"1"}}
			return nil, e
		}
		e := core.NewError(core.CodeRateLimited, "too many new sessions ("+chk.what+" creation rate limit); retry after "+limits.RetryAfterSeconds(retry)+"s")
		e.Header = http.Header{"Retry-After": {limits.RetryAfterSeconds(retry)}}
		return nil, e
	}
	a.id = id
	if a.id == "" {
		a.id = f.opts.IDs.Mint()
	}
	adm := session.Admission{ID: a.id, Route: rt.Name, RouteCap: rt.Cap, Principal: principal, Tenant: tenant, Address: a.addr, IdleTimeout: rt.IdleTimeout}
	res, err := f.opts.Sessions.Reserve(ctx, adm)
	var ce *session.CapError
	if err != nil && !errors.As(err, &ce) && !errors.Is(err, session.ErrClosed) && f.opts.StoreFailOpen {
		// The shared store that counts the cluster's sessions cannot be
		// reached, and the gateway runs fail-open: admit outside the
		// shared caps.
		f.log.Warn("session_admitted_unshared", "route", rt.Name, "error", err)
		f.countStoreError("admit")
		adm.Adopt = true
		res, err = f.opts.Sessions.Reserve(ctx, adm)
	}
	if err != nil {
		a.undoRates()
		if errors.As(err, &ce) {
			secs := limits.RetryAfterSeconds(ce.RetryAfter)
			e := core.NewError(core.CodeSessionCap, "session limit reached: "+capName(ce)+" allows "+strconv.Itoa(ce.Max)+" sessions; retry after "+secs+"s").
				WithData(map[string]any{"cap": string(ce.Scope), "max": ce.Max})
			e.Header = http.Header{"Retry-After": {secs}}
			return nil, e
		}
		if errors.Is(err, session.ErrClosed) {
			return nil, core.NewError(core.CodeInternalError, "gateway is shutting down").WithStatus(http.StatusServiceUnavailable).Wrap(err)
		}
		f.storeFailed(f.log, slog.LevelError, "admit", err, "route", rt.Name)
		return nil, storeUnavailable(err)
	}
	a.res = res
	return a, nil
}

func capName(ce *session.CapError) string {
	switch ce.Scope {
	case session.ScopeGlobal:
		return "the gateway-wide cap"
	case session.ScopeRoute:
		return "the cap of route " + strconv.Quote(ce.Key)
	case session.ScopePrincipal:
		return "the per-principal cap"
	case session.ScopeAddress:
		return "the per-address cap"
	}
	return "the per-tenant cap"
}

func (a *admission) undoRates() {
	c := a.f.opts.Creation
	undo(c.Global, "", a.at)
	undo(c.PerAddress, a.addr, a.at)
	undo(c.PerPrincipal, a.principal, a.at)
}

// undo gives back a creation slot of w, if w is on. It runs after the
// request that took the slot may have ended, so it has a context of its
// own.
func undo(w limits.UndoLimiter, key string, at time.Time) {
	if limits.Off(w) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), undoTimeout)
	defer cancel()
	w.Undo(ctx, key, at)
}

// cancel gives back the place and the rate-limit slots: the creation
// failed after admission.
func (a *admission) cancel() {
	a.res.Cancel()
	a.undoRates()
}

// commit publishes the session.
func (a *admission) commit(g *gwSession, info *core.SessionInfo, rt *Route) (*session.Session, error) {
	s, err := a.res.Commit(info, session.Limits{IdleTimeout: rt.IdleTimeout, TTL: rt.TTL}, g.teardown, g)
	if err != nil {
		a.undoRates()
	}
	return s, err
}
