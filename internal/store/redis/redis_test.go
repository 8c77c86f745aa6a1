package redisstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
	"github.com/mcpgate/mcpgate/internal/testutil/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		testenv.Report()
		os.Exit(code)
	}))
}

func TestConformance(t *testing.T) {
	t.Parallel()
	needRedis(t)
	tests := []struct {
		name     string
		interval time.Duration
	}{
		// Touches stay pending for the whole subtest: reads merge them.
		{"buffered", time.Hour},
		// The flusher runs all the time: reads race it.
		{"flushing", time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) store.Store {
				return openStore(t, Options{FlushInterval: tt.interval})
			})
		})
	}
}

// TestDurable runs the durability suite with a key prefix standing for
// the path: "reopen" is a new Store (a restarted gateway) on the same
// Redis, and "crash" a gateway process that exits without Close. What
// survives a Redis restart is Redis's persistence configuration's
// business, not the store's.
func TestDurable(t *testing.T) {
	t.Parallel()
	needRedis(t)
	storetest.RunDurable(t, func(t *testing.T, path string) store.Store {
		needRedis(t)
		p := pathPrefix(path)
		cleanupPrefix(t, p)
		s, err := Open(context.Background(), Options{Addr: redisAddr, Prefix: p, FlushInterval: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestRoundTrips pins what each method costs, as the package doc states.
func TestRoundTrips(t *testing.T) {
	s := openStore(t, Options{FlushInterval: time.Hour})
	ctx := t.Context()
	for i := range 10 {
		if err := s.Put(ctx, storetest.Record(fmt.Sprintf("s%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		want int64
		do   func() error
	}{
		{"Put", 1, func() error { return s.Put(ctx, storetest.Record("new")) }},
		{"Get", 1, func() error { _, err := s.Get(ctx, "s1"); return err }},
		{"Get missing", 1, func() error {
			if _, err := s.Get(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("Get(nope) = %v; want ErrNotFound", err)
			}
			return nil
		}},
		{"Touch", 0, func() error { return s.Touch(ctx, "s1", time.Now()) }},
		{"Delete", 1, func() error { return s.Delete(ctx, "s2") }},
		{"List", 2, func() error {
			rs, err := s.List(ctx)
			if err == nil && len(rs) != 10 {
				err = fmt.Errorf("List = %d records; want 10", len(rs))
			}
			return err
		}},
		{"Add", 1, func() error { _, err := s.Add(ctx, "c", 1); return err }},
		{"Publish", 1, func() error { return s.Publish(ctx, store.Event{Kind: "ended", SessionID: "s1"}) }},
		{"flush", 1, func() error { return s.flush(ctx) }},
		{"flush with nothing pending", 0, func() error { return s.flush(ctx) }},
		{"1000 Touches and their flush", 1, func() error {
			for i := range 1000 {
				if err := s.Touch(ctx, fmt.Sprintf("s%d", i), time.Now()); err != nil {
					return err
				}
			}
			return s.flush(ctx)
		}},
	}
	c := countRoundTrips(s)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := c.n.Load()
			if err := tt.do(); err != nil {
				t.Fatal(err)
			}
			if got := c.n.Load() - before; got != tt.want {
				t.Errorf("%s cost %d round trips; want %d", tt.name, got, tt.want)
			}
		})
	}
}

// TestTouchBatching checks that Touch costs no round trip and that a
// flush writes a thousand of them in one.
func TestTouchBatching(t *testing.T) {
	t.Parallel()
	s := openStore(t, Options{FlushInterval: 100 * time.Millisecond})
	raw := rawClient(t)
	ctx := t.Context()
	for _, id := range []string{"s1", "s2"} {
		if err := s.Put(ctx, storetest.Record(id)); err != nil {
			t.Fatal(err)
		}
	}
	c := countRoundTrips(s)
	at := storetest.Record("s1").LastActive.Add(time.Hour)
	for i := range 1000 {
		if err := s.Touch(ctx, fmt.Sprintf("s%d", 1+i%2), at.Add(time.Duration(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Touch(ctx, "ghost", at); err != nil {
		t.Fatal(err)
	}
	// Within the interval (10ms in, on a machine not too loaded), nothing
	// was sent yet; after it, one flush.
	eventually(t, 5*time.Second, "touches flushed", func() error {
		for id, want := range map[string]time.Time{"s1": at.Add(998), "s2": at.Add(999)} {
			got, ok := rawTouch(t, raw, s, id)
			if !ok || !got.Equal(want) {
				return fmt.Errorf("touch of %s in Redis = %v, %v; want %v", id, got, ok, want)
			}
		}
		return nil
	})
	if n := c.n.Load(); n > 2 {
		t.Errorf("1000 touches cost %d round trips; want at most 2", n)
	}
	if n, err := raw.Exists(ctx, s.keySession+"ghost").Result(); err != nil || n != 0 {
		t.Errorf("touch of a missing record created a key: EXISTS = %d, %v", n, err)
	}
	if _, err := raw.ZScore(ctx, s.keyIndex, "ghost").Result(); !errors.Is(err, redis.Nil) {
		t.Errorf("touch of a missing record entered the index: %v", err)
	}
	s.mu.Lock()
	n := len(s.pending) + len(s.flushing)
	s.mu.Unlock()
	if n != 0 {
		t.Errorf("%d touches still buffered after the flush", n)
	}
	// Idle: later ticks send nothing.
	before := c.n.Load()
	time.Sleep(300 * time.Millisecond)
	if n := c.n.Load() - before; n != 0 {
		t.Errorf("idle flushes cost %d round trips; want 0", n)
	}
}

// rawTouch reads the flushed touch of id straight from Redis.
func rawTouch(t testing.TB, raw *redis.Client, s *Store, id string) (time.Time, bool) {
	t.Helper()
	v, err := raw.HMGet(context.Background(), s.keySession+id, fieldTouchSec, fieldTouchNs).Result()
	if err != nil {
		t.Fatal(err)
	}
	ts, ok1 := v[0].(string)
	tn, ok2 := v[1].(string)
	if !ok1 || !ok2 {
		return time.Time{}, false
	}
	at, err := decodeTouch(ts, tn)
	if err != nil {
		t.Fatal(err)
	}
	return at, true
}

// TestKeyExpiry checks the safety net: each session key expires some
// margin after the session may have, its index entry with it, and a flush
// of its touches pushes both back.
func TestKeyExpiry(t *testing.T) {
	const margin = time.Minute
	s := openStore(t, Options{FlushInterval: time.Hour, ExpiryMargin: margin})
	raw := rawClient(t)
	ctx := t.Context()
	now := time.Now()
	tests := []struct {
		name    string
		rec     *store.Record
		wantTTL time.Duration // 0: no expiry
	}{
		{"idle only", &store.Record{IdleTimeout: 30 * time.Minute, Created: now}, 30*time.Minute + margin},
		{"TTL remaining longer", &store.Record{IdleTimeout: 30 * time.Minute, TTL: 24 * time.Hour, Created: now.Add(-time.Hour)}, 23*time.Hour + margin},
		{"idle longer than TTL remaining", &store.Record{IdleTimeout: 30 * time.Minute, TTL: 24 * time.Hour, Created: now.Add(-23*time.Hour - 50*time.Minute)}, 30*time.Minute + margin},
		{"TTL only", &store.Record{TTL: 2 * time.Hour, Created: now}, 2*time.Hour + margin},
		{"TTL already over", &store.Record{TTL: time.Hour, Created: now.Add(-2 * time.Hour)}, margin},
		{"never expires", &store.Record{Created: now}, 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.rec.ID = fmt.Sprintf("s%d", i)
			if err := s.Put(ctx, tt.rec); err != nil {
				t.Fatal(err)
			}
			checkExpiry(t, raw, s, tt.rec.ID, tt.wantTTL)
		})
	}

	t.Run("flush refreshes", func(t *testing.T) {
		id := "s0" // idle only
		if err := raw.PExpire(ctx, s.keySession+id, 5*time.Second).Err(); err != nil {
			t.Fatal(err)
		}
		if err := raw.ZAdd(ctx, s.keyIndex, redis.Z{Score: 1, Member: id}).Err(); err != nil {
			t.Fatal(err)
		}
		if err := s.Touch(ctx, id, time.Now()); err != nil {
			t.Fatal(err)
		}
		if err := s.flush(ctx); err != nil {
			t.Fatal(err)
		}
		checkExpiry(t, raw, s, id, 30*time.Minute+margin)
	})
	t.Run("Put without bounds clears the TTL", func(t *testing.T) {
		if err := s.Put(ctx, &store.Record{ID: "s0", Created: now}); err != nil {
			t.Fatal(err)
		}
		checkExpiry(t, raw, s, "s0", 0)
	})
}

// checkExpiry checks the key's TTL and its index score (Redis time plus
// that TTL) against want, give or take a few seconds; want 0 is none.
func checkExpiry(t *testing.T, raw *redis.Client, s *Store, id string, want time.Duration) {
	t.Helper()
	ctx := t.Context()
	ttl, err := raw.PTTL(ctx, s.keySession+id).Result()
	if err != nil {
		t.Fatal(err)
	}
	score, err := raw.ZScore(ctx, s.keyIndex, id).Result()
	if err != nil {
		t.Fatalf("index entry of %s: %v", id, err)
	}
	if want == 0 {
		if ttl != -1 || !strings.Contains(strconv.FormatFloat(score, 'f', -1, 64), "Inf") {
			t.Errorf("key TTL %v, index score %v; want no expiry (-1ns, +Inf)", ttl, score)
		}
		return
	}
	const slack = 5 * time.Second
	if ttl > want || ttl < want-slack {
		t.Errorf("key TTL = %v; want %v (less a few seconds)", ttl, want)
	}
	redisNow, err := raw.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	at := time.UnixMilli(int64(score))
	if wantAt := redisNow.Add(ttl); at.Sub(wantAt).Abs() > slack {
		t.Errorf("index score = %v; want about %v (Redis now + key TTL)", at, wantAt)
	}
}

// TestExpiredKeysLeaveList lets Redis expire a session's key and checks
// that List drops its index entry, and that a late touch recreates
// nothing.
func TestExpiredKeysLeaveList(t *testing.T) {
	s := openStore(t, Options{FlushInterval: time.Hour, ExpiryMargin: time.Millisecond})
	raw := rawClient(t)
	ctx := t.Context()
	for _, r := range []*store.Record{
		{ID: "short", IdleTimeout: 100 * time.Millisecond, Created: time.Now()},
		{ID: "long", IdleTimeout: time.Hour, Created: time.Now()},
	} {
		if err := s.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "short key expired", func() error {
		if n, err := raw.Exists(ctx, s.keySession+"short").Result(); err != nil || n != 0 {
			return fmt.Errorf("EXISTS = %d, %v", n, err)
		}
		return nil
	})
	if err := s.Touch(ctx, "short", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.flush(ctx); err != nil {
		t.Fatal(err)
	}
	rs, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].ID != "long" {
		t.Errorf("List = %v; want only long", ids(rs))
	}
	members, err := raw.ZRange(ctx, s.keyIndex, 0, -1).Result()
	if err != nil || len(members) != 1 || members[0] != "long" {
		t.Errorf("index = %q, %v; want [long]", members, err)
	}
	if n, _ := raw.Exists(ctx, s.keySession+"short").Result(); n != 0 {
		t.Error("a touch flushed after expiry recreated the key")
	}
}

// TestListPrunesOrphans removes a key behind the store's back (as
// eviction would) and checks that List skips it and drops its entry.
func TestListPrunesOrphans(t *testing.T) {
	s := openStore(t, Options{FlushInterval: time.Hour})
	raw := rawClient(t)
	ctx := t.Context()
	for _, id := range []string{"s1", "s2", "s3"} {
		if err := s.Put(ctx, storetest.Record(id)); err != nil {
			t.Fatal(err)
		}
	}
	if err := raw.Del(ctx, s.keySession+"s2").Err(); err != nil {
		t.Fatal(err)
	}
	// Not a hash: skipped with a warning, its entry kept.
	if err := raw.Set(ctx, s.keySession+"s3", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	rs, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(rs); len(got) != 1 || got[0] != "s1" {
		t.Errorf("List = %v; want [s1]", got)
	}
	members, err := raw.ZRange(ctx, s.keyIndex, 0, -1).Result()
	slices.Sort(members)
	if err != nil || strings.Join(members, ",") != "s1,s3" {
		t.Errorf("index after List = %q, %v; want [s1 s3]", members, err)
	}
}

func ids(rs []*store.Record) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

// TestPutOrderedWithFlush checks that a Touch followed by a Put is
// superseded by the Put even when a flush of that Touch runs concurrently
// with the Put, and that readers never pair one record with the other's
// LastActive.
func TestPutOrderedWithFlush(t *testing.T) {
	s := openStore(t, Options{FlushInterval: time.Hour})
	ctx := t.Context()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 100 {
		old := &store.Record{ID: "s1", Route: "old", LastActive: t0}
		if err := s.Put(ctx, old); err != nil {
			t.Fatal(err)
		}
		if err := s.Touch(ctx, "s1", t0.Add(5*time.Second)); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			if err := s.flush(ctx); err != nil {
				t.Error(err)
			}
		})
		for range 2 {
			wg.Go(func() {
				for {
					r, err := s.Get(ctx, "s1")
					if err != nil {
						t.Error(err)
						return
					}
					want := t0.Add(5 * time.Second)
					if r.Route == "new" {
						want = t0.Add(3 * time.Second)
					}
					if !r.LastActive.Equal(want) {
						t.Errorf("iteration %d: Get = %s record with LastActive %v; want %v", i, r.Route, r.LastActive, want)
						return
					}
					if r.Route == "new" {
						return
					}
				}
			})
		}
		if err := s.Put(ctx, &store.Record{ID: "s1", Route: "new", LastActive: t0.Add(3 * time.Second)}); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if err := s.flush(ctx); err != nil {
			t.Fatal(err)
		}
		r, err := s.Get(ctx, "s1")
		if err != nil || !r.LastActive.Equal(t0.Add(3*time.Second)) {
			t.Fatalf("iteration %d: after Put and flushes LastActive = %v, %v; want %v", i, r.LastActive, err, t0.Add(3*time.Second))
		}
	}
}

// TestCloseConcurrent closes while every method is in use: each call
// either works or reports ErrClosed, and nothing leaks or panics.
func TestCloseConcurrent(t *testing.T) {
	needRedis(t)
	p := testPrefix(t)
	s, err := Open(t.Context(), Options{Addr: redisAddr, Prefix: p, FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("s%d", i%4)
				var err error
				switch (g + i) % 7 {
				case 0:
					err = s.Put(ctx, storetest.Record(id))
				case 1:
					_, err = s.Get(ctx, id)
				case 2:
					err = s.Touch(ctx, id, time.Now())
				case 3:
					err = s.Delete(ctx, id)
				case 4:
					_, err = s.List(ctx)
				case 5:
					_, err = s.Add(ctx, "c", 1)
				case 6:
					err = s.Publish(ctx, store.Event{Kind: "ended", SessionID: id})
				}
				if errors.Is(err, store.ErrClosed) {
					return
				}
				if err != nil && !errors.Is(err, store.ErrNotFound) {
					t.Errorf("op %d: %v", (g+i)%7, err)
					return
				}
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	var closeErrs [3]error
	var cwg sync.WaitGroup
	for i := range closeErrs {
		cwg.Go(func() { closeErrs[i] = s.Close() })
	}
	cwg.Wait()
	wg.Wait()
	for i, err := range closeErrs {
		if err != nil {
			t.Errorf("Close #%d = %v", i, err)
		}
	}
}

// TestRedisDown points a store at a proxy and cuts it: every method fails
// promptly, Touch keeps buffering, and once the proxy is back the same
// store works again and writes what it buffered.
func TestRedisDown(t *testing.T) {
	t.Parallel()
	px := newProxy(t, redisAddr)
	var logs syncBuffer
	const timeout = 200 * time.Millisecond
	s := openStore(t, Options{
		Addr: px.Addr(), DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout,
		FlushInterval: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	raw := rawClient(t)
	ctx := t.Context()
	if err := s.Put(ctx, storetest.Record("s1")); err != nil {
		t.Fatal(err)
	}
	at := storetest.Record("s1").LastActive.Add(time.Hour)

	ops := []struct {
		name string
		do   func(ctx context.Context) error
	}{
		{"Put", func(ctx context.Context) error { return s.Put(ctx, storetest.Record("s2")) }},
		{"Get", func(ctx context.Context) error { _, err := s.Get(ctx, "s1"); return err }},
		{"Delete", func(ctx context.Context) error { return s.Delete(ctx, "gone") }},
		{"List", func(ctx context.Context) error { _, err := s.List(ctx); return err }},
		{"Add", func(ctx context.Context) error { _, err := s.Add(ctx, "c", 1); return err }},
		{"Publish", func(ctx context.Context) error { return s.Publish(ctx, store.Event{Kind: "ended"}) }},
	}
	failing := func(t *testing.T, mode string) {
		t.Helper()
		for _, op := range ops {
			for range 3 { // a fresh connection each time, and a pooled one
				start := time.Now()
				err := op.do(ctx)
				if err == nil || errors.Is(err, store.ErrClosed) {
					t.Fatalf("%s with Redis %s = %v; want a connection error", op.name, mode, err)
				}
				if d := time.Since(start); d > 2*time.Second {
					t.Errorf("%s with Redis %s took %v to fail; want about the %v timeouts", op.name, mode, d, timeout)
				}
			}
		}
	}
	working := func(t *testing.T) {
		t.Helper()
		eventually(t, 10*time.Second, "store working again", func() error {
			_, err := s.Add(ctx, "c", 0)
			return err
		})
		for _, op := range ops {
			if err := op.do(ctx); err != nil {
				t.Errorf("%s after restore: %v", op.name, err)
			}
		}
	}

	t.Run("refused", func(t *testing.T) {
		px.Cut()
		failing(t, "refusing connections")
		// Touch buffers; the failed flushes keep it.
		if err := s.Touch(ctx, "s1", at); err != nil {
			t.Fatalf("Touch with Redis down = %v; want nil (buffered)", err)
		}
		time.Sleep(200 * time.Millisecond)
		if got := s.pendingAt("s1"); !got.Equal(at) {
			t.Fatalf("pending touch after failed flushes = %v; want %v", got, at)
		}
		px.Restore()
		working(t)
		r, err := s.Get(ctx, "s1")
		if err != nil || !r.LastActive.Equal(at) {
			t.Fatalf("Get after restore = %v, %v; want LastActive %v", r, err, at)
		}
		eventually(t, 5*time.Second, "buffered touch written", func() error {
			if got, ok := rawTouch(t, raw, s, "s1"); !ok || !got.Equal(at) {
				return fmt.Errorf("touch in Redis = %v, %v", got, ok)
			}
			return nil
		})
	})
	t.Run("stalled", func(t *testing.T) {
		px.Stall()
		failing(t, "not answering")
		px.Restore()
		working(t)
	})
	t.Run("cut under load", func(t *testing.T) {
		// Cut while calls are in flight: they fail or succeed, none hangs.
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for g := range 4 {
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					start := time.Now()
					_ = ops[(g+i)%len(ops)].do(cctx)
					cancel()
					if d := time.Since(start); d > 2*time.Second {
						t.Errorf("%s took %v", ops[(g+i)%len(ops)].name, d)
					}
				}
			})
		}
		time.Sleep(50 * time.Millisecond)
		px.Cut()
		time.Sleep(100 * time.Millisecond)
		px.Restore()
		time.Sleep(50 * time.Millisecond)
		close(stop)
		wg.Wait()
		working(t)
	})
	if !strings.Contains(logs.String(), "store_touch_flush_failed") || !strings.Contains(logs.String(), "store_touch_flush_recovered") {
		t.Errorf("log lacks the flush failure and recovery:\n%s", logs.String())
	}
	if n := strings.Count(logs.String(), "store_touch_flush_failed"); n > 3 {
		t.Errorf("flush failure logged %d times; want once per outage:\n%s", n, logs.String())
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestOpenUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	start := time.Now()
	s, err := Open(t.Context(), Options{Addr: addr, DialTimeout: 200 * time.Millisecond})
	if err == nil {
		s.Close()
		t.Fatal("Open of a closed port succeeded")
	}
	if !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "connect") {
		t.Errorf("Open error %q does not say it could not connect to %s", err, addr)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Open took %v to fail", d)
	}
}

func TestOpenErrors(t *testing.T) {
	tests := []struct {
		name     string
		opts     Options
		contains string
	}{
		{"negative flush interval", Options{FlushInterval: -1}, "FlushInterval"},
		{"negative read timeout", Options{ReadTimeout: -1}, "ReadTimeout"},
		{"negative margin", Options{ExpiryMargin: -time.Second}, "ExpiryMargin"},
		{"negative db", Options{DB: -1}, "DB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(t.Context(), tt.opts)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.contains) {
				t.Errorf("Open error %q does not mention %s", err, tt.contains)
			}
		})
	}
	t.Run("cancelled context", func(t *testing.T) {
		needRedis(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		s, err := Open(ctx, Options{Addr: redisAddr})
		if err == nil {
			s.Close()
			t.Fatal("Open with a cancelled context succeeded")
		}
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Open = %v; want context.Canceled", err)
		}
	})
}

// TestPasswordNeverShown checks that the password stays out of formatted
// options, logs and errors (the test Redis has no password, so AUTH
// fails).
func TestPasswordNeverShown(t *testing.T) {
	needRedis(t)
	const secret = "hunter2-very-secret"
	opts := Options{Addr: redisAddr, Username: "gw", Password: secret}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("opening", "redis", opts)
	shown := []string{
		fmt.Sprintf("%v", opts), fmt.Sprintf("%+v", opts), fmt.Sprintf("%#v", opts), fmt.Sprintf("%s", opts),
		fmt.Sprint(&opts), logs.String(),
	}
	s, err := Open(t.Context(), opts)
	if err == nil {
		s.Close()
		t.Skip("the test Redis accepted the password; cannot check the error")
	}
	shown = append(shown, err.Error())
	for _, v := range shown {
		if strings.Contains(v, secret) {
			t.Errorf("password shown in %q", v)
		}
	}
	if !strings.Contains(shown[0], "REDACTED") || !strings.Contains(logs.String(), "REDACTED") {
		t.Errorf("formatted options do not say the password is set: %q, %q", shown[0], logs.String())
	}
}

func TestCodec(t *testing.T) {
	for _, at := range []time.Time{
		{}, time.Unix(0, 0), time.Unix(-1, 999999999),
		time.Date(2031, 5, 6, 7, 8, 9, 999999999, time.FixedZone("X", -7*3600)),
		time.Date(3000, 1, 1, 0, 0, 0, 1, time.UTC),
	} {
		sec, nsec := touchArgs(at)
		got, err := decodeTouch(strconv.FormatInt(sec, 10), strconv.FormatInt(nsec, 10))
		if err != nil || !got.Equal(at) {
			t.Errorf("touch %v round-trips to %v, %v", at, got, err)
		}
	}
	for _, v := range [][2]string{{"", "0"}, {"1", ""}, {"1", "1000000000"}, {"1", "-1"}, {"x", "1"}} {
		if _, err := decodeTouch(v[0], v[1]); err == nil {
			t.Errorf("decodeTouch(%q, %q) succeeded", v[0], v[1])
		}
	}
	for _, v := range []string{"", "[]", "{", `{"created":"yesterday"}`} {
		if _, err := decodeRecord("s1", []byte(v)); !errors.Is(err, errCorrupt) {
			t.Errorf("decodeRecord(%q) = %v; want errCorrupt", v, err)
		}
	}
	if got := idleMillis(time.Microsecond); got != 1 {
		t.Errorf("idleMillis(1µs) = %d; want 1 (a timeout never rounds to none)", got)
	}
}
