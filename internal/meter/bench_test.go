package meter_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcpgate/mcpgate/internal/meter"
	"github.com/mcpgate/mcpgate/internal/testutil/testenv"
)

// BenchmarkCounters: one session's budget, a reservation of a request, a
// tool call and a clamped byte estimate, settled.
func BenchmarkCounters(b *testing.B) {
	s := spec(time.Hour)
	s.Counters[cRequests].Limit = 1 << 62
	s.Counters[cBytes].Limit = 1 << 62
	s.Counters[cInflight].Limit = 1 << 62
	c := meter.NewCounters(&s)
	ctx := context.Background()
	cs := []meter.Charge{{Counter: cRequests, Amount: 1}, {Counter: cInflight}, {Counter: cBytes, Amount: 100, Clamp: true}}
	b.ReportAllocs()
	for b.Loop() {
		now := time.Now()
		r, err := c.Reserve(ctx, "", cs, now)
		if err != nil {
			b.Fatal(err)
		}
		r.Actual[2] = 90
		if err := c.Settle(ctx, &r, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLocal: the same against a principal's budget in a Local meter.
func BenchmarkLocal(b *testing.B) {
	s := spec(time.Hour)
	s.Counters[cRequests].Limit = 1 << 62
	s.Counters[cBytes].Limit = 1 << 62
	s.Counters[cInflight].Limit = 1 << 62
	var m meter.Meter = meter.NewLocal(s, 0)
	ctx := context.Background()
	cs := []meter.Charge{{Counter: cRequests, Amount: 1}, {Counter: cInflight}, {Counter: cBytes, Amount: 100, Clamp: true}}
	b.ReportAllocs()
	for b.Loop() {
		now := time.Now()
		r, err := m.Reserve(ctx, "acme/alice", cs, now)
		if err != nil {
			b.Fatal(err)
		}
		r.Actual[2] = 90
		if err := m.Settle(ctx, &r, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRedis: the same against the test Redis: two round trips (one
// script per Reserve, one per Settle).
func BenchmarkRedis(b *testing.B) {
	addr := testenv.Redis(b)
	c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true})
	defer c.Close()
	s := spec(time.Hour)
	s.Counters[cRequests].Limit = 1 << 62
	s.Counters[cBytes].Limit = 1 << 62
	s.Counters[cInflight].Limit = 1 << 62
	prefix := "mcpgate-bench:" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":"
	defer func() {
		if keys, err := c.Keys(context.Background(), prefix+"*").Result(); err == nil && len(keys) > 0 {
			c.Unlink(context.Background(), keys...)
		}
	}()
	var m meter.Meter = meter.NewRedis(context.Background(), c, prefix, "q", s)
	ctx := context.Background()
	cs := []meter.Charge{{Counter: cRequests, Amount: 1}, {Counter: cInflight}, {Counter: cBytes, Amount: 100, Clamp: true}}
	b.ReportAllocs()
	for b.Loop() {
		r, err := m.Reserve(ctx, "acme/alice", cs, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		r.Actual[2] = 90
		if err := m.Settle(ctx, &r, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}
