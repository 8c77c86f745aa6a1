package redisstore

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

func TestOwners(t *testing.T) {
	t.Parallel()
	prefix := testPrefix(t)
	a, b := openStore(t, Options{Prefix: prefix}), openStore(t, Options{Prefix: prefix})
	ctx := t.Context()

	// Announcements lapse after their ttl, or at once on Retire.
	if err := a.Announce(ctx, "ra", "10.0.0.1:9301", 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if addr, err := b.Replica(ctx, "ra"); err != nil || addr != "10.0.0.1:9301" {
		t.Fatalf("Replica(ra) = %q, %v", addr, err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := b.Replica(ctx, "ra"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Replica after the lease = %v; want ErrNotFound", err)
	}
	if err := a.Announce(ctx, "ra", "10.0.0.1:9301", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := a.Retire(ctx, "ra"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Replica(ctx, "ra"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Replica after Retire = %v; want ErrNotFound", err)
	}

	// The owner survives a read, and Claim is a compare-and-set that
	// exactly one of many racing replicas wins.
	rec := storetest.Record("s1")
	rec.Owner = "ra"
	if err := a.Put(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Get(ctx, "s1"); err != nil || got.Owner != "ra" {
		t.Fatalf("Get owner = %q, %v; want ra", got.Owner, err)
	}
	var wins atomic.Int64
	var wg sync.WaitGroup
	for i := range 20 {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			ok, err := s.Claim(ctx, "s1", "ra", string(rune('A'+i)))
			if err != nil {
				t.Error(err)
			}
			if ok {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d claims won; want exactly 1", wins.Load())
	}
	got, err := a.Get(ctx, "s1")
	if err != nil || got.Owner == "ra" || got.Owner == "" {
		t.Fatalf("owner after the claim = %q, %v", got.Owner, err)
	}
	// A claim from an owner that no longer owns it, or of a missing
	// session, changes nothing.
	if ok, err := a.Claim(ctx, "s1", "ra", "late"); ok || err != nil {
		t.Fatalf("stale Claim = %v, %v; want false, nil", ok, err)
	}
	if _, err := a.Claim(ctx, "ghost", "", "x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Claim(ghost) = %v; want ErrNotFound", err)
	}
	// The claimed owner outlives touches and is dropped with the record.
	_ = a.Touch(ctx, "s1", time.Now())
	if err := a.flush(ctx); err != nil {
		t.Fatal(err)
	}
	if again, _ := b.Get(ctx, "s1"); again.Owner != got.Owner {
		t.Fatalf("owner after a touch = %q; want %q", again.Owner, got.Owner)
	}
}
