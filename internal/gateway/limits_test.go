package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/interceptors/ratelimit"
	"github.com/mcpgate/mcpgate/internal/limits"
	"github.com/mcpgate/mcpgate/internal/store/bolt"
	"github.com/mcpgate/mcpgate/internal/store/memory"
	redisstore "github.com/mcpgate/mcpgate/internal/store/redis"
	"github.com/mcpgate/mcpgate/internal/testutil/testenv"
)

// rateConfig is a configuration with every rate limit on: requests at
// rate/s with the given burst, and creation windows of limit per hour.
func rateConfig(rate float64, burst, limit int, mode string) *config.Config {
	c := &config.Config{}
	c.Sessions.RequestRate = config.RequestRate{PerSecond: rate, Burst: burst}
	w := config.Window{Limit: limit, Window: time.Hour}
	c.Sessions.CreationRate = config.CreationRate{Global: w, PerAddress: &w, PerPrincipal: w}
	c.Store.OnUnavailable = mode
	return c
}

// rateLog records the messages logged, for tests that count them.
type rateLog struct {
	mu   sync.Mutex
	msgs []string
}

func (l *rateLog) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(rateLogWriter(func(p []byte) (int, error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.msgs = append(l.msgs, string(p))
		return len(p), nil
	}), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (l *rateLog) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if strings.Contains(m, "msg="+msg+" ") {
			n++
		}
	}
	return n
}

type rateLogWriter func([]byte) (int, error)

func (f rateLogWriter) Write(p []byte) (int, error) { return f(p) }

// drain admits key on l until it refuses and returns how many it admitted.
func drainLimiter(t *testing.T, l limits.Limiter, key string) int {
	t.Helper()
	for n := 0; ; n++ {
		_, err := l.Admit(t.Context(), key, time.Now())
		if errors.Is(err, limits.ErrLimited) {
			return n
		}
		if err != nil {
			t.Fatalf("Admit(%q): %v", key, err)
		}
		if n > 10_000 {
			t.Fatalf("Admit(%q) never refuses", key)
		}
	}
}

// A limit that is off is nil all the way: the request stage is left out
// of the chain and the frontend skips the window.
func TestRateLimitsOff(t *testing.T) {
	r := newRateLimits(&config.Config{}, slog.New(slog.DiscardHandler))
	if r.requestLimiter() != nil || ratelimit.New(r.requestLimiter()) != nil {
		t.Error("request rate off, but a limiter or stage exists")
	}
	c := r.creationLimits()
	if c.Global != nil || c.PerAddress != nil || c.PerPrincipal != nil {
		t.Errorf("creation windows off, but got %+v", c)
	}
	st := memory.New()
	defer st.Close()
	r.bind(t.Context(), st, time.Second)
	if r.stop != nil {
		t.Error("a saver runs with nothing to save")
	}
	r.close()
}

// rateSaveCounter counts SaveState calls per name.
type rateSaveCounter struct {
	*memory.Store
	mu    sync.Mutex
	saves map[string]int
}

func (c *rateSaveCounter) SaveState(ctx context.Context, name string, data []byte) error {
	c.mu.Lock()
	c.saves[name]++
	c.mu.Unlock()
	return c.Store.SaveState(ctx, name, data)
}

func (c *rateSaveCounter) count(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.saves[name]
}

// The state is saved every interval if it changed since the last save,
// only then, and once more at close.
func TestRateStateSavedWhenChanged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &rateSaveCounter{Store: memory.New(), saves: map[string]int{}}
		defer st.Close()
		r := newRateLimits(rateConfig(0.001, 10, 10, "fail-closed"), slog.New(slog.DiscardHandler))
		r.bind(t.Context(), st, time.Second)
		want := func(what string, requests, perAddress int) {
			t.Helper()
			synctest.Wait()
			if got := st.count("limits.requests"); got != requests {
				t.Errorf("%s: %d saves of the request buckets, want %d", what, got, requests)
			}
			if got := st.count("limits.creation.per_address"); got != perAddress {
				t.Errorf("%s: %d saves of the per-address window, want %d", what, got, perAddress)
			}
		}
		time.Sleep(3 * time.Second)
		want("nothing happened", 0, 0)

		_, _ = r.requestLimiter().Admit(t.Context(), "principal:alice", time.Now())
		time.Sleep(time.Second)
		want("a request admitted", 1, 0)
		time.Sleep(5 * time.Second)
		want("nothing since", 1, 0)

		// A refusal changes nothing; an admission and its undo do.
		for range 11 {
			_, _ = r.requestLimiter().Admit(t.Context(), "principal:bob", time.Now())
		}
		time.Sleep(time.Second)
		want("bob's burst", 2, 0)
		_, _ = r.requestLimiter().Admit(t.Context(), "principal:bob", time.Now())
		time.Sleep(time.Second)
		want("bob refused", 2, 0)

		c := r.creationLimits()
		_, _ = c.PerAddress.Admit(t.Context(), "203.0.113.7", time.Now())
		c.PerAddress.Undo(t.Context(), "203.0.113.7", time.Now())
		time.Sleep(time.Second)
		want("a creation admitted and undone", 2, 1)

		// Close saves what changed since the last tick, at once.
		_, _ = r.requestLimiter().Admit(t.Context(), "principal:carol", time.Now())
		r.close()
		want("closed", 3, 1)
		r.close()
		time.Sleep(5 * time.Second)
		want("after close", 3, 1)
	})
}

func openRateBolt(t *testing.T, path string) *bolt.Store {
	t.Helper()
	st, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// A clean restart on the embedded store: every limit continues where it
// was, and a budget that was used up stays used up.
func TestRateStateRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions.db")
	cfg := rateConfig(0.001, 3, 2, "fail-closed")
	st := openRateBolt(t, path)
	r := newRateLimits(cfg, slog.New(slog.DiscardHandler))
	r.bind(t.Context(), st, time.Hour)
	if n := drainLimiter(t, r.requestLimiter(), "principal:alice"); n != 3 {
		t.Fatalf("burst %d, want 3", n)
	}
	c := r.creationLimits()
	if n := drainLimiter(t, c.PerAddress, "203.0.113.7"); n != 2 {
		t.Fatalf("creations %d, want 2", n)
	}
	r.close()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st = openRateBolt(t, path)
	defer st.Close()
	r = newRateLimits(cfg, slog.New(slog.DiscardHandler))
	r.bind(t.Context(), st, time.Hour)
	defer r.close()
	retry, err := r.requestLimiter().Admit(t.Context(), "principal:alice", time.Now())
	if !errors.Is(err, limits.ErrLimited) || retry < 900*time.Second {
		t.Errorf("alice after restart: %v, %v; want refused for about 1000s", retry, err)
	}
	c = r.creationLimits()
	if _, err := c.PerAddress.Admit(t.Context(), "203.0.113.7", time.Now()); !errors.Is(err, limits.ErrLimited) {
		t.Errorf("address after restart: %v, want refused", err)
	}
	// Each window has its own state: the gateway-wide one saw nothing.
	if _, err := c.Global.Admit(t.Context(), "", time.Now()); err != nil {
		t.Errorf("gateway-wide window after restart: %v", err)
	}
	if n := drainLimiter(t, r.requestLimiter(), "principal:bob"); n != 3 {
		t.Errorf("a fresh key after restart: burst %d, want 3", n)
	}
}

// State that cannot be read is logged and the limit starts empty: the
// gateway still starts.
func TestRateStateCorrupt(t *testing.T) {
	st := memory.New()
	defer st.Close()
	if err := st.SaveState(t.Context(), "limits.requests", []byte("not a snapshot")); err != nil {
		t.Fatal(err)
	}
	var log rateLog
	r := newRateLimits(rateConfig(0.001, 3, 2, "fail-closed"), log.logger())
	r.bind(t.Context(), st, time.Hour)
	defer r.close()
	if n := log.count("rate_limit_state_not_restored"); n != 1 {
		t.Errorf("logged %d rate_limit_state_not_restored, want 1", n)
	}
	if n := drainLimiter(t, r.requestLimiter(), "principal:alice"); n != 3 {
		t.Errorf("burst after a corrupt snapshot %d, want 3", n)
	}
}

// rateCrashEnv, set to a store path in a child's environment, makes
// TestRateStateCrash play the gateway that is killed.
const rateCrashEnv = "MCPGATE_GATEWAY_RATE_CRASH_PATH"

const (
	rateCrashInterval = 100 * time.Millisecond
	rateCrashBefore   = 20 // admissions a full interval before the crash
	rateCrashAfter    = 20 // admissions just before it
	rateCrashMarker   = "gateway rate state test: crashing now"
	rateCrashExit     = 17
)

// TestRateStateCrash kills a process that uses the limits (os.Exit, no
// shutdown: what kill -9 leaves) and restores them from its store: a crash
// loses at most the last flush interval of limiter state. Admissions made
// more than an interval before the crash are all in the restored state;
// the ones just before it may be lost, never more than were made.
func TestRateStateCrash(t *testing.T) {
	cfg := rateConfig(0.0001, 1000, 1000, "fail-closed")
	if path := os.Getenv(rateCrashEnv); path != "" {
		st := openRateBolt(t, path)
		r := newRateLimits(cfg, slog.New(slog.DiscardHandler))
		r.bind(t.Context(), st, rateCrashInterval)
		c := r.creationLimits()
		admit := func(n int) {
			for range n {
				if _, err := r.requestLimiter().Admit(t.Context(), "principal:alice", time.Now()); err != nil {
					t.Fatal(err)
				}
				if _, err := c.PerAddress.Admit(t.Context(), "203.0.113.7", time.Now()); err != nil {
					t.Fatal(err)
				}
			}
		}
		admit(rateCrashBefore)
		// Two intervals, and slack for a loaded machine: the saver has
		// written these by then.
		time.Sleep(2*rateCrashInterval + 250*time.Millisecond)
		admit(rateCrashAfter)
		fmt.Println(rateCrashMarker)
		_ = os.Stdout.Sync()
		os.Exit(rateCrashExit)
	}

	path := filepath.Join(t.TempDir(), "sessions.db")
	pattern := "^" + regexp.QuoteMeta(t.Name()) + "$"
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run="+pattern, "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), rateCrashEnv+"="+path)
	out, err := cmd.CombinedOutput()
	if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != rateCrashExit || !bytes.Contains(out, []byte(rateCrashMarker)) {
		t.Fatalf("child %v: %v (want exit status %d after %q); output:\n%s", cmd.Args, err, rateCrashExit, rateCrashMarker, out)
	}

	st := openRateBolt(t, path)
	defer st.Close()
	r := newRateLimits(cfg, slog.New(slog.DiscardHandler))
	r.bind(t.Context(), st, time.Hour)
	defer r.close()
	for _, l := range []struct {
		name string
		l    limits.Limiter
		key  string
	}{
		{"request buckets", r.requestLimiter(), "principal:alice"},
		{"per-address window", r.creationLimits().PerAddress, "203.0.113.7"},
	} {
		used := 1000 - drainLimiter(t, l.l, l.key)
		if used < rateCrashBefore || used > rateCrashBefore+rateCrashAfter {
			t.Errorf("%s: %d admissions restored, want between %d (all but the last interval's) and %d", l.name, used, rateCrashBefore, rateCrashBefore+rateCrashAfter)
		} else {
			t.Logf("%s: %d admissions restored of %d (%d made within the last interval)", l.name, used, rateCrashBefore+rateCrashAfter, rateCrashAfter)
		}
	}
}

// fakeSharedLimiter stands for a limiter in a shared store.
type fakeSharedLimiter struct {
	err   atomic.Pointer[error]
	undos atomic.Int64
}

func (f *fakeSharedLimiter) Admit(context.Context, string, time.Time) (time.Duration, error) {
	if e := f.err.Load(); e != nil {
		return time.Second, *e
	}
	return 0, nil
}

func (f *fakeSharedLimiter) Undo(context.Context, string, time.Time) { f.undos.Add(1) }

func (f *fakeSharedLimiter) fail(err error) { f.err.Store(&err) }

// While the shared store fails, fail-closed refuses (the caller answers
// 503) and fail-open asks the local limiter; refusals pass through as
// they are; the outage and the recovery are logged once each.
func TestRateLimitFailModes(t *testing.T) {
	down := errors.New("dial tcp: connection refused")
	for _, mode := range []string{"fail-closed", "fail-open"} {
		t.Run(mode, func(t *testing.T) {
			var log rateLog
			r := newRateLimits(rateConfig(0.001, 2, 2, mode), log.logger())
			sh := &fakeSharedLimiter{}
			l := r.requests
			l.shared.Store(&sharedLimiter{sh})
			req := r.requestLimiter()
			ctx := t.Context()
			if _, err := req.Admit(ctx, "k", time.Now()); err != nil {
				t.Fatal(err)
			}
			sh.fail(limits.ErrLimited)
			if _, err := req.Admit(ctx, "k", time.Now()); !errors.Is(err, limits.ErrLimited) {
				t.Errorf("shared refusal: %v", err)
			}
			sh.fail(down)
			var admitted, refused int
			for range 5 {
				_, err := req.Admit(ctx, "k", time.Now())
				switch {
				case err == nil:
					admitted++
				case errors.Is(err, limits.ErrLimited):
					refused++
				case errors.Is(err, down):
					if mode == "fail-open" {
						t.Errorf("fail-open returned the store's error")
					}
				default:
					t.Errorf("unexpected error %v", err)
				}
			}
			if mode == "fail-closed" && admitted+refused != 0 {
				t.Errorf("fail-closed decided %d checks without its store", admitted+refused)
			}
			if mode == "fail-open" && (admitted != 2 || refused != 3) {
				t.Errorf("fail-open: admitted %d, refused %d; want the local burst (2) and 3 refusals", admitted, refused)
			}
			// A request that ended is no sign of an outage.
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			sh.fail(context.Canceled)
			if _, err := req.Admit(cctx, "k", time.Now()); err == nil {
				t.Error("a cancelled check was admitted")
			}
			sh.err.Store(nil)
			for range 3 {
				if _, err := req.Admit(ctx, "k", time.Now()); err != nil {
					t.Errorf("after recovery: %v", err)
				}
			}
			if n := log.count("rate_limit_store_unavailable"); n != 1 {
				t.Errorf("outage logged %d times, want 1", n)
			}
			if n := log.count("rate_limit_store_recovered"); n != 1 {
				t.Errorf("recovery logged %d times, want 1", n)
			}
			// Undo goes to the shared window.
			r.creation[1].shared.Store(&sharedLimiter{sh})
			r.creationLimits().PerAddress.Undo(ctx, "203.0.113.7", time.Now())
			if sh.undos.Load() != 1 {
				t.Errorf("shared Undo called %d times, want 1", sh.undos.Load())
			}
		})
	}
}

// The test Redis, as in the store's own tests: MCPGATE_TEST_REDIS_ADDR
// or 127.0.0.1:6379; without one the test skips (TestMain says so),
// except under CI=true.
var gatewayRedisAddr = testenv.RedisAddr()

// redisReplicas opens n stores on the test Redis under one fresh prefix,
// whose keys are deleted when t ends.
func redisReplicas(t *testing.T, n int) []*redisstore.Store {
	t.Helper()
	testenv.Redis(t)
	c := redis.NewClient(&redis.Options{Addr: gatewayRedisAddr, Protocol: 2, DisableIdentity: true, MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = c.Close() })
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	prefix := "mcpgate-test:" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		keys, _ := c.Keys(ctx, prefix+"*").Result()
		if len(keys) > 0 {
			_ = c.Unlink(ctx, keys...).Err()
		}
	})
	out := make([]*redisstore.Store, n)
	for i := range out {
		st, err := redisstore.Open(t.Context(), redisstore.Options{Addr: gatewayRedisAddr, Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		out[i] = st
	}
	return out
}

// Two gateway replicas on one Redis share every limit exactly: the
// request budget and the creation windows are the cluster's.
func TestRateLimitsSharedByReplicas(t *testing.T) {
	stores := redisReplicas(t, 2)
	cfg := rateConfig(0.001, 40, 30, "fail-closed")
	var rs []*rateLimits
	for _, st := range stores {
		r := newRateLimits(cfg, slog.New(slog.DiscardHandler))
		r.bind(t.Context(), st, time.Second)
		t.Cleanup(r.close)
		rs = append(rs, r)
	}
	count := func(pick func(*rateLimits) limits.Limiter, key string) int64 {
		var admitted atomic.Int64
		var wg sync.WaitGroup
		for _, r := range rs {
			for range 8 {
				wg.Go(func() {
					for range 10 {
						_, err := pick(r).Admit(context.Background(), key, time.Now())
						if err == nil {
							admitted.Add(1)
						} else if !errors.Is(err, limits.ErrLimited) {
							t.Error(err)
							return
						}
					}
				})
			}
		}
		wg.Wait()
		return admitted.Load()
	}
	if n := count(func(r *rateLimits) limits.Limiter { return r.requestLimiter() }, "principal:alice"); n != 40 {
		t.Errorf("requests admitted across two replicas: %d, want exactly the burst, 40", n)
	}
	if n := count(func(r *rateLimits) limits.Limiter { return r.creationLimits().PerAddress }, "203.0.113.7"); n != 30 {
		t.Errorf("creations admitted across two replicas: %d, want exactly the window's limit, 30", n)
	}
	// A creation that failed on one replica gives its slot back to all.
	rs[0].creationLimits().PerAddress.Undo(t.Context(), "203.0.113.7", time.Now())
	if _, err := rs[1].creationLimits().PerAddress.Admit(t.Context(), "203.0.113.7", time.Now()); err != nil {
		t.Errorf("after an Undo on the other replica: %v", err)
	}
	// Nothing is saved locally with a shared store.
	if rs[0].stop != nil {
		t.Error("a saver runs with a shared store")
	}
}
