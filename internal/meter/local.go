package meter

import (
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxKeys is how many keys a Local meter tracks when MaxKeys is 0.
const DefaultMaxKeys = 100_000

const shards = 32

// Local is a budget per key in memory: the keys of one replica. Keys
// whose budget holds nothing any more are dropped by sweeps amortised over
// Reserve; at most MaxKeys are tracked, beyond which a new key is refused
// with ErrTooManyKeys rather than evicting one the budget holds back.
type Local struct {
	spec    Spec
	maxKeys int
	seed    maphash.Seed
	n       atomic.Int64 // keys tracked
	swept   atomic.Int64 // when every shard was last swept, Unix ns
	version atomic.Uint64
	shards  [shards]localShard
}

type localShard struct {
	mu    sync.Mutex
	keys  map[string]*Counters
	sweep int // len(keys) at which to sweep next
}

var _ Meter = (*Local)(nil)

// NewLocal returns a Local meter of spec tracking at most maxKeys keys
// (DefaultMaxKeys when 0).
func NewLocal(spec Spec, maxKeys int) *Local {
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	l := &Local{spec: spec, maxKeys: maxKeys, seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].keys = map[string]*Counters{}
		l.shards[i].sweep = 64
	}
	return l
}

// Spec is the meter's budget.
func (l *Local) Spec() *Spec { return &l.spec }

// with runs f on key's budget under its shard's lock, so that a sweep
// never drops a budget between its look-up and its use. A key not tracked
// is made when create is set; otherwise f gets nil.
func (l *Local) with(key string, now time.Time, create bool, f func(*Counters)) error {
	sh := &l.shards[l.shardOf(key)]
	if err := sh.with(l, key, now, create, f); err != ErrTooManyKeys {
		return err
	}
	// The table is full: sweep every shard (at most once a second), and
	// try once more.
	if last := l.swept.Load(); now.UnixNano()-last >= int64(time.Second) && l.swept.CompareAndSwap(last, now.UnixNano()) {
		for i := range l.shards {
			o := &l.shards[i]
			o.mu.Lock()
			o.sweepLocked(l, now)
			o.mu.Unlock()
		}
	}
	return sh.with(l, key, now, create, f)
}

func (l *Local) shardOf(key string) uint64 { return maphash.String(l.seed, key) % shards }

func (sh *localShard) with(l *Local, key string, now time.Time, create bool, f func(*Counters)) error {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	c := sh.keys[key]
	if c == nil && create {
		if len(sh.keys) >= sh.sweep {
			sh.sweepLocked(l, now)
		}
		if l.n.Load() >= int64(l.maxKeys) {
			return ErrTooManyKeys
		}
		c = NewCounters(&l.spec)
		sh.keys[key] = c
		l.n.Add(1)
	}
	f(c)
	return nil
}

// sweepLocked drops the shard's idle budgets (under sh.mu).
func (sh *localShard) sweepLocked(l *Local, now time.Time) {
	for k, c := range sh.keys {
		if c.idle(now) {
			delete(sh.keys, k)
			l.n.Add(-1)
		}
	}
	sh.sweep = max(64, 2*len(sh.keys))
}

// Reserve takes every charge from key's budget or none.
func (l *Local) Reserve(ctx context.Context, key string, charges []Charge, now time.Time) (r Reservation, err error) {
	r.key = key
	if werr := l.with(key, now, true, func(c *Counters) { r, err = c.Reserve(ctx, key, charges, now) }); werr != nil {
		return r, werr
	}
	if err == nil {
		l.version.Add(1)
	}
	return r, err
}

// Settle settles a reservation of key's budget (see Counters.Settle). A
// key dropped since (its budget had nothing left to give back) is settled
// against a fresh budget.
func (l *Local) Settle(ctx context.Context, r *Reservation, now time.Time) (err error) {
	if r.n == 0 || r.done {
		return nil
	}
	if werr := l.with(r.key, now, true, func(c *Counters) { err = c.Settle(ctx, r, now) }); werr != nil {
		r.done = true
		return werr
	}
	l.version.Add(1)
	return err
}

// Delete forgets key's budget (what it stood for is gone for good).
func (l *Local) Delete(key string) {
	sh := &l.shards[l.shardOf(key)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.keys[key]; ok {
		delete(sh.keys, key)
		l.n.Add(-1)
		l.version.Add(1)
	}
}

// Usage is counter i's usage under key at now (0 for a key not tracked).
func (l *Local) Usage(key string, i int, now time.Time) (n int64) {
	_ = l.with(key, now, false, func(c *Counters) {
		if c != nil {
			n = c.Usage(i, now)
		}
	})
	return n
}

// ResetIn is Counters.ResetIn of counter i under key (0 for a key not
// tracked).
func (l *Local) ResetIn(key string, i int, now time.Time) (d time.Duration) {
	_ = l.with(key, now, false, func(c *Counters) {
		if c != nil {
			d = c.ResetIn(i, now)
		}
	})
	return d
}
