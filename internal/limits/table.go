package limits

import (
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// numShards spreads keys over this many independently locked maps so that
// different keys rarely contend.
const numShards = 32

// Sweeps of one shard happen at most once per sweep interval: the window,
// or a bucket's IdleTimeout, clamped to these bounds, so a tiny period does
// not turn every call into a sweep and a huge one does not leave dead keys
// for hours.
const (
	minSweepEvery = time.Second
	maxSweepEvery = time.Minute
)

// table is the keyed state both limiters share: sharded maps from key to
// *E, a global bound on the number of keys, and amortised sweeping of keys
// whose state has decayed to the initial one (so dropping them changes
// nothing a caller can observe).
type table[E any] struct {
	base  time.Time // times are kept as offsets from base (monotonic when callers pass time.Now())
	seed  maphash.Seed
	every int64 // sweep interval, ns
	max   int64
	keys  atomic.Int64
	// nextFull is when a full table may next trigger a sweep of all shards.
	nextFull atomic.Int64
	newE     func() *E
	idle     func(e *E, now time.Time, off int64) bool
	shards   [numShards]shard[E]
}

type shard[E any] struct {
	mu   sync.Mutex
	m    map[string]*E // nil until the first key, and again once swept empty
	next int64         // offset at which this shard is next swept
	// changes counts the admissions and undos of this shard's keys, for
	// Version. Per shard, written under mu, so that counting costs no
	// contention between shards; atomic, so Version reads it without mu.
	changes atomic.Uint64
	_       [64]byte // keep neighbouring shards' locks off one cache line
}

func (t *table[E]) init(period time.Duration, maxKeys int, newE func() *E, idle func(*E, time.Time, int64) bool) {
	t.base = time.Now()
	t.seed = maphash.MakeSeed()
	t.every = int64(min(max(period, minSweepEvery), maxSweepEvery))
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	t.max = int64(maxKeys)
	t.newE = newE
	t.idle = idle
	// Offsets are negative for times before base; make the first call
	// of any time due for a sweep, which is cheap while the table is empty.
	t.nextFull.Store(math.MinInt64)
	for i := range t.shards {
		t.shards[i].next = math.MinInt64
	}
}

func (t *table[E]) off(now time.Time) int64 { return int64(now.Sub(t.base)) }

func (t *table[E]) shard(key string) *shard[E] {
	return &t.shards[maphash.String(t.seed, key)%numShards]
}

// acquire returns key's state with its shard locked, creating the state if
// the key is new and the table has room. The caller unlocks s.mu. On error
// nothing is locked.
func (t *table[E]) acquire(key string, now time.Time, off int64) (s *shard[E], e *E, err error) {
	s = t.shard(key)
	s.mu.Lock()
	if off >= s.next {
		t.sweepLocked(s, now, off)
	}
	if e = s.m[key]; e != nil {
		return s, e, nil
	}
	if !t.reserve() {
		// Dead keys in other shards may be holding the room; sweep them
		// all (at most once per interval), without holding this shard's
		// lock so that shards are only ever locked one at a time.
		s.mu.Unlock()
		if !t.sweepAllDue(now, off) {
			return nil, nil, ErrTooManyKeys
		}
		s.mu.Lock()
		if e = s.m[key]; e != nil {
			return s, e, nil
		}
		if !t.reserve() {
			s.mu.Unlock()
			return nil, nil, ErrTooManyKeys
		}
	}
	e = t.newE()
	if s.m == nil {
		s.m = make(map[string]*E)
	}
	s.m[key] = e
	return s, e, nil
}

// version sums the shards' change counts.
func (t *table[E]) version() uint64 {
	var v uint64
	for i := range t.shards {
		v += t.shards[i].changes.Load()
	}
	return v
}

// lookup returns key's state, if tracked, with its shard locked.
func (t *table[E]) lookup(key string) (*shard[E], *E) {
	s := t.shard(key)
	s.mu.Lock()
	return s, s.m[key]
}

func (t *table[E]) reserve() bool {
	for {
		n := t.keys.Load()
		if n >= t.max {
			return false
		}
		if t.keys.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (t *table[E]) sweepLocked(s *shard[E], now time.Time, off int64) (removed int) {
	for k, e := range s.m {
		if t.idle(e, now, off) {
			delete(s.m, k)
			removed++
		}
	}
	t.keys.Add(int64(-removed))
	if len(s.m) == 0 {
		s.m = nil // maps never shrink; let the GC have an emptied one back
	}
	s.next = off + t.every
	return removed
}

func (t *table[E]) sweepAll(now time.Time) (removed int) {
	off := t.off(now)
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		removed += t.sweepLocked(s, now, off)
		s.mu.Unlock()
	}
	return removed
}

// sweepAllDue sweeps every shard unless that was done less than
// minSweepEvery ago (or is being done now), and reports whether it swept.
// The short interval lets a full table take new keys soon after old ones
// die, while a flood of new keys costs at most one pass over the table per
// interval.
func (t *table[E]) sweepAllDue(now time.Time, off int64) bool {
	next := t.nextFull.Load()
	if off < next || !t.nextFull.CompareAndSwap(next, off+int64(minSweepEvery)) {
		return false
	}
	t.sweepAll(now)
	return true
}
