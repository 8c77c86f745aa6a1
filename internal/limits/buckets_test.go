package limits

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

type bucketStep struct {
	at        time.Duration // since the start of the bubble
	key       string
	wantOK    bool
	wantRetry time.Duration
}

func TestBuckets(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		name  string
		rate  float64
		burst int
		steps []bucketStep
	}{
		{
			name: "2 per second, burst 3",
			rate: 2, burst: 3,
			steps: []bucketStep{
				{at: 0, wantOK: true},
				{at: 0, wantOK: true},
				{at: 0, wantOK: true},
				{at: 0, wantRetry: 500 * ms},
				{at: 250 * ms, wantRetry: 250 * ms},
				{at: 500 * ms, wantOK: true},
				{at: 500 * ms, wantRetry: 500 * ms},
				{at: 1500 * ms, wantOK: true}, // two tokens back
				{at: 1500 * ms, wantOK: true},
				{at: 1500 * ms, wantRetry: 500 * ms},
				{at: 10000 * ms, wantOK: true}, // never more than burst
				{at: 10000 * ms, wantOK: true},
				{at: 10000 * ms, wantOK: true},
				{at: 10000 * ms, wantRetry: 500 * ms},
			},
		},
		{
			name: "refused requests consume nothing",
			rate: 1, burst: 1,
			steps: []bucketStep{
				{at: 0, wantOK: true},
				{at: 0, wantRetry: 1000 * ms},
				{at: 100 * ms, wantRetry: 900 * ms},
				{at: 200 * ms, wantRetry: 800 * ms},
				{at: 999 * ms, wantRetry: 1 * ms},
				{at: 1000 * ms, wantOK: true},
				{at: 1000 * ms, wantRetry: 1000 * ms},
			},
		},
		{
			name: "keys are independent; the empty key is the global one",
			rate: 1, burst: 2,
			steps: []bucketStep{
				{at: 0, key: "alice", wantOK: true},
				{at: 0, key: "alice", wantOK: true},
				{at: 0, key: "alice", wantRetry: 1000 * ms},
				{at: 0, key: "bob", wantOK: true},
				{at: 0, key: "", wantOK: true},
				{at: 0, key: "", wantOK: true},
				{at: 0, key: "", wantRetry: 1000 * ms},
				{at: 0, key: "bob", wantOK: true},
				{at: 0, key: "bob", wantRetry: 1000 * ms},
			},
		},
		{
			name: "a burst below 1 is 1",
			rate: 10, burst: 0,
			steps: []bucketStep{
				{at: 0, wantOK: true},
				{at: 0, wantRetry: 100 * ms},
				{at: 100 * ms, wantOK: true},
			},
		},
		{
			name: "a rate below one per second",
			rate: 0.25, burst: 1,
			steps: []bucketStep{
				{at: 0, wantOK: true},
				{at: 1000 * ms, wantRetry: 3000 * ms},
				{at: 4000 * ms, wantOK: true},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := NewBuckets(tt.rate, tt.burst, BucketOptions{})
				start := time.Now()
				for i, s := range tt.steps {
					sleepUntil(start, s.at)
					ok, retry := b.Allow(s.key, time.Now())
					if ok != s.wantOK || retry != s.wantRetry {
						t.Errorf("step %d: Allow(%q) at %v = %v, %v; want %v, %v",
							i, s.key, s.at, ok, retry, s.wantOK, s.wantRetry)
					}
				}
			})
		})
	}
}

// Retrying after exactly retryAfter succeeds, for rates whose token times
// are not whole nanoseconds. retryAfter is rounded to the nanosecond, and
// rate.Limiter admits once the wait left truncates to 0ns, so it may be up
// to 2ns generous; no more.
func TestBucketsRetryAfterIsExact(t *testing.T) {
	for _, r := range []float64{0.3, 0.7, 1, 3, 7.5, 13, 123.456, 1000, 1e6} {
		for _, burst := range []int{1, 3} {
			t.Run(fmt.Sprintf("rate %v burst %d", r, burst), func(t *testing.T) {
				b := NewBuckets(r, burst, BucketOptions{})
				now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
				for i := range 200 {
					ok, retry := b.Allow("k", now)
					if ok {
						continue
					}
					if early := retry - 3*time.Nanosecond; early > 0 {
						if ok, _ := b.Allow("k", now.Add(early)); ok {
							t.Fatalf("event %d: admitted 3ns before retryAfter %v", i, retry)
						}
					}
					now = now.Add(retry)
					if ok, _ := b.Allow("k", now); !ok {
						t.Fatalf("event %d: refused after retryAfter %v", i, retry)
					}
					now = now.Add(time.Duration(i%7) * time.Millisecond)
				}
			})
		}
	}
}

// A session re-created by the same principal keeps its bucket: callers key
// by principal, so only the key matters, not who asks.
func TestBucketsRecreatedSessionKeepsBucket(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBuckets(1, 2, BucketOptions{})
		for range 2 {
			b.Allow("principal:alice", time.Now()) // session 1 drains the bucket
		}
		// session 1 ends, session 2 starts, same principal
		if ok, _ := b.Allow("principal:alice", time.Now()); ok {
			t.Error("a new session of the same principal got a full bucket")
		}
	})
}

// rate.Limiter moves its clock back when handed an older time and would
// then credit the same interval twice; the buckets clamp per key instead.
func TestBucketsOutOfOrderTimes(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := NewBuckets(1, 1, BucketOptions{})
	admitted := 0
	// Every other caller read the clock 50ms before its turn.
	for i := range 100 {
		now := t0.Add(time.Duration(i) * 100 * time.Millisecond)
		for _, at := range []time.Time{now, now.Add(-50 * time.Millisecond)} {
			ok, retry := b.Allow("k", at)
			if ok {
				admitted++
			} else if retry <= 0 {
				t.Fatalf("refused with retryAfter %v", retry)
			}
		}
	}
	// 1 token at t=0, then one per second over 9.9s.
	if admitted != 10 {
		t.Errorf("admitted %d over 10s at 1/s, burst 1; want 10", admitted)
	}
	// A stale time is refused with the wait from that time.
	b = NewBuckets(1, 1, BucketOptions{})
	b.Allow("k", t0.Add(10*time.Second))
	if ok, retry := b.Allow("k", t0.Add(9500*time.Millisecond)); ok || retry != 1500*time.Millisecond {
		t.Errorf("stale Allow = %v, %v; want false, 1.5s", ok, retry)
	}
}

// Many goroutines share one key under -race; in every interval the
// admissions stay within burst plus what the rate refilled.
func TestBucketsConcurrentStrict(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			rate       = 5.0
			burst      = 4
			goroutines = 32
			rounds     = 30
		)
		b := NewBuckets(rate, burst, BucketOptions{})
		start := time.Now()
		var (
			mu       sync.Mutex
			admitted []time.Duration
			wg       sync.WaitGroup
		)
		for g := range goroutines {
			wg.Go(func() {
				for r := range rounds {
					now := time.Now()
					if ok, _ := b.Allow("alice", now); ok {
						mu.Lock()
						admitted = append(admitted, now.Sub(start))
						mu.Unlock()
					}
					b.Allow(fmt.Sprint("own-", g), now)
					time.Sleep(time.Duration((g*37+r*11)%500) * time.Millisecond)
				}
			})
		}
		wg.Wait()
		slices.Sort(admitted)
		for i := range admitted {
			for j := i; j < len(admitted); j++ {
				n := float64(j - i + 1)
				allowed := burst + rate*(admitted[j]-admitted[i]).Seconds()
				if n > allowed+1e-9 {
					t.Fatalf("%v admitted between %v and %v, at most %v allowed", n, admitted[i], admitted[j], allowed)
				}
			}
		}
		if len(admitted) < burst {
			t.Errorf("only %d admitted", len(admitted))
		}
	})
}

func TestBucketsConcurrentSameInstant(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const burst = 10
		b := NewBuckets(1, burst, BucketOptions{})
		var (
			wg sync.WaitGroup
			mu sync.Mutex
			n  int
		)
		for range 200 {
			wg.Go(func() {
				if ok, _ := b.Allow("alice", time.Now()); ok {
					mu.Lock()
					n++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if n != burst {
			t.Errorf("admitted %d, want %d", n, burst)
		}
	})
}

func TestBucketsMaxKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const every = 2 * time.Second // burst 4 at 2 per second refills in 2s
		b := NewBuckets(2, 4, BucketOptions{MaxKeys: 2, IdleTimeout: every})
		start := time.Now()
		admit := func(key string) (time.Duration, error) { return b.Admit(t.Context(), key, time.Now()) }
		for _, k := range []string{"a", "b"} {
			if _, err := admit(k); err != nil {
				t.Fatalf("Admit(%q): %v", k, err)
			}
		}
		if d, err := admit("c"); !errors.Is(err, ErrTooManyKeys) || d != every {
			t.Errorf("Admit(c) with a full table = %v, %v; want %v, ErrTooManyKeys", d, err, every)
		}
		sleepUntil(start, time.Second)
		if _, err := admit("a"); err != nil {
			t.Errorf("Admit(a): %v", err)
		}
		if _, err := admit("c"); !errors.Is(err, ErrTooManyKeys) {
			t.Errorf("Admit(c) while a and b are tracked: %v, want ErrTooManyKeys", err)
		}
		// b is full and unused for 2s; a was used 1s ago. A full table
		// sweeps itself: no explicit Sweep needed.
		sleepUntil(start, every)
		if _, err := admit("c"); err != nil {
			t.Errorf("Admit(c) once b is idle: %v", err)
		}
		if _, err := admit("d"); !errors.Is(err, ErrTooManyKeys) {
			t.Errorf("Admit(d): %v, want ErrTooManyKeys", err)
		}
		if n := b.Len(); n != 2 {
			t.Errorf("Len = %d, want 2", n)
		}
	})
}

func TestBucketsSweep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const keys = 1000
		b := NewBuckets(10, 20, BucketOptions{IdleTimeout: 2 * time.Second}) // refills in 2s
		start := time.Now()
		for i := range keys {
			for range 1 + i%20 {
				b.Allow(fmt.Sprint("principal-", i), time.Now())
			}
		}
		sleepUntil(start, time.Second)
		for i := 0; i < keys; i += 2 {
			b.Allow(fmt.Sprint("principal-", i), time.Now())
		}
		if n := b.Len(); n != keys {
			t.Fatalf("Len = %d, want %d", n, keys)
		}
		sleepUntil(start, 2*time.Second-time.Nanosecond)
		if n := b.Sweep(time.Now()); n != 0 {
			t.Errorf("Sweep before any key was unused for 2s dropped %d", n)
		}
		sleepUntil(start, 2*time.Second)
		if n := b.Sweep(time.Now()); n != keys/2 {
			t.Errorf("Sweep after 2s dropped %d, want %d", n, keys/2)
		}
		sleepUntil(start, 3*time.Second)
		if n := b.Sweep(time.Now()); n != keys/2 {
			t.Errorf("Sweep after 3s dropped %d, want %d", n, keys/2)
		}
		if n := b.Len(); n != 0 {
			t.Errorf("Len after refill = %d, want 0", n)
		}
		for i := range b.t.shards {
			if m := b.t.shards[i].m; m != nil {
				t.Errorf("shard %d keeps an empty map", i)
			}
		}
	})
}

func TestBucketsDefaults(t *testing.T) {
	tests := []struct {
		name string
		opts BucketOptions
	}{
		{"zero", BucketOptions{}},
		{"negative", BucketOptions{MaxKeys: -1, IdleTimeout: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBuckets(1, 1, tt.opts)
			if b.t.max != DefaultMaxKeys || b.idleAfter != DefaultIdleTimeout {
				t.Errorf("MaxKeys %d, IdleTimeout %v; want %d, %v", b.t.max, b.idleAfter, DefaultMaxKeys, DefaultIdleTimeout)
			}
		})
	}
}

// A bucket is dropped only when full; an unused one that is still
// refilling stays, or its owner would get a fresh burst.
func TestBucketsSweepKeepsRefillingBuckets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBuckets(0.01, 10, BucketOptions{}) // refills in 1000s; idle after a minute
		for range 10 {
			b.Allow("alice", time.Now())
		}
		time.Sleep(10 * time.Minute)
		if n := b.Sweep(time.Now()); n != 0 {
			t.Errorf("Sweep dropped %d half-empty buckets", n)
		}
		for i := range 6 { // 600s at 0.01/s
			if ok, _ := b.Allow("alice", time.Now()); !ok {
				t.Fatalf("request %d refused after 10 minutes at 0.01/s", i)
			}
		}
		if ok, _ := b.Allow("alice", time.Now()); ok {
			t.Error("a 7th request was admitted: the bucket was refilled")
		}
	})
}

func TestBucketsAmortisedSweep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBuckets(1, 1, BucketOptions{IdleTimeout: time.Second}) // sweeps every second
		k1, k2 := sameShardKeys(t, b.t.shard)
		start := time.Now()
		b.Allow(k1, time.Now())
		sleepUntil(start, time.Second-time.Nanosecond)
		b.Allow(k2, time.Now())
		sleepUntil(start, 2*time.Second-2*time.Nanosecond) // k1 is idle, k2 not yet
		b.Allow(k2, time.Now())
		if n := b.Len(); n != 1 {
			t.Errorf("Len after an amortised sweep = %d, want 1", n)
		}
	})
}

func TestBucketsAllowDoesNotAllocate(t *testing.T) {
	b := NewBuckets(10, 5, BucketOptions{})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var admitted, refused int
	call := func() {
		now = now.Add(50 * time.Millisecond) // twice the rate
		if ok, _ := b.Allow("principal:alice", now); ok {
			admitted++
		} else {
			refused++
		}
	}
	call()
	if a := testing.AllocsPerRun(1000, call); a != 0 {
		t.Errorf("Allow allocates %v per call, want 0", a)
	}
	if admitted == 0 || refused == 0 {
		t.Errorf("admitted %d, refused %d: want both paths measured", admitted, refused)
	}
	// A key used below its rate finds its bucket full at every sweep; it
	// must stay tracked rather than be dropped and re-allocated.
	slow := func() {
		now = now.Add(time.Second)
		if ok, _ := b.Allow("principal:bob", now); !ok {
			t.Fatal("a request at a tenth of the rate was refused")
		}
	}
	slow()
	if a := testing.AllocsPerRun(100, slow); a != 0 {
		t.Errorf("Allow below the rate allocates %v per call, want 0", a)
	}
}
