package redisstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/limits"
	"github.com/mcpgate/mcpgate/internal/store"
)

// replicas opens n stores on the test Redis under one fresh prefix: n
// gateway replicas sharing a Redis.
func replicas(t testing.TB, n int) []*Store {
	t.Helper()
	p := testPrefix(t)
	out := make([]*Store, n)
	for i := range out {
		out[i] = openStore(t, Options{Prefix: p})
	}
	return out
}

// hammer calls admit from many goroutines on every replica at once and
// returns how many calls were admitted; any other error fails t.
func hammer(t *testing.T, lims []limits.Limiter, goroutines, calls int, key string) int64 {
	t.Helper()
	var admitted atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, l := range lims {
		for g := range goroutines {
			wg.Go(func() {
				<-start
				// Replica clocks that disagree by an hour: the limiters
				// keep Redis's time, not the caller's.
				now := time.Now().Add(time.Duration(i) * time.Hour)
				for range calls {
					_, err := l.Admit(context.Background(), key, now)
					switch {
					case err == nil:
						admitted.Add(1)
					case !errors.Is(err, limits.ErrLimited):
						t.Errorf("replica %d goroutine %d: %v", i, g, err)
						return
					}
				}
			})
		}
	}
	close(start)
	wg.Wait()
	return admitted.Load()
}

// Two replicas share one window exactly: however many concurrent checks
// race, the key gets limit admissions in all.
func TestWindowSharedExactly(t *testing.T) {
	rs := replicas(t, 2)
	const limit = 25
	w0 := rs[0].NewWindow("creation", limit, time.Minute)
	w1 := rs[1].NewWindow("creation", limit, time.Minute)
	if got := hammer(t, []limits.Limiter{w0, w1}, 8, 10, "203.0.113.7"); got != limit {
		t.Errorf("admitted %d across two replicas, want exactly %d", got, limit)
	}
	// A refusal says when the oldest admission leaves the window.
	retry, err := w1.Admit(t.Context(), "203.0.113.7", time.Now())
	if !errors.Is(err, limits.ErrLimited) || retry <= 50*time.Second || retry > time.Minute {
		t.Errorf("over the limit: %v, %v; want ErrLimited within (50s, 1m]", retry, err)
	}
	// Keys and names are independent.
	if _, err := w0.Admit(t.Context(), "198.51.100.1", time.Now()); err != nil {
		t.Errorf("another key: %v", err)
	}
	if _, err := rs[0].NewWindow("other", 1, time.Minute).Admit(t.Context(), "203.0.113.7", time.Now()); err != nil {
		t.Errorf("another limiter name: %v", err)
	}
}

func TestBucketsSharedExactly(t *testing.T) {
	rs := replicas(t, 2)
	const burst = 30
	// So slow that no token comes back during the test.
	b0 := rs[0].NewBuckets("requests", 0.001, burst)
	b1 := rs[1].NewBuckets("requests", 0.001, burst)
	if got := hammer(t, []limits.Limiter{b0, b1}, 8, 10, "principal:alice"); got != burst {
		t.Errorf("admitted %d across two replicas, want exactly %d", got, burst)
	}
	retry, err := b0.Admit(t.Context(), "principal:alice", time.Now())
	if !errors.Is(err, limits.ErrLimited) || retry <= 990*time.Second || retry > 1000*time.Second {
		t.Errorf("empty bucket: %v, %v; want ErrLimited within (990s, 1000s]", retry, err)
	}
}

// The window slides: an admission leaves it exactly a window later, and
// a retry after the returned duration is admitted.
func TestWindowSlides(t *testing.T) {
	t.Parallel()
	s := openStore(t, Options{})
	const window = 300 * time.Millisecond
	w := s.NewWindow("w", 2, window)
	ctx := t.Context()
	for i := range 2 {
		if _, err := w.Admit(ctx, "k", time.Now()); err != nil {
			t.Fatalf("admission %d: %v", i, err)
		}
	}
	retry, err := w.Admit(ctx, "k", time.Now())
	if !errors.Is(err, limits.ErrLimited) || retry <= 0 || retry > window {
		t.Fatalf("third: %v, %v; want ErrLimited within (0, %v]", retry, err, window)
	}
	time.Sleep(retry)
	if _, err := w.Admit(ctx, "k", time.Now()); err != nil {
		t.Errorf("after the retry-after: %v", err)
	}
	// The key expires once its last admission has left the window.
	raw := rawClient(t)
	key := s.limitPrefix() + "w:k"
	if ttl := raw.PTTL(ctx, key).Val(); ttl <= 0 || ttl > window {
		t.Errorf("key %s TTL %v, want within (0, %v]", key, ttl, window)
	}
	eventually(t, 2*time.Second, "idle window key expires", func() error {
		if n := raw.Exists(ctx, key).Val(); n != 0 {
			return fmt.Errorf("%s still exists", key)
		}
		return nil
	})
}

func TestBucketsRefill(t *testing.T) {
	s := openStore(t, Options{})
	b := s.NewBuckets("b", 20, 2) // a token per 50ms
	ctx := t.Context()
	for i := range 2 {
		if _, err := b.Admit(ctx, "k", time.Now()); err != nil {
			t.Fatalf("admission %d: %v", i, err)
		}
	}
	retry, err := b.Admit(ctx, "k", time.Now())
	if !errors.Is(err, limits.ErrLimited) || retry <= 0 || retry > 50*time.Millisecond {
		t.Fatalf("empty bucket: %v, %v; want ErrLimited within (0, 50ms]", retry, err)
	}
	time.Sleep(retry)
	if _, err := b.Admit(ctx, "k", time.Now()); err != nil {
		t.Errorf("after the retry-after: %v", err)
	}
	raw := rawClient(t)
	key := s.limitPrefix() + "b:k"
	if ttl := raw.PTTL(ctx, key).Val(); ttl <= 0 || ttl > 100*time.Millisecond {
		t.Errorf("key %s TTL %v, want within (0, 100ms]: it lives until the bucket is full", key, ttl)
	}
	eventually(t, 2*time.Second, "full bucket's key expires", func() error {
		if n := raw.Exists(ctx, key).Val(); n != 0 {
			return fmt.Errorf("%s still exists", key)
		}
		return nil
	})
}

func TestWindowUndo(t *testing.T) {
	rs := replicas(t, 2)
	w0 := rs[0].NewWindow("w", 1, time.Minute)
	w1 := rs[1].NewWindow("w", 1, time.Minute)
	ctx := t.Context()
	if _, err := w0.Admit(ctx, "k", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := w1.Admit(ctx, "k", time.Now()); !errors.Is(err, limits.ErrLimited) {
		t.Fatalf("second replica over the limit: %v", err)
	}
	// The creation failed: the slot comes back, for every replica.
	w0.Undo(ctx, "k", time.Now())
	if _, err := w1.Admit(ctx, "k", time.Now()); err != nil {
		t.Fatalf("after Undo: %v", err)
	}
	// Undo without an admission creates nothing and goes below nothing.
	w0.Undo(ctx, "never", time.Now())
	w0.Undo(ctx, "never", time.Now())
	if n := rawClient(t).Exists(ctx, rs[0].limitPrefix()+"w:never").Val(); n != 0 {
		t.Error("Undo created a key")
	}
	if _, err := w0.Admit(ctx, "never", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := w0.Admit(ctx, "never", time.Now()); !errors.Is(err, limits.ErrLimited) {
		t.Errorf("extra Undos credited the key: %v", err)
	}
}

// One check is one round trip, once the script is in Redis's cache.
func TestLimiterRoundTrips(t *testing.T) {
	s := openStore(t, Options{})
	w := s.NewWindow("w", 100, time.Minute)
	b := s.NewBuckets("b", 100, 100)
	ctx := t.Context()
	_, _ = w.Admit(ctx, "warm", time.Now())
	_, _ = b.Admit(ctx, "warm", time.Now())
	c := countRoundTrips(s)
	for _, check := range []struct {
		name string
		f    func()
	}{
		{"Window.Admit", func() { _, _ = w.Admit(ctx, "k", time.Now()) }},
		{"Window.Undo", func() { w.Undo(ctx, "k", time.Now()) }},
		{"Buckets.Admit", func() { _, _ = b.Admit(ctx, "k", time.Now()) }},
	} {
		before := c.n.Load()
		check.f()
		if n := c.n.Load() - before; n != 1 {
			t.Errorf("%s: %d round trips, want 1", check.name, n)
		}
	}
}

// While Redis is unreachable a check fails promptly with an error that is
// not a refusal (the gateway decides: 503, or its local limiter), Undo
// logs; once Redis answers again, so do the limiters.
func TestLimitersRedisDown(t *testing.T) {
	needRedis(t)
	px := newProxy(t, redisAddr)
	var logs bytes.Buffer
	var logMu sync.Mutex
	s := openStore(t, Options{
		Addr: px.Addr(), DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil)),
	})
	w := s.NewWindow("w", 10, time.Minute)
	b := s.NewBuckets("b", 10, 10)
	ctx := t.Context()
	if _, err := w.Admit(ctx, "k", time.Now()); err != nil {
		t.Fatal(err)
	}
	px.Cut()
	for _, l := range []limits.Limiter{w, b} {
		start := time.Now()
		_, err := l.Admit(ctx, "k", time.Now())
		if err == nil || limits.Refused(err) {
			t.Errorf("%T.Admit with Redis down: %v; want an error that is not a refusal", l, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%T.Admit took %v with Redis down", l, d)
		}
	}
	w.Undo(ctx, "k", time.Now())
	logMu.Lock()
	if !bytes.Contains(logs.Bytes(), []byte("rate_limit_undo_failed")) {
		t.Errorf("a failed Undo was not logged; log:\n%s", logs.String())
	}
	logMu.Unlock()
	px.Restore()
	eventually(t, 5*time.Second, "limiters answer again", func() error {
		if _, err := w.Admit(ctx, "k", time.Now()); err != nil {
			return err
		}
		_, err := b.Admit(ctx, "k", time.Now())
		return err
	})
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestLimitersClosedAndOff(t *testing.T) {
	s := openStore(t, Options{})
	w := s.NewWindow("w", 5, time.Minute)
	b := s.NewBuckets("b", 5, 5)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Admit(t.Context(), "k", time.Now()); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Window.Admit after Close: %v, want ErrClosed", err)
	}
	if _, err := b.Admit(t.Context(), "k", time.Now()); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Buckets.Admit after Close: %v, want ErrClosed", err)
	}
	w.Undo(t.Context(), "k", time.Now()) // logged, harmless

	if s.NewWindow("w", 0, time.Minute) != nil || s.NewWindow("w", 1, 0) != nil || s.NewBuckets("b", 0, 1) != nil {
		t.Error("a limit that is off must be a nil limiter")
	}
	var nw *Window
	var nb *Buckets
	if d, err := nw.Admit(t.Context(), "k", time.Now()); d != 0 || err != nil {
		t.Errorf("nil Window: %v, %v", d, err)
	}
	nw.Undo(t.Context(), "k", time.Now())
	if d, err := nb.Admit(t.Context(), "k", time.Now()); d != 0 || err != nil {
		t.Errorf("nil Buckets: %v, %v", d, err)
	}
}
