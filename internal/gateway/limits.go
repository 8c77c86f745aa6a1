package gateway

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/frontend"
	"github.com/mcpgate/mcpgate/internal/limits"
	"github.com/mcpgate/mcpgate/internal/store"
	redisstore "github.com/mcpgate/mcpgate/internal/store/redis"
)

// The rate limiters are built in New, because the frontend and the route
// chains hold them, but the store they may live in is opened only in Run
// (validate must not take a running gateway's file lock). So each limit
// starts as an in-memory limiter and is bound to the store in Run, before
// the first request:
//
//   - a shared store (Redis) gives each limit a twin in Redis that every
//     replica checks: one script call per check. The local limiter is
//     then only the fallback of fail-open.
//   - a store that keeps state (store.StateStore: the embedded file)
//     gets the local limiters' snapshots: restored once, saved every
//     flush_interval when they changed, and at shutdown.
//   - any other store (none today) leaves them local and unsaved.

// Names of the limits: in logs, in Redis keys (<prefix>ratelimit:<name>:<key>)
// and, as "limits.<name>", in a store.StateStore.
const (
	requestsName          = "requests"
	creationNameGlobal    = "creation.global"
	creationNameAddress   = "creation.per_address"
	creationNamePrincipal = "creation.per_principal"
)

const (
	rateStateTimeout = 10 * time.Second // one load or save of every limit
	storeFailOpen    = "fail-open"      // config.Store.OnUnavailable
)

// localLimiter is what limits.Window and limits.Buckets offer besides
// Admit: a snapshot, and a version to save it only when it changed.
type localLimiter interface {
	limits.Limiter
	Version() uint64
	MarshalBinary() ([]byte, error)
	UnmarshalBinary([]byte) error
}

// limiter is one rate limit of the gateway.
type limiter struct {
	name     string // in logs and, as "limits."+name, in a StateStore
	local    localLimiter
	share    func(*redisstore.Store) limits.Limiter // its twin in Redis
	failOpen bool
	log      *slog.Logger

	shared atomic.Pointer[sharedLimiter] // set by bind, for a shared store
	down   atomic.Bool                   // the shared store failed the last check
	saved  uint64                        // local's Version when last saved; the saver's
}

type sharedLimiter struct{ limits.Limiter }

var _ limits.UndoLimiter = (*limiter)(nil)

// Admit checks the shared limiter if there is one, else the local one.
// When the shared store cannot decide, fail-closed returns its error (the
// caller answers 503) and fail-open asks the local limiter, so that each
// replica still holds its own clients to the limit.
func (l *limiter) Admit(ctx context.Context, key string, now time.Time) (time.Duration, error) {
	sh := l.shared.Load()
	if sh == nil {
		return l.local.Admit(ctx, key, now)
	}
	retry, err := sh.Admit(ctx, key, now)
	if err == nil || limits.Refused(err) {
		if l.down.Load() && l.down.CompareAndSwap(true, false) {
			l.log.Info("rate_limit_store_recovered", "limit", l.name)
		}
		return retry, err
	}
	if ctx.Err() != nil {
		return 0, err // the request ended; no sign of an outage
	}
	if !l.down.Load() && l.down.CompareAndSwap(false, true) {
		// Once per outage: every check fails the same way until it ends.
		l.log.Error("rate_limit_store_unavailable", "limit", l.name, "fail_open", l.failOpen, "error", err)
	}
	if !l.failOpen {
		return 0, err
	}
	return l.local.Admit(ctx, key, now)
}

// Undo gives a creation slot back where it was most likely taken: the
// shared window, or the local one while there is none. (During a
// fail-open outage the shared Undo fails, and is logged, and the local
// slot stays taken until it leaves the window: the strict side.)
func (l *limiter) Undo(ctx context.Context, key string, now time.Time) {
	var u limits.UndoLimiter
	if sh := l.shared.Load(); sh != nil {
		u, _ = sh.Limiter.(limits.UndoLimiter)
	} else {
		u, _ = l.local.(limits.UndoLimiter)
	}
	if u != nil {
		u.Undo(ctx, key, now)
	}
}

// rateLimits are the gateway's rate limits, nil entries for those off.
type rateLimits struct {
	log      *slog.Logger
	requests *limiter
	// global, per_address, per_principal
	creation [3]*limiter

	// The saver of a StateStore.
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// newRateLimits builds the limits the configuration switches on, local.
func newRateLimits(cfg *config.Config, log *slog.Logger) *rateLimits {
	ss := cfg.Sessions
	open := cfg.Store.OnUnavailable == storeFailOpen
	r := &rateLimits{log: log}
	mk := func(name string, local localLimiter, share func(*redisstore.Store) limits.Limiter) *limiter {
		if limits.Off(local) {
			return nil
		}
		return &limiter{name: name, local: local, share: share, failOpen: open, log: log}
	}
	rr := ss.RequestRate
	r.requests = mk(requestsName, limits.NewBuckets(rr.PerSecond, rr.Burst, limits.BucketOptions{}),
		func(st *redisstore.Store) limits.Limiter {
			if b := st.NewBuckets(requestsName, rr.PerSecond, rr.Burst); b != nil {
				return b
			}
			return nil
		})
	window := func(name string, w config.Window) *limiter {
		return mk(name, limits.NewWindow(w.Limit, w.Window, limits.WindowOptions{}),
			func(st *redisstore.Store) limits.Limiter {
				if sw := st.NewWindow(name, w.Limit, w.Window); sw != nil {
					return sw
				}
				return nil
			})
	}
	var perAddress config.Window
	if p := ss.CreationRate.PerAddress; p != nil {
		perAddress = *p
	}
	r.creation = [3]*limiter{
		window(creationNameGlobal, ss.CreationRate.Global),
		window(creationNameAddress, perAddress),
		window(creationNamePrincipal, ss.CreationRate.PerPrincipal),
	}
	return r
}

// requestLimiter is the limiter of the request-rate stage; nil when off,
// so that the stage is left out of the chain.
func (r *rateLimits) requestLimiter() limits.Limiter {
	if r.requests == nil {
		return nil
	}
	return r.requests
}

// creationLimits are the frontend's creation windows; nil when off.
func (r *rateLimits) creationLimits() frontend.CreationLimits {
	w := func(l *limiter) limits.UndoLimiter {
		if l == nil {
			return nil
		}
		return l
	}
	return frontend.CreationLimits{Global: w(r.creation[0]), PerAddress: w(r.creation[1]), PerPrincipal: w(r.creation[2])}
}

func (r *rateLimits) all() []*limiter {
	out := make([]*limiter, 0, 4)
	for _, l := range append([]*limiter{r.requests}, r.creation[:]...) {
		if l != nil {
			out = append(out, l)
		}
	}
	return out
}

// bind moves the limits to st, before the gateway serves: into Redis for
// a shared store; for a store that keeps state, restoring the snapshots
// it holds and saving them every interval from now on (stop saves the
// last). It is called once.
func (r *rateLimits) bind(ctx context.Context, st store.Store, interval time.Duration) {
	if rs, ok := st.(*redisstore.Store); ok {
		for _, l := range r.all() {
			if sh := l.share(rs); sh != nil {
				l.shared.Store(&sharedLimiter{sh})
			}
		}
		return
	}
	ss, ok := st.(store.StateStore)
	if !ok || len(r.all()) == 0 {
		return
	}
	r.restore(ctx, ss)
	if interval <= 0 {
		interval = time.Second // config.Store.FlushInterval's default
	}
	r.stop, r.done = make(chan struct{}), make(chan struct{})
	go r.saveLoop(ss, interval)
}

// restore loads each limit's snapshot. A limit without one starts empty;
// so does one whose snapshot cannot be read, with a warning: a budget
// refilled early is better than a gateway that does not start.
func (r *rateLimits) restore(ctx context.Context, ss store.StateStore) {
	ctx, cancel := context.WithTimeout(ctx, rateStateTimeout)
	defer cancel()
	for _, l := range r.all() {
		data, err := ss.LoadState(ctx, "limits."+l.name)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err == nil {
			err = l.local.UnmarshalBinary(data)
		}
		if err != nil {
			r.log.Warn("rate_limit_state_not_restored", "limit", l.name, "error", err)
			continue
		}
		l.saved = l.local.Version()
		r.log.Debug("rate_limit_state_restored", "limit", l.name, "bytes", len(data))
	}
}

// saveLoop saves the limits that changed every interval until stop, then
// once more.
func (r *rateLimits) saveLoop(ss store.StateStore, interval time.Duration) {
	defer close(r.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-r.stop:
			if err := r.save(ss); err != nil {
				r.log.Error("rate_limit_state_not_saved", "error", err)
			}
			return
		case <-t.C:
			// Logged once per run of failures, like the store's own
			// flushes; each tick tries again.
			err := r.save(ss)
			switch {
			case err != nil && !failing:
				r.log.Error("rate_limit_state_save_failed", "error", err)
			case err == nil && failing:
				r.log.Info("rate_limit_state_save_recovered")
			}
			failing = err != nil
		}
	}
}

// save writes the snapshot of every limit whose state changed since it
// was last saved.
func (r *rateLimits) save(ss store.StateStore) error {
	ctx, cancel := context.WithTimeout(context.Background(), rateStateTimeout)
	defer cancel()
	var errs []error
	for _, l := range r.all() {
		// Read the version first: a change made while the snapshot is
		// taken may or may not be in it, and is saved next time anyway.
		v := l.local.Version()
		if v == l.saved {
			continue
		}
		data, err := l.local.MarshalBinary()
		if err == nil {
			err = ss.SaveState(ctx, "limits."+l.name, data)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		l.saved = v
	}
	return errors.Join(errs...)
}

// close stops saving and saves the last state. It runs after the
// listeners have drained, before the store closes.
func (r *rateLimits) close() {
	if r == nil || r.stop == nil {
		return
	}
	r.once.Do(func() {
		close(r.stop)
		<-r.done
	})
}
