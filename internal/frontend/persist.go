package frontend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/pipeline"
	"github.com/mcpgate/mcpgate/internal/session"
	"github.com/mcpgate/mcpgate/internal/store"
)

// touchEvery is how often a session's activity is written to the store at
// most: activity is for idle expiry after a restart, where a second of
// imprecision costs nothing, and a write per message would.
const touchEvery = time.Second

// persistence writes legacy sessions through to the store so that a
// client keeps its Mcp-Session-Id across a gateway restart. Modern
// sessions carry no protocol state and are not persisted.
type persistence struct {
	st store.Store
	// bc is set when the store is shared between replicas: sessions ended
	// here are announced, and sessions unknown here are looked up there.
	bc store.Broadcaster
	// origin names this replica in the events it publishes.
	origin string
	// rc is set when the shared store can lose its data and say so: the
	// sessions held here are then written back (republish), and absence
	// in the store proves nothing until it has settled.
	rc store.Recovering
	// live holds the sessions of this replica whose record the store has
	// (written by put, or read by a restore or fetch), by id: what a
	// store that lost its data gets back.
	live sync.Map // string → *gwSession
}

// storeFailed logs a failed store call, once, where it is handled
// (message store_<op>_failed), and reports it to Options.StoreErrors.
func (f *Frontend) storeFailed(log *slog.Logger, level slog.Level, op string, err error, attrs ...any) {
	log.Log(context.Background(), level, "store_"+op+"_failed", append(attrs, "error", err)...)
	f.countStoreError(op)
}

// countStoreError reports a failed store call that is logged in words of
// its own (creation_rate_unavailable, ...) to Options.StoreErrors.
func (f *Frontend) countStoreError(op string) {
	if f.opts.StoreErrors != nil {
		f.opts.StoreErrors(op)
	}
}

func storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 5*time.Second)
}

// put writes g's record through to the store: every legacy session, and
// on a shared store modern ones too, so that a modern key works on every
// replica (a store that is not shared keeps no modern sessions: a stale
// key is admitted again instead). The record names this replica as owner
// where the session's upstream side cannot move: a stdio process, or a
// modern session's pending MRTR calls and bridge sides (with the hop).
func (p *persistence) put(g *gwSession) error {
	if !p.kept(g) {
		return nil
	}
	ctx, cancel := storeCtx()
	defer cancel()
	i := g.info
	rec := &store.Record{
		ID: i.ID, Route: g.route().Name, Era: i.Era, ProtocolVersion: i.ProtocolVersion,
		Principal: i.Principal, Tenant: i.Tenant, Groups: i.Groups, Claims: i.Claims, RemoteAddr: i.RemoteAddr,
		ClientName: i.ClientName, ClientVersion: i.ClientVersion, InitRaw: g.initRaw,
		Created: i.Created, LastActive: time.Now(), IdleTimeout: g.route().IdleTimeout, TTL: g.route().TTL,
	}
	if g.f.hop != nil && (g.route().Local || i.Era == core.EraModern) {
		rec.Owner = p.origin
	}
	if err := p.st.Put(ctx, rec); err != nil {
		g.f.storeFailed(g.log, slog.LevelError, "put", err)
		return err
	}
	p.live.Store(i.ID, g)
	return nil
}

// get reads a record from the store. A shared store that lost its data
// may not have every record back yet: a miss there is believed only once
// the store has settled (every replica has written back what it holds),
// and then asked again.
func (p *persistence) get(ctx context.Context, id string) (*store.Record, error) {
	rec, err := p.st.Get(ctx, id)
	if !errors.Is(err, store.ErrNotFound) || p.rc == nil {
		return rec, err
	}
	if serr := p.rc.Settle(ctx); serr != nil {
		return nil, serr
	}
	return p.st.Get(ctx, id)
}

// endedElsewhere reports whether the session g, which this replica holds,
// has ended on another replica that this one has not heard of yet (the
// announcement is on its way): its record is gone from the shared store.
// Such a session is ended here at once, so that once a DELETE has been
// answered no replica forwards another request of it. One round trip per
// request on a shared store; a store that cannot answer, or one recovering
// from a loss, is taken to say the session lives.
func (f *Frontend) endedElsewhere(ctx context.Context, g *gwSession) bool {
	p := f.persist
	if p == nil || p.rc == nil {
		return false
	}
	if held, ok := p.live.Load(g.info.ID); !ok || held != g {
		return false // never stored (fail-open): the store cannot vouch for it
	}
	ok, err := p.rc.Exists(ctx, g.info.ID)
	if err != nil {
		f.storeFailed(g.log, slog.LevelDebug, "get", err)
		return false
	}
	if ok {
		return false
	}
	_ = f.opts.Sessions.End(context.WithoutCancel(ctx), g.info.ID, session.ReasonEndedElsewhere)
	return true
}

// republish writes back what this replica holds to a shared store that
// lost its data: each live session's record (with its owner) and its
// places under the cluster's caps. The store runs it once per loss and
// admits no new session under the caps until every replica has had the
// time to.
func (f *Frontend) republish(ctx context.Context) {
	p := f.persist
	n, failed := 0, 0
	p.live.Range(func(_, v any) bool {
		g := v.(*gwSession)
		if g.ctx.Err() != nil || g.sess == nil || ctx.Err() != nil {
			return ctx.Err() == nil
		}
		if err := p.put(g); err != nil {
			failed++
			return true
		}
		i := g.info
		err := f.opts.Sessions.Recount(ctx, session.Admission{
			ID: i.ID, Route: g.route().Name, RouteCap: g.route().Cap, Principal: i.Principal, Tenant: i.Tenant,
			Address: clientAddr(i.RemoteAddr), IdleTimeout: g.route().IdleTimeout,
		}, i.Created)
		if err != nil {
			f.storeFailed(g.log, slog.LevelError, "admit", err)
			failed++
			return true
		}
		n++
		return true
	})
	f.log.Warn("sessions_republished", "count", n, "failed", failed)
}

// storeUnavailable answers a request that needs the store while it is
// unreachable: 503 with a short Retry-After, never a 404 that would make
// the client drop a session that may well exist.
func storeUnavailable(err error) *core.Error {
	e := core.NewError(core.CodeInternalError, "session store unavailable; retry shortly").WithStatus(http.StatusServiceUnavailable).Wrap(err)
	e.Header = http.Header{"Retry-After": {"1"}}
	return e
}

// kept says whether the store keeps g: legacy sessions always, and on a
// shared store modern ones too (their record holds their place under the
// cluster's caps, which activity keeps and the end gives back).
func (p *persistence) kept(g *gwSession) bool {
	return p != nil && (g.info.Era == core.EraLegacy || p.bc != nil)
}

// touch records activity, at most once per touchEvery per session.
func (p *persistence) touch(g *gwSession) {
	if !p.kept(g) {
		return
	}
	now := time.Now()
	last := g.persistedTouch.Load()
	if now.UnixNano()-last < int64(touchEvery) || !g.persistedTouch.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	ctx, cancel := storeCtx()
	defer cancel()
	if err := p.st.Touch(ctx, g.info.ID, now); err != nil {
		g.f.storeFailed(g.log, slog.LevelWarn, "touch", err)
	}
}

// forget deletes the record of a session that ended for good. A session
// ended by shutdown stays: it continues after the restart.
//
// On a store shared between replicas the end is announced, so the other
// replicas drop their copies at once; a session ended because another
// replica announced it is not announced again.
//
// On a shared store two ends are not this replica's to announce: an
// eviction (the cluster's admission deleted and announced it already), and
// an idle timeout of this replica's copy while the store shows the session
// active through other replicas — only the copy here goes.
func (p *persistence) forget(g *gwSession, reason session.Reason) {
	if p != nil {
		p.live.CompareAndDelete(g.info.ID, g)
	}
	if !p.kept(g) || reason == session.ReasonShutdown || reason == session.ReasonEndedElsewhere {
		return
	}
	if p.bc != nil && reason == session.ReasonEvicted {
		return
	}
	ctx, cancel := storeCtx()
	defer cancel()
	if p.bc != nil && reason == session.ReasonIdle {
		if rec, err := p.st.Get(ctx, g.info.ID); err == nil && !rec.Expired(time.Now()) {
			g.log.Info("session_copy_dropped", "last_active", rec.LastActive)
			return
		}
	}
	if err := p.st.Delete(ctx, g.info.ID); err != nil {
		g.f.storeFailed(g.log, slog.LevelError, "delete", err)
	}
	if p.bc != nil {
		ev := store.Event{Kind: "ended", SessionID: g.info.ID, Reason: string(reason), Origin: p.origin}
		if err := p.bc.Publish(ctx, ev); err != nil {
			g.f.storeFailed(g.log, slog.LevelError, "publish", err)
		}
	}
}

// Subscribe applies the other replicas' announcements until ctx ends: a
// session ended elsewhere ends here too. It does nothing for a store that
// is not shared.
func (f *Frontend) Subscribe(ctx context.Context) error {
	p := f.persist
	if p == nil || p.bc == nil {
		return nil
	}
	return p.bc.Subscribe(ctx, func(ev store.Event) {
		if ev.Origin == p.origin {
			return
		}
		switch ev.Kind {
		case "ended":
			_ = f.opts.Sessions.End(context.WithoutCancel(ctx), ev.SessionID, session.ReasonEndedElsewhere)
		case "answer":
			s, err := f.opts.Sessions.Get(ev.SessionID)
			if err != nil {
				return
			}
			g, ok := s.Value.(*gwSession)
			m, derr := core.Decode(ev.Data)
			if !ok || derr != nil || (m.Kind != core.KindResponse && m.Kind != core.KindError) {
				return
			}
			m.Session, m.Direction, m.Era = g.info, core.ClientToServer, g.info.Era
			g.resolve(m)
		}
	})
}

// answerElsewhere hands a client's answer to a server request that no
// request here is waiting for to the replica that is: in a cluster, the
// client may post it to any replica, while the server request came through
// the one that relayed the client's call. Every replica hears it; the one
// waiting takes it. Sessions of local processes are forwarded whole to
// their owner instead, so they never get here.
func (p *persistence) answerElsewhere(g *gwSession, m *core.Message) bool {
	if p == nil || p.bc == nil || g.route().Local {
		return false
	}
	ctx, cancel := storeCtx()
	defer cancel()
	ev := store.Event{Kind: "answer", SessionID: g.info.ID, Origin: p.origin, Data: m.Raw}
	if err := p.bc.Publish(ctx, ev); err != nil {
		g.f.storeFailed(g.log, slog.LevelWarn, "publish", err, "kind", "answer")
	}
	return true
}

// fetch looks a session this replica does not know up in a shared store
// and brings it here, as after a restart. Only shared stores are asked:
// on a single node every stored session was restored at start, so a miss
// is a genuinely unknown id and must not cost a store read.
//
// It returns (nil, nil) for a session the store does not have, and an
// error when the store could not answer — unless the gateway runs fail
// open, where an unreachable store counts as "unknown".
//
// A record of another principal than who is a session that does not exist
// for this caller: pipeline.ErrHijack, logged, and not brought here.
func (f *Frontend) fetch(ctx context.Context, r *http.Request, who Identity, id string) (*gwSession, error) {
	p := f.persist
	if p == nil || p.bc == nil {
		return nil, nil
	}
	rec, err := p.get(ctx, id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) || f.opts.StoreFailOpen {
			return nil, nil
		}
		f.storeFailed(f.log, slog.LevelError, "get", err, "session", core.Fingerprint(id))
		return nil, err
	}
	if !f.ownedBy(r, who, &core.SessionInfo{ID: rec.ID, Route: rec.Route, Principal: rec.Principal, Tenant: rec.Tenant}) {
		return nil, pipeline.ErrHijack
	}
	if rt := f.routeNamed(rec.Route); rt != nil && rt.Local && rec.Owner != p.origin {
		// The session's process lives in another replica (the hop
		// forwards there, or claims it first when that replica is gone):
		// a second process here would split its state.
		f.log.Warn("session_elsewhere", "session", core.Fingerprint(id), "principal", rec.Principal, "route", rec.Route, "owner", rec.Owner)
		return nil, errSessionElsewhere
	}
	g, err := f.restoreRecord(ctx, rec, true)
	if err != nil {
		// A concurrent request may have fetched it first.
		if s, gerr := f.opts.Sessions.Get(id); gerr == nil {
			if g, ok := s.Value.(*gwSession); ok && owns(who, g.info) {
				return g, nil
			}
		}
		f.log.Warn("session_not_fetched", "session", core.Fingerprint(id), "error", err)
		return nil, nil
	}
	return g, nil
}

// restoreRecord admits a stored session again under the caps, keeping
// its id and creation time; its upstream side comes back on first use.
// A session adopted from a shared store already counts under the
// cluster's caps and is not admitted again.
func (f *Frontend) restoreRecord(ctx context.Context, rec *store.Record, adopt bool) (*gwSession, error) {
	rt := f.routeNamed(rec.Route)
	switch {
	case rt == nil:
		return nil, fmt.Errorf("%w: route %q no longer exists", errUnrestorable, rec.Route)
	case rec.Era != core.EraLegacy || len(rec.InitRaw) == 0:
		return nil, fmt.Errorf("%w: not a legacy session with its initialize request", errUnrestorable)
	case rec.Expired(time.Now()):
		return nil, fmt.Errorf("%w: expired", errUnrestorable)
	}
	how := "restart" // logged as session_restored, with its Resumed hooks
	if adopt {
		how = "replica"
	}
	o, e := f.openSession(ctx, &sessionSpec{
		route: rt, identity: recordIdentity(rec), era: core.EraLegacy, version: rec.ProtocolVersion,
		remoteAddr: rec.RemoteAddr, clientName: rec.ClientName, clientVersion: rec.ClientVersion,
		initRaw: rec.InitRaw, id: rec.ID, restored: how, adopt: adopt, created: rec.Created, record: recordKnown,
	})
	if e != nil {
		return nil, e
	}
	g, e := o.publish(ctx)
	if e != nil {
		return nil, e
	}
	return g, nil
}

// recordIdentity is the identity that owns a stored session. Records
// written before identities were kept name no principal: anonymous.
func recordIdentity(rec *store.Record) Identity {
	id := Identity{Principal: rec.Principal, Tenant: rec.Tenant, Groups: rec.Groups, Claims: rec.Claims}
	if id.Principal == "" {
		id.Principal = session.Anonymous
	}
	return id
}

// routeNamed is the current version of the route called name, or nil.
func (f *Frontend) routeNamed(name string) *Route { return f.routes().byName[name] }

// useStore makes the frontend write legacy sessions through to st (see
// Provision).
func (f *Frontend) useStore(st store.Store) {
	if st == nil {
		return
	}
	p := &persistence{st: st, origin: session.NewID()}
	if bc, ok := st.(store.Broadcaster); ok {
		p.bc = bc
		if rc, ok := st.(store.Recovering); ok {
			p.rc = rc
			rc.OnDataLoss(f.republish)
		}
	}
	f.persist = p
}

// errUnrestorable marks a stored record that can never be restored: its
// route is gone, it is expired, or it lacks what a restore needs.
var errUnrestorable = errors.New("record cannot be restored")

// Restore brings back the legacy sessions in the store after a restart:
// each is admitted again under the caps with its id, creation time and
// initialize request, and its upstream side (an upstream session, or a
// stdio process) is re-established on first use.
//
// Only records that can never be restored (expired, of a route that no
// longer exists, incomplete) are deleted. A record refused for another
// reason — a cap lowered since it was written, a store or manager error —
// is kept: the refusal is logged (session_not_restored with its reason),
// and the next start tries again while the record has not expired.
func (f *Frontend) Restore(ctx context.Context) (int, error) {
	p := f.persist
	if p == nil || p.bc != nil {
		// A shared store holds every replica's sessions: they are fetched
		// on demand, not all loaded into each replica.
		return 0, nil
	}
	recs, err := p.st.List(ctx)
	if err != nil {
		return 0, err
	}
	restored := 0
	for _, rec := range recs {
		_, err := f.restoreRecord(ctx, rec, false)
		if err != nil {
			fp := core.Fingerprint(rec.ID)
			var ce *session.CapError
			switch {
			case errors.Is(err, errUnrestorable):
				f.log.Info("session_not_restored", "session", fp, "principal", rec.Principal, "route", rec.Route, "reason", "invalid", "error", err)
				if derr := p.st.Delete(ctx, rec.ID); derr != nil {
					f.storeFailed(f.log, slog.LevelWarn, "delete", derr, "session", fp)
				}
			case errors.As(err, &ce):
				// The caps shrank since the record was written: the
				// session is refused, not destroyed.
				f.log.Warn("session_not_restored", "session", fp, "principal", rec.Principal, "route", rec.Route, "reason", "cap", "cap", string(ce.Scope), "max", ce.Max)
			default:
				f.log.Warn("session_not_restored", "session", fp, "principal", rec.Principal, "route", rec.Route, "reason", "error", "error", err)
			}
			continue
		}
		restored++
	}
	return restored, nil
}
