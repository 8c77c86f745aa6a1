package redisstore

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

// TestDataLossRecovered: two replicas' stores on one Redis; the Redis
// loses everything (its keys are deleted behind the stores' backs, as a
// restart without persistence would). Each store notices (the one by its
// health check, the other when it settles), runs its write-back once, and
// until both have and the recovery window has passed, Settle waits and
// Exists says yes. Afterwards the written-back session is there with its
// owner and counts under its cap again: a new admission over the cap is
// refused, as before the loss.
func TestDataLossRecovered(t *testing.T) {
	t.Parallel()
	prefix := testPrefix(t)
	const window = 300 * time.Millisecond
	a := openStore(t, Options{Prefix: prefix, RecoveryWindow: window})
	b := openStore(t, Options{Prefix: prefix, RecoveryWindow: window})
	ctx := t.Context()
	caps := []CapScope{{Key: "global", Max: 1, Policy: PolicyReject}}
	rec := &store.Record{ID: "held", Route: "r", Owner: "replica-a", Created: time.Now(), LastActive: time.Now(), IdleTimeout: time.Hour}
	if _, err := a.Admit(ctx, rec.ID, "address:127.0.0.1", caps, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := a.Put(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := a.Settle(ctx); err != nil {
		t.Fatalf("Settle before any loss: %v", err)
	}

	var aRuns, bRuns atomic.Int32
	a.OnDataLoss(func(ctx context.Context) {
		aRuns.Add(1)
		if err := a.Put(ctx, rec); err != nil {
			t.Error(err)
		}
		if err := a.Recount(ctx, rec.ID, "address:127.0.0.1", []string{"global"}, time.Hour, rec.Created); err != nil {
			t.Error(err)
		}
	})
	b.OnDataLoss(func(context.Context) { bRuns.Add(1) })

	c := rawClient(t)
	keys, err := c.Keys(ctx, prefix+"*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys under the prefix: %v, %v", keys, err)
	}
	if err := c.Del(ctx, keys...).Err(); err != nil {
		t.Fatal(err)
	}
	// Absence proves nothing until the replicas have written back.
	if ok, err := b.Exists(ctx, "held"); err != nil || !ok {
		t.Errorf("Exists right after the loss = %v, %v; want true (recovering)", ok, err)
	}
	if err := a.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := b.Settle(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < window/2 {
		t.Errorf("Settle after a loss returned after %v; want it to wait for the recovery window (%v)", d, window)
	}
	if err := a.Settle(ctx); err != nil {
		t.Fatal(err)
	}
	if aRuns.Load() != 1 || bRuns.Load() != 1 {
		t.Errorf("write-backs run %d and %d times; want once on each replica", aRuns.Load(), bRuns.Load())
	}
	got, err := b.Get(ctx, "held")
	if err != nil || got.Owner != "replica-a" {
		t.Fatalf("written-back record: %+v, %v; want it with its owner", got, err)
	}
	if n, err := b.CapCount(ctx, "global"); err != nil || n != 1 {
		t.Errorf("cap count after the write-back = %d, %v; want 1", n, err)
	}
	var full *CapFullError
	if _, err := b.Admit(ctx, "new", "address:127.0.0.2", caps, time.Hour); !errors.As(err, &full) {
		t.Errorf("admission over the cap after the loss: %v; want a CapFullError", err)
	}
	if ok, err := b.Exists(ctx, "never"); err != nil || ok {
		t.Errorf("Exists of an unknown session once settled = %v, %v; want false", ok, err)
	}
	// Deleting gives the place back, as for a session admitted normally.
	if err := b.Delete(ctx, "held"); err != nil {
		t.Fatal(err)
	}
	if n, _ := b.CapCount(ctx, "global"); n != 0 {
		t.Errorf("cap count after Delete = %d; want 0", n)
	}
}
