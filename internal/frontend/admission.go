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
	"github.com/mcpgate/mcpgate/internal/upstream"
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

// admission is a session creation that holds a place under the caps and,
// for a new session, passed the creation rate limits. Exactly one of
// commit and cancel follows.
type admission struct {
	f         *Frontend
	res       session.Reservation
	id        string // the new session's id, minted before admission
	addr      string
	principal string
	at        time.Time
	// rated: the creation windows gave slots, which a failure gives back.
	rated bool
}

// admitAs applies the creation rate limits (429) and the session caps
// (503, or eviction where a cap says so) to a new session of id at the
// client address addr, before anything is opened upstream. id is the
// session's id when it is given (a modern session key of ours presented
// again after its session was lost); "" mints one.
func (f *Frontend) admitAs(ctx context.Context, rt *Route, who Identity, addr, id string) (*admission, *core.Error) {
	now := time.Now()
	a := &admission{f: f, addr: clientAddr(addr), principal: session.PrincipalKey(who.Tenant, who.Principal), at: now, rated: true}
	c := f.opts.Creation
	checks := []struct {
		w    limits.UndoLimiter
		key  string
		what string
	}{
		{c.Global, "", "gateway-wide"},
		{c.PerAddress, a.addr, "per client address"},
		{c.PerPrincipal, a.principal, "per principal"},
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
	adm := session.Admission{ID: a.id, Route: rt.Name, RouteCap: rt.Cap, Principal: who.Principal, Tenant: who.Tenant, Address: a.addr, IdleTimeout: rt.IdleTimeout}
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

// readmit admits a session that existed before (spec.restored) again:
// under the caps after a restart, outside them (adopt) for a session the
// cluster counts already. It is not rate limited: it is no new session.
// The manager's error is kept (wrapped) for the caller to tell a cap from
// a failure.
func (f *Frontend) readmit(ctx context.Context, spec *sessionSpec) (*admission, *core.Error) {
	rt := spec.route
	addr := clientAddr(spec.remoteAddr)
	res, err := f.opts.Sessions.Reserve(ctx, session.Admission{
		ID: spec.id, Route: rt.Name, RouteCap: rt.Cap, Principal: spec.identity.Principal, Tenant: spec.identity.Tenant,
		Address: addr, IdleTimeout: rt.IdleTimeout, Adopt: spec.adopt, Restored: spec.restored,
	})
	if err != nil {
		return nil, core.AsError(err).WithStatus(http.StatusServiceUnavailable)
	}
	return &admission{f: f, res: res, id: spec.id, addr: addr, principal: session.PrincipalKey(spec.identity.Tenant, spec.identity.Principal)}, nil
}

// sessionSpec is what openSession needs to know of a session: whose it is,
// where, how it was negotiated, and for one that existed before, how it
// comes back.
type sessionSpec struct {
	route *Route
	// identity owns the session: only requests of the same principal (and
	// tenant) are served by it.
	identity Identity
	era      core.Era
	version  string
	// remoteAddr is the client's address, trusted proxies applied.
	remoteAddr                string
	clientName, clientVersion string
	// initRaw is a legacy client's initialize request, kept to
	// re-establish the upstream side.
	initRaw []byte
	// id is the session's id; "" mints a fresh one.
	id string
	// restored says how a session that existed before is brought back
	// ("restart": the store at start; "replica": a shared store); "" for a
	// new session. adopt admits it outside the caps (the cluster counts
	// it); created is its creation time.
	restored string
	adopt    bool
	created  time.Time
	// connect opens the upstream side now; otherwise the first request
	// re-establishes it (gwSession.ready).
	connect bool
	// anonKey is the keyless modern group this session serves (see
	// modernsession.go); "" for none.
	anonKey string
	// record says what publish writes to the store: recordNew (a new
	// session's record), recordKnown (the store has it already) or
	// recordOwn (write it again, now owned by this replica).
	record recordMode
}

type recordMode int

const (
	recordNew recordMode = iota
	recordKnown
	recordOwn
)

// opening is a session admitted and built, not yet published. Exactly one
// of publish and abandon follows.
type opening struct {
	f    *Frontend
	spec *sessionSpec
	adm  *admission
	g    *gwSession
}

// openSession is the one way a gateway session comes to be — a legacy
// initialize, a modern request without a session, a session restored
// after a restart or fetched from a shared store: admission (rate limits
// and caps for a new session, the caps alone or nothing for one that
// existed), the session's state bound to its owner's identity, and, when
// spec.connect says so, its upstream side. Nobody can look the session up
// until publish.
func (f *Frontend) openSession(ctx context.Context, spec *sessionSpec) (*opening, *core.Error) {
	rt := spec.route
	var adm *admission
	var e *core.Error
	if spec.restored == "" {
		adm, e = f.admitAs(ctx, rt, spec.identity, spec.remoteAddr, spec.id)
	} else {
		adm, e = f.readmit(ctx, spec)
	}
	if e != nil {
		return nil, e
	}
	info := sessionInfoOf(spec.identity)
	info.ID, info.Route, info.Era, info.ProtocolVersion = adm.id, rt.Name, spec.era, spec.version
	info.RemoteAddr, info.ClientName, info.ClientVersion, info.Created = spec.remoteAddr, spec.clientName, spec.clientVersion, spec.created
	g := newGWSession(f, rt, &info)
	g.initRaw = spec.initRaw
	g.anonAddr = spec.anonKey
	o := &opening{f: f, spec: spec, adm: adm, g: g}
	if spec.connect {
		var sink upstream.Sink = g
		if spec.era == core.EraLegacy {
			sink = genSink{g, 0}
		}
		conn, err := rt.Upstream.Open(ctx, upstream.OpenParams{Session: g.info, Era: spec.era, Catalog: g.catalog}, sink)
		if err != nil {
			adm.cancel()
			g.cancel()
			g.log.Warn("upstream_open_failed", "error", err)
			if errors.Is(err, upstream.ErrCredential) {
				// The caller's own credential is missing (403) or could not
				// be had (502): its error says which.
				return nil, core.AsError(err)
			}
			return nil, core.NewError(core.CodeUpstreamError, "upstream unavailable: could not open a connection").WithStatus(http.StatusBadGateway).Wrap(err)
		}
		g.setConn(conn)
	}
	return o, nil
}

// publish makes the session visible (its id now finds it) and writes it
// through to the store. On failure the session is gone again: torn down,
// its place given back; a new session the store could not take is ended
// when the gateway fails closed (it would be lost on restart and unknown
// to other replicas).
func (o *opening) publish(ctx context.Context) (*gwSession, *core.Error) {
	f, g, rt := o.f, o.g, o.spec.route
	s, err := o.adm.commit(g, g.info, rt)
	o.adm = nil
	if err != nil {
		o.discard(ctx)
		return nil, core.AsError(err).WithStatus(http.StatusServiceUnavailable)
	}
	g.sess = s
	switch o.spec.record {
	case recordNew:
		if perr := f.persist.put(g); perr != nil && !f.opts.StoreFailOpen {
			_ = f.opts.Sessions.End(context.WithoutCancel(ctx), g.info.ID, session.ReasonInitFailed)
			return nil, storeUnavailable(perr)
		}
	case recordKnown:
		if f.persist != nil {
			f.persist.live.Store(g.info.ID, g)
		}
	case recordOwn:
		_ = f.persist.put(g) // logged and counted there; the session lives on
	}
	return g, nil
}

// abandon gives the place (and rate-limit slots) back and tears down
// what was opened: the creation failed before publish.
func (o *opening) abandon(ctx context.Context) {
	if o.adm != nil {
		o.adm.cancel()
		o.adm = nil
	}
	o.discard(ctx)
}

// discard ends a session that was never published. A new one is torn
// down like any session; one that existed before keeps its record (the
// store's copy is still the session), only its upstream side is closed.
func (o *opening) discard(ctx context.Context) {
	g := o.g
	if o.spec.restored == "" {
		g.anonAddr = "" // never published
		g.teardown(ctx, session.ReasonInitFailed)
		return
	}
	g.cancel()
	if conn, _ := g.connection(); conn != nil {
		_ = conn.Close(ctx)
	}
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
	if !a.rated {
		return
	}
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
