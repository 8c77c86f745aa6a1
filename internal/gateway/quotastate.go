package gateway

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/interceptors/quota"
	"github.com/mcpgate/mcpgate/internal/store"
)

// Principal and tenant budgets with the embedded store: like the rate
// limits' snapshots (limits.go), each quota's in-memory budgets are
// restored once before serving and saved every flush_interval when they
// changed, and once more at shutdown, as "quota.<name>" in the
// store.StateStore. A kill -9 loses at most the last interval of usage.
// With Redis the budgets live there (Meters.Bind); with the memory store
// they live as long as the process.
type quotaState struct {
	meters *quota.Meters
	ss     store.StateStore
	log    *slog.Logger
	saved  map[string]uint64 // Version of each quota's budgets when saved
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
}

// bindQuotaState restores the budgets from ss and saves them from now on;
// nil when ss keeps no state.
func bindQuotaState(ctx context.Context, m *quota.Meters, st store.Store, interval time.Duration, log *slog.Logger) *quotaState {
	ss, ok := st.(store.StateStore)
	if !ok {
		return nil
	}
	m.KeepSessions() // sessions restored after a restart keep their budgets too
	q := &quotaState{meters: m, ss: ss, log: log, saved: map[string]uint64{}, stop: make(chan struct{}), done: make(chan struct{})}
	rctx, cancel := context.WithTimeout(ctx, rateStateTimeout)
	defer cancel()
	for name, l := range m.Locals() {
		data, err := ss.LoadState(rctx, "quota."+name)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err == nil {
			err = l.UnmarshalBinary(data)
		}
		if err != nil {
			// A changed quota, or a damaged snapshot: its budgets start
			// afresh rather than the gateway not starting.
			log.Warn("quota_state_not_restored", "quota", name, "error", err)
			continue
		}
		q.saved[name] = l.Version()
	}
	if interval <= 0 {
		interval = time.Second
	}
	go q.loop(interval)
	return q
}

func (q *quotaState) loop(interval time.Duration) {
	defer close(q.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-q.stop:
			if err := q.save(); err != nil {
				q.log.Error("quota_state_not_saved", "error", err)
			}
			return
		case <-t.C:
			err := q.save()
			switch {
			case err != nil && !failing:
				q.log.Error("quota_state_save_failed", "error", err)
			case err == nil && failing:
				q.log.Info("quota_state_save_recovered")
			}
			failing = err != nil
		}
	}
}

func (q *quotaState) save() error {
	ctx, cancel := context.WithTimeout(context.Background(), rateStateTimeout)
	defer cancel()
	locals := q.meters.Locals()
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(locals)) {
		l := locals[name]
		v := l.Version()
		if v == q.saved[name] {
			continue
		}
		data, err := l.MarshalBinary()
		if err == nil {
			err = q.ss.SaveState(ctx, "quota."+name, data)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		q.saved[name] = v
	}
	return errors.Join(errs...)
}

// close saves the last state; after the listeners drained, before the
// store closes.
func (q *quotaState) close() {
	if q == nil {
		return
	}
	q.once.Do(func() {
		close(q.stop)
		<-q.done
	})
}
