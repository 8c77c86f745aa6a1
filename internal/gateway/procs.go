package gateway

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/internal/metrics"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/upstream"
	"github.com/mcpgate/mcpgate/internal/upstream/stdio"
)

// procWriteTimeout bounds recording one spawned process in the store.
const procWriteTimeout = 2 * time.Second

// procRecorder keeps the store's record of the stdio processes this
// gateway runs (store.Procs), so that a gateway started after a crash ends
// what this one left behind. The kernel kills a child when mcpgate dies
// (the parent-death signal, see package stdio), but not what the child
// started: a `go run` or `npx` wrapper's server, or any descendant that
// ignores its closed stdin, would run on with parent pid 1, and every
// restart would add more. Records are grouped by host name, since pids
// mean something on one machine only; a record whose gateway still runs
// (several gateways on one host may share a Redis) is left alone.
type procRecorder struct {
	log     *slog.Logger
	metrics *metrics.Upstreams // mcpgate_stdio_processes
	host    string
	self    stdio.Process
	ok      bool // self is known: processes can be identified here

	mu      sync.Mutex
	bound   bool
	st      store.Procs           // nil until bound, and with a store that keeps none
	pending map[string]store.Proc // spawned before bind
}

func newProcRecorder(log *slog.Logger, m *metrics.Upstreams) *procRecorder {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	self, ok := stdio.Self()
	return &procRecorder{log: log, metrics: m, host: host, self: self, ok: ok, pending: map[string]store.Proc{}}
}

// attach makes r record the processes up spawns, if it spawns any.
func (r *procRecorder) attach(up upstream.Upstream, route string) {
	if s, ok := up.(*stdio.Upstream); ok && r.ok {
		s.UseRecorder(routeProcs{r, route, r.metrics.Processes(route)})
	}
}

// routeProcs is the stdio.Recorder of one route; it counts the route's
// processes too.
type routeProcs struct {
	r     *procRecorder
	route string
	n     prometheus.Gauge
}

func (rp routeProcs) Spawned(p stdio.Process) { rp.n.Inc(); rp.r.spawned(rp.route, p) }
func (rp routeProcs) Ended(p stdio.Process)   { rp.n.Dec(); rp.r.ended(p) }

func (r *procRecorder) record(route string, p stdio.Process) store.Proc {
	return store.Proc{
		Pid: p.Pid, Pgid: p.Pgid, Start: p.Start, Boot: p.Boot,
		Gateway: r.self.Pid, GatewayStart: r.self.Start, Route: route,
	}
}

func (r *procRecorder) spawned(route string, p stdio.Process) {
	rec := r.record(route, p)
	r.mu.Lock()
	st := r.st
	if !r.bound {
		r.pending[rec.Key()] = rec
	}
	r.mu.Unlock()
	if st == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), procWriteTimeout)
	defer cancel()
	if err := st.PutProc(ctx, r.host, rec); err != nil && !errors.Is(err, store.ErrClosed) {
		r.log.Warn("stdio_proc_record_failed", "pid", p.Pid, "route", route, "error", err)
	}
}

func (r *procRecorder) ended(p stdio.Process) {
	key := r.record("", p).Key()
	r.mu.Lock()
	st := r.st
	delete(r.pending, key)
	r.mu.Unlock()
	if st == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), procWriteTimeout)
	defer cancel()
	if err := st.DeleteProc(ctx, r.host, key); err != nil && !errors.Is(err, store.ErrClosed) {
		r.log.Warn("stdio_proc_unrecord_failed", "pid", p.Pid, "error", err)
	}
}

// reapLeftovers is the first thing Run does with the store: it ends the
// processes that gateways which died on this host left running (their
// records are still there: a clean exit deletes them), then records this
// gateway's processes from now on. A store that keeps no process records
// (memory) leaves only the parent-death signal.
func (g *Gateway) reapLeftovers(ctx context.Context, st store.Store) {
	r := g.procs
	ps, ok := st.(store.Procs)
	if !ok || !r.ok {
		r.mu.Lock()
		r.bound, r.pending = true, nil
		r.mu.Unlock()
		return
	}
	recs, err := ps.ListProcs(ctx, r.host)
	if err != nil {
		g.log.Error("stdio_leftovers_not_listed", "error", err)
	}
	var dead []store.Proc
	for _, p := range recs {
		owner := stdio.Process{Pid: p.Gateway, Start: p.GatewayStart, Boot: p.Boot}
		if owner == r.self || stdio.Alive(owner) {
			continue // that gateway runs: the process is its own
		}
		dead = append(dead, p)
	}
	if len(dead) > 0 {
		procs := make([]stdio.Process, len(dead))
		for i, p := range dead {
			procs[i] = stdio.Process{Pid: p.Pid, Pgid: p.Pgid, Start: p.Start, Boot: p.Boot}
		}
		killed, err := stdio.Reap(procs)
		if err != nil {
			// Records stay, for the next start to try again.
			g.log.Error("stdio_leftovers_not_reaped", "error", err)
		}
		total := 0
		for i, p := range dead {
			if killed[i] > 0 {
				total += killed[i]
				g.log.Warn("stdio_leftover_reaped", "pid", p.Pid, "pgid", p.Pgid, "route", p.Route, "killed", killed[i])
			}
			if err == nil {
				if derr := ps.DeleteProc(ctx, r.host, p.Key()); derr != nil {
					g.log.Warn("stdio_proc_unrecord_failed", "pid", p.Pid, "error", derr)
				}
			}
		}
		g.log.Info("stdio_leftovers", "records", len(dead), "killed", total)
	}
	r.mu.Lock()
	r.bound, r.st = true, ps
	pending := r.pending
	r.pending = nil
	r.mu.Unlock()
	for _, rec := range pending {
		if err := ps.PutProc(ctx, r.host, rec); err != nil {
			g.log.Warn("stdio_proc_record_failed", "pid", rec.Pid, "route", rec.Route, "error", err)
		}
	}
}
