package meter_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcpgate/mcpgate/internal/meter"
	"github.com/mcpgate/mcpgate/internal/testutil/testenv"
)

// The Redis tests talk to a real Redis (testenv: skipped without one,
// failed under CI=true), each under its own prefix, deleting its keys when
// it ends.
func redisClient(t *testing.T) (*redis.Client, string) {
	t.Helper()
	addr := testenv.Redis(t)
	c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true})
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	prefix := "mcpgate-test:" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		keys, err := c.Keys(ctx, prefix+"*").Result()
		if err == nil && len(keys) > 0 {
			err = c.Unlink(ctx, keys...).Err()
		}
		if err != nil {
			t.Errorf("clean up %s*: %v", prefix, err)
		}
		_ = c.Close()
	})
	return c, prefix
}

func TestRedis(t *testing.T) {
	t.Parallel()
	c, prefix := redisClient(t)
	m := meter.NewRedis(t.Context(), c, prefix, "q", spec(time.Hour))
	semantics(t, m, "acme/alice")
	for i, want := range []int64{3, 100, 2} {
		if got, err := m.Usage(t.Context(), "acme/alice", i); err != nil || got != want {
			t.Errorf("Usage(%d) = %d, %v; want %d", i, got, err, want)
		}
	}
	// Another key, and another name, are other budgets.
	semantics(t, m, "acme/bob")
	semantics(t, meter.NewRedis(t.Context(), c, prefix, "q2", spec(time.Hour)), "acme/alice")
	// Keys are namespaced: a key holding the separator cannot reach
	// another key's counters.
	keys, err := c.Keys(t.Context(), prefix+"meter:q:*").Result()
	if err != nil || len(keys) != 6 {
		t.Errorf("keys = %v, %v; want three counters of two keys", keys, err)
	}
}

// TestRedisReplicasShareExactly: two replicas on one Redis never admit
// more than the limit together, nor more in flight than the gauge allows.
func TestRedisReplicasShareExactly(t *testing.T) {
	t.Parallel()
	c, prefix := redisClient(t)
	c2 := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(), Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { _ = c2.Close() })
	s := spec(time.Hour)
	s.Counters[cRequests].Limit = 150
	a := meter.NewRedis(t.Context(), c, prefix, "q", s)
	b := meter.NewRedis(t.Context(), c2, prefix, "q", s)
	if got := hammer(t, []meter.Meter{a, b}, 4, 400, "acme/alice"); got != 150 {
		t.Errorf("admitted %d across two replicas, want exactly 150", got)
	}
}

// TestRedisWindowAndLease: a refusal in a rolling window says when usage
// leaves it, and a gauge a replica never settled frees itself when its
// lease lapses.
func TestRedisWindowAndLease(t *testing.T) {
	t.Parallel()
	c, prefix := redisClient(t)
	s := spec(time.Hour)
	s.Lease = 300 * time.Millisecond
	m := meter.NewRedis(t.Context(), c, prefix, "q", s)
	for range 3 {
		mustReserve(t, m, "k", meter.Charge{Counter: cRequests, Amount: 1})
	}
	_, err := m.Reserve(t.Context(), "k", []meter.Charge{{Counter: cRequests, Amount: 1}}, time.Now())
	ref := refusal(t, err, "requests")
	if ref.ResetIn < time.Hour-time.Minute || ref.ResetIn > time.Hour+3*time.Minute+time.Second {
		t.Errorf("ResetIn = %v, want about an hour (one 3m slot more at most)", ref.ResetIn)
	}
	ttl, err := c.PTTL(t.Context(), prefix+"meter:q:180000:k:requests").Result()
	if err != nil || ttl <= time.Hour || ttl > time.Hour+7*time.Minute {
		t.Errorf("counter TTL = %v, %v; want a window and two slots at most", ttl, err)
	}
	// Two gauges never settled (their replica died).
	mustReserve(t, m, "k", meter.Charge{Counter: cInflight})
	mustReserve(t, m, "k", meter.Charge{Counter: cInflight})
	if _, err := m.Reserve(t.Context(), "k", []meter.Charge{{Counter: cInflight}}, time.Now()); err == nil {
		t.Fatal("a third in flight admitted")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := m.Reserve(t.Context(), "k", []meter.Charge{{Counter: cInflight}}, time.Now())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("leases of 300ms still held after 5s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRedisLifetimeExpires: a budget without a window (a session's) has
// no reset, and its keys expire Expire after their last change.
func TestRedisLifetimeExpires(t *testing.T) {
	t.Parallel()
	c, prefix := redisClient(t)
	s := spec(0)
	s.Expire = time.Hour
	m := meter.NewRedis(t.Context(), c, prefix, "q", s)
	semantics(t, m, "session:abc")
	_, err := m.Reserve(t.Context(), "session:abc", []meter.Charge{{Counter: cRequests, Amount: 1}}, time.Now())
	if ref := refusal(t, err, "requests"); ref.ResetIn != 0 {
		t.Errorf("ResetIn = %v, want 0 (never)", ref.ResetIn)
	}
	for _, k := range []string{"requests", "result_bytes"} {
		ttl, err := c.PTTL(t.Context(), prefix+"meter:q:0:session%3Aabc:"+k).Result()
		if err != nil || ttl <= 59*time.Minute || ttl > time.Hour {
			t.Errorf("%s TTL = %v, %v; want an hour", k, ttl, err)
		}
	}
}

// TestRedisDown: a meter whose Redis cannot be reached says so with an
// error that is not a refusal.
func TestRedisDown(t *testing.T) {
	t.Parallel()
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond, DisableIdentity: true})
	t.Cleanup(func() { _ = c.Close() })
	m := meter.NewRedis(t.Context(), c, "x:", "q", spec(time.Hour))
	_, err := m.Reserve(t.Context(), "k", []meter.Charge{{Counter: cRequests, Amount: 1}}, time.Now())
	if _, refused := meter.Refused(err); err == nil || refused {
		t.Errorf("err = %v, want a failure to decide", err)
	}
}
