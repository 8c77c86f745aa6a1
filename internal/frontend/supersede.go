package frontend

import (
	"time"
)

// A swap that keeps a route (same name, same upstream) builds the route a
// new version with a new chain, and the old version's chain still serves
// the sessions that have not made a request since, and the requests that
// started on it. It is closed (pipeline.Chain.Close: the stages' Close)
// once no live session serves on the old version and the longest a request
// may last on it (its request_timeout) has passed since the swap; at
// shutdown every chain is closed (CloseChains).

// supersededVersion is a route version a swap replaced.
type supersededVersion struct {
	rt *Route
	at time.Time
}

// supersede records rt, replaced by a swap; swapMu is held.
func (f *Frontend) supersede(rt *Route) {
	f.superseded = append(f.superseded, supersededVersion{rt: rt, at: time.Now()})
	if !f.sweeping {
		f.sweeping = true
		f.sweepStop = make(chan struct{})
		go f.sweep(f.sweepStop)
	}
}

// sweep closes the chains of superseded versions as they fall out of use,
// until none is left or stop is closed (CloseChains).
func (f *Frontend) sweep(stop <-chan struct{}) {
	every := f.sweepEvery
	if every <= 0 {
		every = 5 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			if !f.sweepOnce(now) {
				return
			}
		}
	}
}

// sweepOnce closes the superseded chains no longer in use at now; it
// reports whether any remain (false: the sweeper stops).
func (f *Frontend) sweepOnce(now time.Time) bool {
	f.swapMu.Lock()
	due := make([]supersededVersion, 0, len(f.superseded))
	for _, v := range f.superseded {
		if now.Sub(v.at) >= v.rt.RequestTimeout {
			due = append(due, v)
		}
	}
	f.swapMu.Unlock()
	if len(due) == 0 {
		return f.sweepingStill()
	}
	inUse := map[*Route]bool{}
	for _, s := range f.opts.Sessions.List() {
		if g, ok := s.Value.(*gwSession); ok {
			inUse[g.route()] = true
		}
	}
	var closing []*Route
	f.swapMu.Lock()
	kept := f.superseded[:0]
	for _, v := range f.superseded {
		if now.Sub(v.at) >= v.rt.RequestTimeout && !inUse[v.rt] {
			closing = append(closing, v.rt)
			continue
		}
		kept = append(kept, v)
	}
	clear(f.superseded[len(kept):])
	f.superseded = kept
	f.swapMu.Unlock()
	for _, rt := range closing {
		if err := rt.chain.Close(); err != nil {
			f.log.Warn("route_chain_close_failed", "route", rt.Name, "error", err)
		}
	}
	return f.sweepingStill()
}

// sweepingStill reports whether superseded versions remain, and stops
// the sweeper (under swapMu) when none does.
func (f *Frontend) sweepingStill() bool {
	f.swapMu.Lock()
	defer f.swapMu.Unlock()
	if len(f.superseded) == 0 {
		f.sweeping = false
		return false
	}
	return true
}

// CloseChains closes every route chain: the table's and the superseded
// versions'. The gateway calls it at shutdown, once the sessions have
// ended.
func (f *Frontend) CloseChains() {
	f.swapMu.Lock()
	vs := f.superseded
	f.superseded = nil
	if f.sweeping {
		f.sweeping = false
		close(f.sweepStop)
	}
	t := f.routes()
	f.swapMu.Unlock()
	for _, v := range vs {
		_ = v.rt.chain.Close()
	}
	for _, rt := range t.byName {
		if err := rt.chain.Close(); err != nil {
			f.log.Warn("route_chain_close_failed", "route", rt.Name, "error", err)
		}
	}
}
