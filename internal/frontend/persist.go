package frontend

import (
	"context"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
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
}

func storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 5*time.Second)
}

func (p *persistence) put(g *gwSession) {
	if p == nil || g.info.Era != core.EraLegacy {
		return
	}
	ctx, cancel := storeCtx()
	defer cancel()
	i := g.info
	rec := &store.Record{
		ID: i.ID, Route: g.route.Name, Era: i.Era, ProtocolVersion: i.ProtocolVersion,
		Principal: i.Principal, Tenant: i.Tenant, RemoteAddr: i.RemoteAddr,
		ClientName: i.ClientName, ClientVersion: i.ClientVersion, InitRaw: g.initRaw,
		Created: i.Created, LastActive: time.Now(), IdleTimeout: g.route.IdleTimeout, TTL: g.route.TTL,
	}
	if err := p.st.Put(ctx, rec); err != nil {
		g.log.Error("store_put_failed", "error", err)
	}
}

// touch records activity, at most once per touchEvery per session.
func (p *persistence) touch(g *gwSession) {
	if p == nil || g.info.Era != core.EraLegacy {
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
		g.log.Warn("store_touch_failed", "error", err)
	}
}

// forget deletes the record of a session that ended for good. A session
// ended by shutdown stays: it continues after the restart.
func (p *persistence) forget(g *gwSession, reason session.Reason) {
	if p == nil || reason == session.ReasonShutdown || g.info.Era != core.EraLegacy {
		return
	}
	ctx, cancel := storeCtx()
	defer cancel()
	if err := p.st.Delete(ctx, g.info.ID); err != nil {
		g.log.Error("store_delete_failed", "error", err)
	}
}

// UseStore makes the frontend write legacy sessions through to st. Call it
// before serving.
func (f *Frontend) UseStore(st store.Store) {
	if st != nil {
		f.persist = &persistence{st: st}
	}
}

// Restore brings back the legacy sessions in the store after a restart:
// each is admitted again under the caps with its id, creation time and
// initialize request, and its upstream side (an upstream session, or a
// stdio process) is re-established on first use. Expired records and
// records of routes that no longer exist are deleted.
func (f *Frontend) Restore(ctx context.Context) (int, error) {
	p := f.persist
	if p == nil {
		return 0, nil
	}
	recs, err := p.st.List(ctx)
	if err != nil {
		return 0, err
	}
	byName := map[string]*Route{}
	for _, rt := range f.routes {
		byName[rt.Name] = rt
	}
	now := time.Now()
	restored := 0
	for _, rec := range recs {
		rt := byName[rec.Route]
		if rt == nil || rec.Era != core.EraLegacy || len(rec.InitRaw) == 0 || rec.Expired(now) {
			_ = p.st.Delete(ctx, rec.ID)
			continue
		}
		info := &core.SessionInfo{
			ID: rec.ID, Route: rt.Name, Era: core.EraLegacy, ProtocolVersion: rec.ProtocolVersion,
			Principal: rec.Principal, Tenant: rec.Tenant, RemoteAddr: rec.RemoteAddr,
			ClientName: rec.ClientName, ClientVersion: rec.ClientVersion, Created: rec.Created,
		}
		res, err := f.opts.Sessions.Reserve(ctx, session.Admission{Route: rt.Name, RouteCap: rt.Cap, Principal: info.Principal, Tenant: info.Tenant})
		if err != nil {
			f.log.Warn("session_not_restored", "session_id", rec.ID, "error", err)
			_ = p.st.Delete(ctx, rec.ID)
			continue
		}
		g := newGWSession(f, rt, info)
		g.initRaw = rec.InitRaw
		s, err := res.Commit(info, session.Limits{IdleTimeout: rt.IdleTimeout, TTL: rt.TTL}, g.teardown, g)
		if err != nil {
			continue
		}
		g.sess = s
		f.opts.Sessions.Resumed(s, "restart")
		restored++
	}
	return restored, nil
}
