package limits

import (
	"context"
	"time"
)

// WindowOptions configures a [Window].
type WindowOptions struct {
	// MaxKeys bounds the number of keys tracked at once; a new key beyond it
	// is refused with ErrTooManyKeys. If zero (or negative),
	// DefaultMaxKeys.
	MaxKeys int
}

// A Window admits at most limit events per key in any interval of length
// window — exactly, not approximated by fixed buckets. It is meant for
// session creation, where limits are small (tens to thousands).
//
// An admission at time t counts against the half-open interval
// [t, t+window): it has left the window at t+window exactly. So with
// limit 3 per 10s, admissions at 0s, 1s and 2s refuse an event at 3s with a
// retry-after of 7s, and admit one at 10s.
//
// Each key keeps a ring of its admission times, allocated on its first
// admission and grown as needed up to limit entries (8 bytes each). Keys
// whose admissions have all left the window are dropped: each shard sweeps
// itself during Admit at most once per max(window, 1s) (capped at a minute),
// and a full table sweeps all shards (at most once a second) before refusing
// a new key. Sweep does the same on demand. No goroutine is involved.
//
// A nil *Window is the switched-off limiter: it admits everything and
// allocates nothing. A Window is safe for concurrent use.
type Window struct {
	limit  int
	window int64 // ns
	t      table[ring]
}

// NewWindow returns a limiter admitting at most limit events per key in
// any interval of length window. If limit or window is not positive there
// is no limit, and NewWindow returns nil, which admits everything.
func NewWindow(limit int, window time.Duration, opts WindowOptions) *Window {
	if limit <= 0 || window <= 0 {
		return nil
	}
	w := &Window{limit: limit, window: int64(window)}
	w.t.init(window, opts.MaxKeys, func() *ring { return new(ring) }, w.idle)
	return w
}

// Allow is Admit reduced to a yes or no: ok reports whether the event is
// admitted; when it is not, retryAfter is how long until it would be.
func (w *Window) Allow(key string, now time.Time) (ok bool, retryAfter time.Duration) {
	retryAfter, err := w.admit(key, now)
	return err == nil, retryAfter
}

// Admit records an event for key at now if fewer than limit events were
// admitted for key in (now-window, now]. Otherwise it returns [ErrLimited]
// and exactly how long until the oldest of them leaves the window (rounding
// it for a header is the caller's job: see [RetryAfterSeconds]).
//
// If key is new and MaxKeys keys are tracked, it returns [ErrTooManyKeys]
// and the window: by then every key tracked now can be dropped.
//
// ctx is unused: the state is in memory. It is there for [Limiter].
func (w *Window) Admit(_ context.Context, key string, now time.Time) (retryAfter time.Duration, err error) {
	return w.admit(key, now)
}

func (w *Window) admit(key string, now time.Time) (retryAfter time.Duration, err error) {
	if w == nil {
		return 0, nil
	}
	off := w.t.off(now)
	s, r, err := w.t.acquire(key, now, off)
	if err != nil {
		return time.Duration(w.window), err
	}
	wait, ok := r.admit(off, w.window, w.limit)
	if ok {
		s.changes.Add(1)
	}
	s.mu.Unlock()
	if !ok {
		return wait, ErrLimited
	}
	return 0, nil
}

// Undo gives back the slot of key's most recent admission still in the
// window, for a creation that was admitted and then failed. Undo cannot
// tell which admission it is undoing: pair it with exactly one successful
// Admit or Allow. Without such an admission it is harmless — it never
// creates a key and never goes below zero. Undo does not allocate; ctx is
// unused.
func (w *Window) Undo(_ context.Context, key string, now time.Time) {
	if w == nil {
		return
	}
	s, r := w.t.lookup(key)
	if r != nil {
		// An emptied ring is left for the sweep: dropping it here would
		// make an Admit, Undo, Admit cycle allocate.
		r.expire(w.t.off(now), w.window)
		if r.n > 0 {
			r.n-- // the newest admission
			s.changes.Add(1)
		}
	}
	s.mu.Unlock()
}

// Sweep drops every key whose admissions have all left the window at now
// and returns how many it dropped. Admit already sweeps, amortised; call
// Sweep to bound memory more tightly, e.g. from a periodic maintenance task.
func (w *Window) Sweep(now time.Time) int {
	if w == nil {
		return 0
	}
	return w.t.sweepAll(now)
}

// Len returns the number of keys tracked.
func (w *Window) Len() int {
	if w == nil {
		return 0
	}
	return int(w.t.keys.Load())
}

func (w *Window) idle(r *ring, _ time.Time, off int64) bool {
	return r.n == 0 || off-r.newest() >= w.window
}

// ring holds one key's admission times, as offsets from the table's base,
// oldest first starting at head. Recorded times never decrease: an event
// whose now is older than the newest admission (concurrent callers read the
// clock before taking the lock) is recorded at the newest admission's time,
// which keeps the ring sorted and only ever errs on the strict side.
type ring struct {
	t    []int64
	head int
	n    int
}

func (r *ring) newest() int64 {
	i := r.head + r.n - 1
	if i >= len(r.t) {
		i -= len(r.t)
	}
	return r.t[i]
}

// expire forgets admissions that have left the window at off.
func (r *ring) expire(off, window int64) {
	for r.n > 0 && off-r.t[r.head] >= window {
		r.head++
		if r.head == len(r.t) {
			r.head = 0
		}
		r.n--
	}
	if r.n == 0 {
		r.head = 0
	}
}

func (r *ring) admit(off, window int64, limit int) (wait time.Duration, ok bool) {
	r.expire(off, window)
	if r.n >= limit {
		return time.Duration(r.t[r.head] + window - off), false
	}
	if r.n > 0 {
		off = max(off, r.newest())
	}
	if r.n == len(r.t) {
		r.grow(limit)
	}
	i := r.head + r.n
	if i >= len(r.t) {
		i -= len(r.t)
	}
	r.t[i] = off
	r.n++
	return 0, true
}

// grow makes room for one more admission; r is full and below limit.
func (r *ring) grow(limit int) {
	t := make([]int64, min(max(8, 2*len(r.t)), limit))
	k := copy(t, r.t[r.head:])
	copy(t[k:], r.t[:r.head])
	r.t, r.head = t, 0
}
