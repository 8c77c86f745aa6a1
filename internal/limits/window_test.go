package limits

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

type windowStep struct {
	at        time.Duration // since the start of the bubble
	key       string
	undo      bool // Undo instead of Admit
	wantOK    bool
	wantRetry time.Duration
}

// runWindow plays steps against a fresh Window in a synctest bubble.
func runWindow(t *testing.T, limit int, window time.Duration, steps []windowStep) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		w := NewWindow(limit, window, WindowOptions{})
		start := time.Now()
		for i, s := range steps {
			sleepUntil(start, s.at)
			if s.undo {
				w.Undo(t.Context(), s.key, time.Now())
				continue
			}
			ok, retry := w.Allow(s.key, time.Now())
			if ok != s.wantOK || retry != s.wantRetry {
				t.Errorf("step %d: Allow(%q) at %v = %v, %v; want %v, %v",
					i, s.key, s.at, ok, retry, s.wantOK, s.wantRetry)
			}
		}
	})
}

func TestWindowExact(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name  string
		steps []windowStep
	}{
		{
			// An admission at t leaves the window at t+window exactly.
			name: "limit 3 per 10s",
			steps: []windowStep{
				{at: 0, wantOK: true},
				{at: 1 * s, wantOK: true},
				{at: 2 * s, wantOK: true},
				{at: 3 * s, wantRetry: 7 * s},
				{at: 10*s - time.Nanosecond, wantRetry: time.Nanosecond},
				{at: 10 * s, wantOK: true},
				{at: 10 * s, wantRetry: 1 * s},
				{at: 10*s + 500*time.Millisecond, wantRetry: 500 * time.Millisecond},
				{at: 11 * s, wantOK: true},
				{at: 12 * s, wantOK: true},
				{at: 12 * s, wantRetry: 8 * s},
			},
		},
		{
			name: "no fixed buckets: a burst at the end of one window does not reset at the next",
			steps: []windowStep{
				{at: 9 * s, wantOK: true},
				{at: 9 * s, wantOK: true},
				{at: 9 * s, wantOK: true},
				{at: 11 * s, wantRetry: 8 * s},
				{at: 19 * s, wantOK: true},
			},
		},
		{
			name: "keys are independent; the empty key is the global one",
			steps: []windowStep{
				{at: 0, key: "a", wantOK: true},
				{at: 0, key: "a", wantOK: true},
				{at: 0, key: "a", wantOK: true},
				{at: 0, key: "a", wantRetry: 10 * s},
				{at: 1 * s, key: "b", wantOK: true},
				{at: 1 * s, key: "", wantOK: true},
				{at: 2 * s, key: "", wantOK: true},
				{at: 3 * s, key: "", wantOK: true},
				{at: 3 * s, key: "", wantRetry: 8 * s},
				{at: 3 * s, key: "b", wantOK: true},
				{at: 3 * s, key: "a", wantRetry: 7 * s},
			},
		},
		{
			name: "undo frees the newest slot",
			steps: []windowStep{
				{at: 0, wantOK: true},
				{at: 1 * s, wantOK: true},
				{at: 2 * s, wantOK: true},
				{at: 2 * s, undo: true},
				{at: 3 * s, wantOK: true},
				{at: 3 * s, wantRetry: 7 * s}, // the admission at 0 is still the oldest
			},
		},
		{
			name: "undo without an admission is harmless",
			steps: []windowStep{
				{at: 0, key: "other", undo: true},
				{at: 0, undo: true},
				{at: 0, wantOK: true},
				{at: 0, undo: true},
				{at: 0, undo: true}, // one more than admitted
				{at: 0, wantOK: true},
				{at: 0, wantOK: true},
				{at: 0, wantOK: true},
				{at: 0, wantRetry: 10 * s},
			},
		},
		{
			name: "undo after the admission left the window gives nothing back",
			steps: []windowStep{
				{at: 0, wantOK: true},
				{at: 5 * s, wantOK: true},
				{at: 6 * s, wantOK: true},
				{at: 10 * s, undo: true}, // the admission at 0 has left on its own; undoes 6s
				{at: 10 * s, wantOK: true},
				{at: 10 * s, wantOK: true},
				{at: 10 * s, wantRetry: 5 * s},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runWindow(t, 3, 10*s, tt.steps)
		})
	}
}

// TestWindowModel compares the Window with the definition, checked by brute
// force: an event is admitted iff fewer than limit admitted events lie in
// (now-window, now]. Random gaps exercise ring growth and wrap-around.
func TestWindowModel(t *testing.T) {
	tests := []struct {
		name  string
		limit int
	}{
		{"limit 1", 1},
		{"limit 3", 3},
		{"limit 8 (initial ring)", 8},
		{"limit 9 (one growth)", 9},
		{"limit 50", 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const window = time.Second
			rng := rand.New(rand.NewPCG(1, uint64(tt.limit)))
			w := NewWindow(tt.limit, window, WindowOptions{})
			now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			var admitted []time.Time
			for i := range 5000 {
				now = now.Add(time.Duration(rng.Int64N(int64(3 * window / time.Duration(tt.limit)))))
				n := 0
				for j := len(admitted) - 1; j >= 0 && now.Sub(admitted[j]) < window; j-- {
					n++
				}
				wantOK := n < tt.limit
				var wantRetry time.Duration
				if !wantOK {
					wantRetry = admitted[len(admitted)-tt.limit].Add(window).Sub(now)
				}
				ok, retry := w.Allow("k", now)
				if ok != wantOK || retry != wantRetry {
					t.Fatalf("event %d: Allow = %v, %v; want %v, %v", i, ok, retry, wantOK, wantRetry)
				}
				if ok {
					admitted = append(admitted, now)
				}
			}
		})
	}
}

// Concurrent callers read the clock before they take the lock, so a
// limiter sees times slightly out of order. A late, older time is recorded
// as the newest admission's, which can only make the limit stricter.
func TestWindowOutOfOrderTimes(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w := NewWindow(2, 10*time.Second, WindowOptions{})
	w.Allow("k", t0.Add(5*time.Second))
	w.Allow("k", t0.Add(4*time.Second)) // recorded at 5s
	if n := w.Sweep(t0.Add(14 * time.Second)); n != 0 {
		t.Errorf("Sweep at 14s dropped a key admitted at 5s")
	}
	ok, retry := w.Allow("k", t0.Add(14500*time.Millisecond))
	if ok || retry != 500*time.Millisecond {
		t.Errorf("Allow at 14.5s = %v, %v; want false, 500ms", ok, retry)
	}
	if ok, _ := w.Allow("k", t0.Add(15*time.Second)); !ok {
		t.Error("Allow at 15s refused")
	}
}

// Many goroutines hammer one key (and their own keys) under -race; the
// admissions of the shared key must never exceed limit in any window.
func TestWindowConcurrentStrict(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			limit      = 7
			window     = 10 * time.Second
			goroutines = 64
			rounds     = 40
		)
		w := NewWindow(limit, window, WindowOptions{})
		start := time.Now()
		var (
			mu       sync.Mutex
			admitted []time.Duration
			wg       sync.WaitGroup
		)
		for g := range goroutines {
			wg.Go(func() {
				own := fmt.Sprintf("client-%d", g)
				ownAdmitted := 0
				for r := range rounds {
					now := time.Now()
					if ok, retry := w.Allow("", now); ok {
						mu.Lock()
						admitted = append(admitted, now.Sub(start))
						mu.Unlock()
					} else if retry <= 0 || retry > window {
						t.Errorf("retryAfter %v outside (0, %v]", retry, window)
					}
					if ok, _ := w.Allow(own, now); ok {
						ownAdmitted++
					}
					time.Sleep(time.Duration((g*31+r*17)%1000) * time.Millisecond)
				}
				// Uncontended own key: rounds span under 40s, so at most
				// limit per started window.
				if ownAdmitted > 5*limit {
					t.Errorf("%s admitted %d times", own, ownAdmitted)
				}
			})
		}
		wg.Wait()
		slices.Sort(admitted)
		if len(admitted) < limit {
			t.Fatalf("only %d admitted", len(admitted))
		}
		for i := range len(admitted) - limit {
			if gap := admitted[i+limit] - admitted[i]; gap < window {
				t.Fatalf("%d admissions within %v (from %v to %v)", limit+1, gap, admitted[i], admitted[i+limit])
			}
		}
	})
}

// All goroutines arrive at the same instant: exactly limit win.
func TestWindowConcurrentSameInstant(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const limit = 10
		w := NewWindow(limit, time.Minute, WindowOptions{})
		var (
			wg sync.WaitGroup
			mu sync.Mutex
			n  int
		)
		for range 200 {
			wg.Go(func() {
				if ok, _ := w.Allow("", time.Now()); ok {
					mu.Lock()
					n++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if n != limit {
			t.Errorf("admitted %d, want %d", n, limit)
		}
	})
}

func TestWindowMaxKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const window = 10 * time.Second
		w := NewWindow(2, window, WindowOptions{MaxKeys: 2})
		start := time.Now()
		admit := func(key string) (time.Duration, error) { return w.Admit(t.Context(), key, time.Now()) }
		for _, k := range []string{"a", "b"} {
			if _, err := admit(k); err != nil {
				t.Fatalf("Admit(%q): %v", k, err)
			}
		}
		if d, err := admit("c"); !errors.Is(err, ErrTooManyKeys) || d != window {
			t.Errorf("Admit(c) with a full table = %v, %v; want %v, ErrTooManyKeys", d, err, window)
		}
		if ok, _ := w.Allow("c", time.Now()); ok {
			t.Error("Allow(c) with a full table admitted")
		}
		// Tracked keys still work and still hit their own limit.
		if _, err := admit("a"); err != nil {
			t.Errorf("Admit(a): %v", err)
		}
		if _, err := admit("a"); !errors.Is(err, ErrLimited) {
			t.Errorf("Admit(a) over its limit: %v, want ErrLimited", err)
		}
		sleepUntil(start, window/2)
		if _, err := admit("c"); !errors.Is(err, ErrTooManyKeys) {
			t.Errorf("Admit(c) while a and b are live: %v, want ErrTooManyKeys", err)
		}
		if n := w.Len(); n != 2 {
			t.Errorf("Len = %d, want 2", n)
		}
		// Once a and b have left the window, a full table sweeps itself:
		// no explicit Sweep needed.
		sleepUntil(start, window)
		if _, err := admit("c"); err != nil {
			t.Errorf("Admit(c) after the window: %v", err)
		}
		if n := w.Len(); n != 1 {
			t.Errorf("Len = %d, want 1", n)
		}
	})
}

func TestWindowDefaultMaxKeys(t *testing.T) {
	tests := []struct {
		name    string
		maxKeys int
		want    int64
	}{
		{"zero", 0, DefaultMaxKeys},
		{"negative", -1, DefaultMaxKeys},
		{"set", 5, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := NewWindow(1, time.Second, WindowOptions{MaxKeys: tt.maxKeys})
			if w.t.max != tt.want {
				t.Errorf("bound %d, want %d", w.t.max, tt.want)
			}
		})
	}
}

func TestWindowSweep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			window = 10 * time.Second
			keys   = 1000
		)
		w := NewWindow(3, window, WindowOptions{})
		start := time.Now()
		for i := range keys {
			w.Allow(fmt.Sprint("client-", i), time.Now())
			if i == keys/2 {
				sleepUntil(start, time.Second)
			}
		}
		if n := w.Len(); n != keys {
			t.Fatalf("Len = %d, want %d", n, keys)
		}
		sleepUntil(start, window)
		if n := w.Sweep(time.Now()); n != keys/2+1 {
			t.Errorf("Sweep at the window dropped %d, want %d", n, keys/2+1)
		}
		sleepUntil(start, window+time.Second)
		if n := w.Sweep(time.Now()); n != keys/2-1 {
			t.Errorf("second Sweep dropped %d, want %d", n, keys/2-1)
		}
		if n := w.Len(); n != 0 {
			t.Errorf("Len after the window = %d, want 0", n)
		}
		for i := range w.t.shards {
			if m := w.t.shards[i].m; m != nil {
				t.Errorf("shard %d keeps an empty map", i)
			}
		}
	})
}

// Admit sweeps the shard it locks once the sweep interval has passed.
func TestWindowAmortisedSweep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const window = 10 * time.Second
		w := NewWindow(3, window, WindowOptions{})
		k1, k2 := sameShardKeys(t, w.t.shard)
		start := time.Now()
		w.Allow(k1, time.Now())
		sleepUntil(start, window-time.Nanosecond)
		w.Allow(k2, time.Now())
		if n := w.Len(); n != 2 {
			t.Fatalf("Len = %d, want 2", n)
		}
		sleepUntil(start, 2*window-time.Nanosecond) // k1 is dead, k2 not yet
		w.Allow(k2, time.Now())
		if n := w.Len(); n != 1 {
			t.Errorf("Len after an amortised sweep = %d, want 1", n)
		}
	})
}

// sameShardKeys returns two keys that hash to the same shard.
func sameShardKeys[E any](t *testing.T, shard func(string) *shard[E]) (string, string) {
	t.Helper()
	first := shard("k0")
	for i := 1; i < 10000; i++ {
		if k := fmt.Sprint("k", i); shard(k) == first {
			return "k0", k
		}
	}
	t.Fatal("no two keys share a shard")
	return "", ""
}

// The hot path — a key already tracked — must not allocate, whether the
// event is admitted or refused.
func TestWindowAllowDoesNotAllocate(t *testing.T) {
	const limit = 10
	w := NewWindow(limit, time.Second, WindowOptions{})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	step := 50 * time.Millisecond // twice the rate: half admitted, half refused
	var admitted, refused int
	call := func() {
		now = now.Add(step)
		if ok, _ := w.Allow("203.0.113.7", now); ok {
			admitted++
		} else {
			refused++
		}
	}
	for range 100 { // grow the ring to its full size
		call()
	}
	if a := testing.AllocsPerRun(1000, call); a != 0 {
		t.Errorf("Allow allocates %v per call, want 0", a)
	}
	if admitted == 0 || refused == 0 {
		t.Errorf("admitted %d, refused %d: want both paths measured", admitted, refused)
	}
	if a := testing.AllocsPerRun(1000, func() { w.Undo(t.Context(), "203.0.113.7", now); call() }); a != 0 {
		t.Errorf("Undo+Allow allocates %v per call, want 0", a)
	}
}

// A key whose only admission was undone holds no state and is swept at
// once, even though its window has not passed.
func TestWindowUndoneKeyIsSwept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := NewWindow(3, time.Minute, WindowOptions{})
		w.Allow("a", time.Now())
		w.Undo(t.Context(), "a", time.Now())
		if n := w.Len(); n != 1 {
			t.Fatalf("Len = %d, want 1", n)
		}
		if n := w.Sweep(time.Now()); n != 1 {
			t.Errorf("Sweep dropped %d, want 1", n)
		}
	})
}
