package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

func mustAdmit(t *testing.T, s *Store, id string, scopes []CapScope) []string {
	t.Helper()
	ev, err := s.Admit(t.Context(), id, "h", scopes, time.Hour)
	if err != nil {
		t.Fatalf("Admit(%s): %v", id, err)
	}
	return ev
}

func capCount(t *testing.T, s *Store, key string) int {
	t.Helper()
	n, err := s.CapCount(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAdmitReject(t *testing.T) {
	s := openStore(t, Options{})
	global := []CapScope{{Key: "global", Max: 3, Policy: PolicyReject}}
	for i := range 3 {
		mustAdmit(t, s, fmt.Sprintf("s%d", i), global)
	}
	_, err := s.Admit(t.Context(), "s3", "h", global, time.Hour)
	var cf *CapFullError
	if !errors.As(err, &cf) || cf.Index != 0 || !errors.Is(err, ErrCapFull) {
		t.Fatalf("fourth Admit = %v; want *CapFullError for scope 0", err)
	}
	if cf.RetryAfter < 59*time.Minute || cf.RetryAfter > time.Hour {
		t.Errorf("RetryAfter = %v; want the oldest session's idle deadline, about 1h", cf.RetryAfter)
	}
	if n := capCount(t, s, "global"); n != 3 {
		t.Fatalf("count after refusal = %d; want 3", n)
	}
	// A session that was admitted but never stored frees its place on
	// Release; a stored one frees it on Delete.
	if err := s.Release(t.Context(), "s0"); err != nil {
		t.Fatal(err)
	}
	mustAdmit(t, s, "s3", global)
	if err := s.Put(t.Context(), storetest.Record("s3")); err != nil {
		t.Fatal(err)
	}
	if n := capCount(t, s, "global"); n != 3 {
		t.Fatalf("count after Put = %d; want 3 (Put keeps the caps)", n)
	}
	if err := s.Delete(t.Context(), "s3"); err != nil {
		t.Fatal(err)
	}
	if n := capCount(t, s, "global"); n != 2 {
		t.Fatalf("count after Delete = %d; want 2", n)
	}
	// Releasing what is not counted changes nothing.
	if err := s.Release(t.Context(), "ghost"); err != nil {
		t.Fatal(err)
	}
	if n := capCount(t, s, "global"); n != 2 {
		t.Fatalf("count after releasing an unknown id = %d; want 2", n)
	}
}

// TestAdmitAcrossReplicas: several stores (as several gateway replicas)
// admitting at once into one scope never exceed its cap together, and
// each refusal is a clean *CapFullError.
func TestAdmitAcrossReplicas(t *testing.T) {
	prefix := testPrefix(t)
	const replicas, each, capMax = 3, 100, 40
	stores := make([]*Store, replicas)
	for i := range stores {
		stores[i] = openStore(t, Options{Prefix: prefix})
	}
	scopes := []CapScope{{Key: "global", Max: capMax, Policy: PolicyReject}, {Key: "route:a", Max: capMax * 2, Policy: PolicyReject}}
	var admitted, refused atomic.Int64
	var wg sync.WaitGroup
	for r, s := range stores {
		for i := range each {
			wg.Go(func() {
				_, err := s.Admit(context.Background(), fmt.Sprintf("r%d-%d", r, i), "h", scopes, time.Hour)
				switch {
				case err == nil:
					admitted.Add(1)
				case errors.Is(err, ErrCapFull):
					refused.Add(1)
				default:
					t.Error(err)
				}
			})
		}
	}
	wg.Wait()
	if admitted.Load() != capMax || refused.Load() != replicas*each-capMax {
		t.Fatalf("admitted %d, refused %d; want %d and %d", admitted.Load(), refused.Load(), capMax, replicas*each-capMax)
	}
	for _, key := range []string{"global", "route:a"} {
		if n := capCount(t, stores[0], key); n != capMax {
			t.Errorf("count of %s = %d; want %d", key, n, capMax)
		}
	}
}

func TestAdmitEvictOldest(t *testing.T) {
	s := openStore(t, Options{})
	sub := subscribe(t, "replica", s)
	sub.ready(t, s)
	scopes := []CapScope{{Key: "route:r", Max: 2, Policy: PolicyEvictOldest}}
	for _, id := range []string{"a", "b"} {
		mustAdmit(t, s, id, scopes)
		if err := s.Put(t.Context(), storetest.Record(id)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond) // distinct admission times
	}
	if ev := mustAdmit(t, s, "c", scopes); !slices.Equal(ev, []string{"a"}) {
		t.Fatalf("evicted %v; want [a] (the oldest)", ev)
	}
	if _, err := s.Get(t.Context(), "a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(evicted) = %v; want ErrNotFound", err)
	}
	var ev store.Event
	select {
	case ev = <-sub.events:
	case <-time.After(5 * time.Second):
		t.Fatal("no eviction event")
	}
	if ev.Kind != "ended" || ev.SessionID != "a" || ev.Reason != "evicted" {
		t.Fatalf("event = %+v; want ended a evicted", ev)
	}
	if n := capCount(t, s, "route:r"); n != 2 {
		t.Fatalf("count = %d; want 2", n)
	}
}

func TestAdmitEvictIdlest(t *testing.T) {
	s := openStore(t, Options{FlushInterval: 20 * time.Millisecond})
	scopes := []CapScope{{Key: "global", Max: 2, Policy: PolicyEvictIdlest}}
	for _, id := range []string{"a", "b"} {
		if _, err := s.Admit(t.Context(), id, "h", scopes, storetest.Record(id).IdleTimeout); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(t.Context(), storetest.Record(id)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	// a, the older, was active since: b is the idlest.
	time.Sleep(5 * time.Millisecond)
	if err := s.Touch(t.Context(), "a", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if ev := mustAdmit(t, s, "c", scopes); !slices.Equal(ev, []string{"b"}) {
		t.Fatalf("evicted %v; want [b] (the idlest)", ev)
	}
}

// TestAdmitAllOrNothing: a scope that refuses leaves the other scopes'
// sessions in place, even where their policy would evict.
func TestAdmitAllOrNothing(t *testing.T) {
	s := openStore(t, Options{})
	evict := CapScope{Key: "global", Max: 1, Policy: PolicyEvictOldest}
	mustAdmit(t, s, "a", []CapScope{evict, {Key: "principal:p", Max: 5, Policy: PolicyReject}})
	mustAdmit(t, s, "full", []CapScope{{Key: "principal:q", Max: 1, Policy: PolicyReject}})
	_, err := s.Admit(t.Context(), "b", "h", []CapScope{evict, {Key: "principal:q", Max: 1, Policy: PolicyReject}}, time.Hour)
	var cf *CapFullError
	if !errors.As(err, &cf) || cf.Index != 1 {
		t.Fatalf("Admit = %v; want a refusal by scope 1", err)
	}
	if n := capCount(t, s, "global"); n != 1 {
		t.Fatalf("global count = %d; want 1 (a must not have been evicted)", n)
	}
	// With room in the principal's scope the eviction happens, and the
	// victim leaves every scope it counted in.
	if ev := mustAdmit(t, s, "b", []CapScope{evict, {Key: "principal:p", Max: 5, Policy: PolicyReject}}); !slices.Equal(ev, []string{"a"}) {
		t.Fatalf("evicted %v; want [a]", ev)
	}
	if n := capCount(t, s, "principal:p"); n != 1 {
		t.Fatalf("principal count = %d; want 1 (b only)", n)
	}
}

// TestAdmitIdleDeadline: a session the cluster hears nothing of for its
// idle timeout stops counting; touches keep it counted.
func TestAdmitIdleDeadline(t *testing.T) {
	s := openStore(t, Options{FlushInterval: 20 * time.Millisecond})
	scopes := []CapScope{{Key: "global", Max: 2, Policy: PolicyReject}}
	for _, id := range []string{"kept", "idle"} {
		if _, err := s.Admit(t.Context(), id, "h", scopes, 300*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	stop := time.After(600 * time.Millisecond)
	for loop := true; loop; {
		select {
		case <-stop:
			loop = false
		case <-time.After(50 * time.Millisecond):
			_ = s.Touch(t.Context(), "kept", time.Now())
		}
	}
	if err := s.flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := capCount(t, s, "global"); n != 1 {
		t.Fatalf("count = %d; want 1 (the idle session stopped counting)", n)
	}
	if _, err := s.Admit(t.Context(), "new", "h", scopes, time.Hour); err != nil {
		t.Fatalf("Admit after the idle deadline: %v", err)
	}
}

func BenchmarkAdmitRelease(b *testing.B) {
	s := openStore(b, Options{})
	scopes := []CapScope{{Key: "global", Max: 1 << 30, Policy: PolicyReject}, {Key: "route:r", Max: 1 << 30, Policy: PolicyReject}}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		id := fmt.Sprint("s", i)
		i++
		if _, err := s.Admit(context.Background(), id, "h", scopes, time.Hour); err != nil {
			b.Fatal(err)
		}
		if err := s.Release(context.Background(), id); err != nil {
			b.Fatal(err)
		}
	}
}
