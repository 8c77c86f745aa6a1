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
	"github.com/redis/go-redis/v9"
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
	t.Parallel()
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

// holderCheck verifies the holder bookkeeping of scope key: every counted
// session has its holder, each holder's count is what its sets hold, and
// it returns the counts by holder.
func holderCheck(t *testing.T, s *Store, key string) map[string]int {
	t.Helper()
	c := rawClient(t)
	ctx := t.Context()
	p := s.prefix
	members, err := c.ZRange(ctx, p+"cap:"+key, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	holders, err := c.HGetAll(ctx, p+"capw:"+key).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(holders) != len(members) {
		t.Fatalf("%s: %d sessions counted, %d with a holder", key, len(members), len(holders))
	}
	want := map[string]int{}
	for _, m := range members {
		h, ok := holders[m]
		if !ok {
			t.Fatalf("%s: session %s has no holder", key, m)
		}
		want[h]++
	}
	counts, err := c.ZRangeWithScores(ctx, p+"capo:"+key, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(counts) != len(want) {
		t.Fatalf("%s: holder counts %v; want %v", key, counts, want)
	}
	for _, z := range counts {
		h := z.Member.(string)
		for _, set := range []string{"caph:", "caphc:"} {
			n, err := c.ZCard(ctx, p+set+key+"\x00"+h).Result()
			if err != nil {
				t.Fatal(err)
			}
			if int(n) != want[h] {
				t.Fatalf("%s: %s of %s holds %d; want %d", key, set, h, n, want[h])
			}
		}
		if int(z.Score) != want[h] {
			t.Fatalf("%s: holder %s counted %v; want %d", key, h, z.Score, want[h])
		}
	}
	return want
}

func admitAs(t *testing.T, s *Store, id, holder string, scopes []CapScope) []string {
	t.Helper()
	ev, err := s.Admit(t.Context(), id, holder, scopes, time.Hour)
	if err != nil {
		t.Fatalf("Admit(%s as %s): %v", id, holder, err)
	}
	return ev
}

// TestAdmitSparesOtherHolders reproduces the report across the cluster:
// cap 50, an evicting policy, holder A (one address) has 10 sessions and
// holder B (another address) admits 60: A keeps all 10, B gives up its
// own first ones.
func TestAdmitSparesOtherHolders(t *testing.T) {
	for _, policy := range []string{PolicyEvictIdlest, PolicyEvictOldest} {
		t.Run(policy, func(t *testing.T) {
			t.Parallel()
			s := openStore(t, Options{})
			scopes := []CapScope{{Key: "global", Max: 50, Policy: policy}}
			// Ids sort in admission order, so sessions admitted within one
			// millisecond are still ordered.
			for i := range 10 {
				if ev := admitAs(t, s, fmt.Sprintf("a%03d", i), "address:192.0.2.1", scopes); len(ev) != 0 {
					t.Fatalf("A's admission evicted %v", ev)
				}
			}
			var evicted []string
			for i := range 60 {
				evicted = append(evicted, admitAs(t, s, fmt.Sprintf("b%03d", i), "address:192.0.2.2", scopes)...)
			}
			want := make([]string, 20)
			for i := range want {
				want[i] = fmt.Sprintf("b%03d", i)
			}
			if !slices.Equal(evicted, want) {
				t.Fatalf("evicted %v; want B's 20 first (A's sessions must stay)", evicted)
			}
			if got := holderCheck(t, s, "global"); got["address:192.0.2.1"] != 10 || got["address:192.0.2.2"] != 40 {
				t.Fatalf("holders %v; want A 10, B 40", got)
			}
		})
	}
}

// TestAdmitLargestHolder: a newcomer evicts from the largest holder; a
// holder tied with the largest evicts its own; between tied holders the
// policy picks, also when more holders are tied than the script compares
// one by one.
func TestAdmitLargestHolder(t *testing.T) {
	t.Parallel()
	s := openStore(t, Options{})
	scopes := []CapScope{{Key: "global", Max: 6, Policy: PolicyEvictOldest}}
	admitAs(t, s, "01-x", "x", scopes)
	admitAs(t, s, "02-y", "y", scopes)
	admitAs(t, s, "03-y", "y", scopes)
	admitAs(t, s, "04-z", "z", scopes)
	admitAs(t, s, "05-z", "z", scopes)
	admitAs(t, s, "06-z", "z", scopes)
	if ev := admitAs(t, s, "07-w", "w", scopes); !slices.Equal(ev, []string{"04-z"}) {
		t.Fatalf("newcomer evicted %v; want [04-z], the largest holder's oldest", ev)
	}
	if ev := admitAs(t, s, "08-y", "y", scopes); !slices.Equal(ev, []string{"02-y"}) {
		t.Fatalf("tied holder evicted %v; want its own [02-y]", ev)
	}
	if ev := admitAs(t, s, "09-v", "v", scopes); !slices.Equal(ev, []string{"03-y"}) {
		t.Fatalf("newcomer evicted %v; want [03-y], the older of the tied holders' oldest", ev)
	}
	holderCheck(t, s, "global")

	// 40 holders of one session each, more than the script compares one
	// by one: the newcomer evicts the scope's oldest, then the next.
	many := openStore(t, Options{})
	flat := []CapScope{{Key: "global", Max: 40, Policy: PolicyEvictOldest}}
	for i := range 40 {
		admitAs(t, many, fmt.Sprintf("s%03d", i), fmt.Sprint("h", 39-i), flat)
	}
	if ev := admitAs(t, many, "s040", "new", flat); !slices.Equal(ev, []string{"s000"}) {
		t.Fatalf("evicted %v; want [s000], the oldest of the tied holders", ev)
	}
	if ev := admitAs(t, many, "s041", "other", flat); !slices.Equal(ev, []string{"s001"}) {
		t.Fatalf("evicted %v; want [s001]", ev)
	}
	// A holder of one that asks for another is the largest, counting its
	// new session: it evicts its own.
	if ev := admitAs(t, many, "s042", "h0", flat); !slices.Equal(ev, []string{"s039"}) {
		t.Fatalf("evicted %v; want h0's own [s039]", ev)
	}
	if ev := admitAs(t, many, "s043", "h0", flat); !slices.Equal(ev, []string{"s042"}) {
		t.Fatalf("evicted %v; want h0's own [s042]", ev)
	}
	holderCheck(t, many, "global")
}

// TestAdmitHolderBookkeeping: release, delete, eviction, touches and
// expiry keep the holder counts exact; sessions counted without a holder
// (admitted by an older gateway) can still be evicted.
func TestAdmitHolderBookkeeping(t *testing.T) {
	t.Parallel()
	s := openStore(t, Options{FlushInterval: 20 * time.Millisecond})
	scopes := []CapScope{{Key: "global", Max: 10, Policy: PolicyEvictIdlest}, {Key: "address:a", Max: 3, Policy: PolicyEvictIdlest}}
	for _, id := range []string{"a1", "a2", "a3"} {
		if _, err := s.Admit(t.Context(), id, "address:a", scopes, storetest.Record(id).IdleTimeout); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(t.Context(), storetest.Record(id)); err != nil {
			t.Fatal(err)
		}
	}
	// a1 is touched: a2 is now the idlest of holder a. Places under a cap
	// are scored on Redis's clock, in milliseconds: a touch written in the
	// millisecond of the admissions would tie with them (and a1 sorts
	// first), so it waits for that clock to move on.
	waitRedisMillisecond(t, rawClient(t))
	if err := s.Touch(t.Context(), "a1", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if ev := admitAs(t, s, "a4", "address:a", scopes); !slices.Equal(ev, []string{"a2"}) {
		t.Fatalf("evicted %v; want [a2], the idlest after a1's touch", ev)
	}
	if err := s.Release(t.Context(), "a3"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(t.Context(), "a4"); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"global", "address:a"} {
		if got := holderCheck(t, s, key); got["address:a"] != 1 {
			t.Fatalf("%s holders %v; want a: 1", key, got)
		}
	}
	// A session whose idle deadline passed stops counting, holder included.
	short := []CapScope{{Key: "route:r", Max: 2, Policy: PolicyReject}}
	if _, err := s.Admit(t.Context(), "brief", "address:b", short, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the brief session's deadline passes", func() error {
		if n := capCount(t, s, "route:r"); n != 0 {
			return fmt.Errorf("count %d", n)
		}
		return nil
	})
	admitAs(t, s, "after", "address:c", short)
	if got := holderCheck(t, s, "route:r"); len(got) != 1 || got["address:c"] != 1 {
		t.Fatalf("route holders %v; want only c: 1", got)
	}
	// Sessions counted without a holder go first, in policy order.
	c := rawClient(t)
	old := []CapScope{{Key: "route:old", Max: 2, Policy: PolicyEvictOldest}}
	for i, id := range []string{"legacy1", "legacy2"} {
		c.ZAdd(t.Context(), s.prefix+"cap:route:old", redis.Z{Score: float64(time.Now().Add(time.Hour).UnixMilli()), Member: id})
		c.ZAdd(t.Context(), s.prefix+"capc:route:old", redis.Z{Score: float64(i), Member: id})
	}
	if ev := admitAs(t, s, "fresh", "address:d", old); !slices.Equal(ev, []string{"legacy1"}) {
		t.Fatalf("evicted %v; want [legacy1]", ev)
	}
}

// TestAdmitFairAcrossReplicas: three replicas admit at once for four busy
// holders into a global and a per-address cap, both evicting, while a
// fifth holder keeps five sessions. No count ever exceeds its cap, the
// holder bookkeeping stays exact, and the quiet holder loses nothing.
func TestAdmitFairAcrossReplicas(t *testing.T) {
	t.Parallel()
	for _, policy := range []string{PolicyEvictOldest, PolicyEvictIdlest} {
		t.Run(policy, func(t *testing.T) {
			prefix := testPrefix(t)
			const replicas, holders, each, capMax, perAddr = 3, 4, 60, 40, 12
			stores := make([]*Store, replicas)
			for i := range stores {
				stores[i] = openStore(t, Options{Prefix: prefix})
			}
			global := CapScope{Key: "global", Max: capMax, Policy: policy}
			for i := range 5 {
				admitAs(t, stores[0], fmt.Sprint("quiet-", i), "address:quiet", []CapScope{global, {Key: "address:quiet", Max: perAddr, Policy: policy}})
			}
			stop := make(chan struct{})
			var over atomic.Value
			var sampler sync.WaitGroup
			sampler.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					n, err := stores[0].CapCount(context.Background(), "global")
					if err == nil && n > capMax {
						over.Store(fmt.Sprint("global ", n))
					}
					for h := range holders {
						n, err := stores[0].CapCount(context.Background(), fmt.Sprint("address:", h))
						if err == nil && n > perAddr {
							over.Store(fmt.Sprint("address ", h, " ", n))
						}
					}
				}
			})
			var wg sync.WaitGroup
			for r, s := range stores {
				for h := range holders {
					wg.Go(func() {
						scopes := []CapScope{global, {Key: fmt.Sprint("address:", h), Max: perAddr, Policy: policy}}
						for i := range each {
							if _, err := s.Admit(context.Background(), fmt.Sprintf("r%d-h%d-%d", r, h, i), fmt.Sprint("address:", h), scopes, time.Hour); err != nil {
								t.Error(err)
								return
							}
						}
					})
				}
			}
			wg.Wait()
			close(stop)
			sampler.Wait()
			if v := over.Load(); v != nil {
				t.Fatalf("cap exceeded: %v", v)
			}
			got := holderCheck(t, stores[0], "global")
			if got["address:quiet"] != 5 {
				t.Fatalf("holders %v; the quiet holder must keep its 5", got)
			}
			if n := capCount(t, stores[0], "global"); n != capMax {
				t.Fatalf("global count %d; want %d", n, capMax)
			}
			for h := range holders {
				holderCheck(t, stores[0], fmt.Sprint("address:", h))
			}
		})
	}
}

// waitRedisMillisecond returns once the test Redis's clock (TIME, as the
// scripts read it) has moved past the millisecond it is in now.
func waitRedisMillisecond(t *testing.T, c *redis.Client) {
	t.Helper()
	start, err := c.Time(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	for {
		now, err := c.Time(t.Context()).Result()
		if err != nil {
			t.Fatal(err)
		}
		if now.UnixMilli() > start.UnixMilli() {
			return
		}
	}
}
