package meter_test

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mcpgate/mcpgate/internal/meter"
	"github.com/mcpgate/mcpgate/internal/testutil/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

const (
	cRequests = iota
	cBytes
	cInflight
)

func spec(window time.Duration) meter.Spec {
	return meter.Spec{Window: window, Counters: []meter.Counter{
		{Name: "requests", Limit: 3},
		{Name: "result_bytes", Limit: 100},
		{Name: "concurrent", Limit: 2, Gauge: true},
	}}
}

func mustReserve(t *testing.T, m meter.Meter, key string, cs ...meter.Charge) meter.Reservation {
	t.Helper()
	r, err := m.Reserve(t.Context(), key, cs, time.Now())
	if err != nil {
		t.Fatalf("Reserve(%+v): %v", cs, err)
	}
	return r
}

func refusal(t *testing.T, err error, counter string) *meter.Refusal {
	t.Helper()
	ref, ok := meter.Refused(err)
	if !ok || ref.Counter != counter {
		t.Fatalf("err = %v, want a refusal of %s", err, counter)
	}
	return ref
}

// semantics is what every Meter does, whatever keeps its state: all or
// nothing, clamped estimates, gauges held until settled, actual amounts
// that fit counted and those that do not refused and not counted.
func semantics(t *testing.T, m meter.Meter, key string) {
	ctx := t.Context()
	// Two requests in flight, each with a byte estimate of 30.
	a := mustReserve(t, m, key, meter.Charge{Counter: cRequests, Amount: 1}, meter.Charge{Counter: cInflight}, meter.Charge{Counter: cBytes, Amount: 30, Clamp: true})
	b := mustReserve(t, m, key, meter.Charge{Counter: cRequests, Amount: 1}, meter.Charge{Counter: cInflight}, meter.Charge{Counter: cBytes, Amount: 30, Clamp: true})
	if a.Used[0] != 1 || b.Used[0] != 2 || b.Used[1] != 2 || b.Used[2] != 60 {
		t.Errorf("used after two reservations: %v then %v", a.Used[:3], b.Used[:3])
	}
	// A third in flight is refused by the gauge, and takes nothing.
	_, err := m.Reserve(ctx, key, []meter.Charge{{Counter: cRequests, Amount: 1}, {Counter: cInflight}}, time.Now())
	if ref := refusal(t, err, "concurrent"); ref.Limit != 2 || ref.ResetIn != 0 || ref.Index != 1 {
		t.Errorf("gauge refusal = %+v", ref)
	}
	// a's result is 10 bytes: 20 of its estimate are given back.
	a.Actual[2] = 10
	if err := m.Settle(ctx, &a, time.Now()); err != nil {
		t.Fatal(err)
	}
	if a.Used[2] != 40 || a.Used[1] != 1 {
		t.Errorf("after settling a: bytes %d (want 40), in flight %d (want 1)", a.Used[2], a.Used[1])
	}
	// b's result is 95 bytes: 10+95 > 100, refused, and nothing of b's
	// bytes stays counted.
	b.Actual[2] = 95
	ref := refusal(t, m.Settle(ctx, &b, time.Now()), "result_bytes")
	if ref.Used != 105 || ref.Limit != 100 || ref.Index != 2 {
		t.Errorf("settle refusal = %+v", ref)
	}
	if b.Used[2] != 10 || b.Used[1] != 0 {
		t.Errorf("after refused settle: bytes %d (want 10), in flight %d (want 0)", b.Used[2], b.Used[1])
	}
	if err := m.Settle(ctx, &b, time.Now()); err != nil {
		t.Errorf("a second Settle: %v", err)
	}
	// 90 more bytes fit exactly; then a clamped estimate is held only
	// as what is left (0 bytes: refused).
	c := mustReserve(t, m, key, meter.Charge{Counter: cBytes, Amount: 1000, Clamp: true})
	if c.Held(0) != 90 {
		t.Errorf("clamped estimate held %d, want the 90 left", c.Held(0))
	}
	c.Actual[0] = 90
	if err := m.Settle(ctx, &c, time.Now()); err != nil || c.Used[0] != 100 {
		t.Errorf("settle to the limit: %v, used %d", err, c.Used[0])
	}
	_, err = m.Reserve(ctx, key, []meter.Charge{{Counter: cBytes, Amount: 1, Clamp: true}}, time.Now())
	refusal(t, err, "result_bytes")
	// A third request fits, a fourth not: and the refused reservation
	// took nothing from the other counters.
	mustReserve(t, m, key, meter.Charge{Counter: cInflight}, meter.Charge{Counter: cRequests, Amount: 1})
	_, err = m.Reserve(ctx, key, []meter.Charge{{Counter: cInflight}, {Counter: cRequests, Amount: 1}}, time.Now())
	if ref := refusal(t, err, "requests"); ref.Used != 4 || ref.Limit != 3 {
		t.Errorf("count refusal = %+v", ref)
	}
	d := mustReserve(t, m, key, meter.Charge{Counter: cInflight})
	if d.Used[0] != 2 {
		t.Errorf("in flight = %d, want 2 (one left unsettled, this one)", d.Used[0])
	}
}

func TestCounters(t *testing.T) {
	t.Parallel()
	s := spec(0)
	semantics(t, meter.NewCounters(&s), "")
}

func TestLocal(t *testing.T) {
	t.Parallel()
	l := meter.NewLocal(spec(time.Hour), 0)
	semantics(t, l, "tenant/alice")
	// Keys are independent.
	semantics(t, l, "tenant/bob")
	if got := l.Usage("tenant/alice", cBytes, time.Now()); got != 100 {
		t.Errorf("Usage = %d, want 100", got)
	}
}

// TestRollingWindow: usage leaves the window as it ages, never earlier
// than the window, and a refusal says when the charge fits again.
func TestRollingWindow(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		l := meter.NewLocal(spec(time.Minute), 0)
		start := time.Now()
		for range 2 {
			mustReserve(t, l, "k", meter.Charge{Counter: cRequests, Amount: 1})
		}
		time.Sleep(30 * time.Second)
		mustReserve(t, l, "k", meter.Charge{Counter: cRequests, Amount: 1})
		_, err := l.Reserve(t.Context(), "k", []meter.Charge{{Counter: cRequests, Amount: 1}}, time.Now())
		ref := refusal(t, err, "requests")
		// The first two leave at 60s (one slot of 3s at most later).
		if ref.ResetIn < 30*time.Second || ref.ResetIn > 33*time.Second {
			t.Errorf("ResetIn = %v at 30s, want in [30s, 33s]", ref.ResetIn)
		}
		time.Sleep(time.Until(start.Add(time.Minute - time.Millisecond)))
		if _, err := l.Reserve(t.Context(), "k", []meter.Charge{{Counter: cRequests, Amount: 1}}, time.Now()); err == nil {
			t.Fatal("admitted before the window passed")
		}
		time.Sleep(ref.ResetIn - 30*time.Second + time.Millisecond)
		r := mustReserve(t, l, "k", meter.Charge{Counter: cRequests, Amount: 1})
		if r.Used[0] != 2 {
			t.Errorf("used after the first two left = %d, want 2", r.Used[0])
		}
		// Everything leaves eventually; an idle key is swept.
		time.Sleep(2 * time.Minute)
		if got := l.Usage("k", cRequests, time.Now()); got != 0 {
			t.Errorf("usage after two idle minutes = %d", got)
		}
	})
}

// TestLifetimeNeverResets: without a window a refusal has no reset time.
func TestLifetimeNeverResets(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := spec(0)
		c := meter.NewCounters(&s)
		for range 3 {
			mustReserve(t, c, "", meter.Charge{Counter: cRequests, Amount: 1})
		}
		time.Sleep(1000 * time.Hour)
		_, err := c.Reserve(t.Context(), "", []meter.Charge{{Counter: cRequests, Amount: 1}}, time.Now())
		if ref := refusal(t, err, "requests"); ref.ResetIn != 0 {
			t.Errorf("ResetIn = %v, want 0 (never)", ref.ResetIn)
		}
	})
}

// TestLocalMaxKeys: a full table refuses new keys, keeps tracked ones,
// and makes room once budgets are idle again.
func TestLocalMaxKeys(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		l := meter.NewLocal(spec(time.Minute), 64)
		var refused int
		for i := range 10000 {
			_, err := l.Reserve(t.Context(), "k"+string(rune('a'+i%26))+time.Duration(i).String(), []meter.Charge{{Counter: cRequests, Amount: 1}}, time.Now())
			if errors.Is(err, meter.ErrTooManyKeys) {
				refused++
			} else if err != nil {
				t.Fatal(err)
			}
		}
		if refused == 0 || refused > 10000-64 {
			t.Errorf("%d of 10000 keys refused with a table of 64", refused)
		}
		time.Sleep(2 * time.Minute)
		for i := range 64 {
			if _, err := l.Reserve(t.Context(), "new"+time.Duration(i).String(), []meter.Charge{{Counter: cRequests, Amount: 1}}, time.Now()); err != nil {
				t.Fatalf("after the window: %v", err)
			}
		}
	})
}

// hammer reserves and settles from many goroutines on every meter at once
// and returns how many requests were admitted.
func hammer(t *testing.T, ms []meter.Meter, goroutines, calls int, key string) int64 {
	t.Helper()
	var admitted, maxInFlight, inFlight atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, m := range ms {
		for range goroutines {
			wg.Go(func() {
				<-start
				for range calls {
					r, err := m.Reserve(context.Background(), key, []meter.Charge{{Counter: cInflight}, {Counter: cRequests, Amount: 1}}, time.Now())
					if err != nil {
						if _, ok := meter.Refused(err); !ok {
							t.Error(err)
							return
						}
						continue
					}
					n := inFlight.Add(1)
					for {
						m := maxInFlight.Load()
						if n <= m || maxInFlight.CompareAndSwap(m, n) {
							break
						}
					}
					admitted.Add(1)
					inFlight.Add(-1)
					if err := m.Settle(context.Background(), &r, time.Now()); err != nil {
						t.Error(err)
					}
				}
			})
		}
	}
	close(start)
	wg.Wait()
	if got := maxInFlight.Load(); got > 2 {
		t.Errorf("%d in flight at once, limit 2", got)
	}
	return admitted.Load()
}

func TestLocalConcurrent(t *testing.T) {
	t.Parallel()
	s := spec(time.Hour)
	s.Counters[cRequests].Limit = 500
	l := meter.NewLocal(s, 0)
	if got := hammer(t, []meter.Meter{l}, 8, 200, "k"); got != 500 {
		t.Errorf("admitted %d, want exactly 500", got)
	}
}

// TestSnapshot: a Local meter's budgets survive a snapshot into another
// meter of the same spec (what was in flight does not), and a snapshot of
// another spec restores nothing.
func TestSnapshot(t *testing.T) {
	t.Parallel()
	l := meter.NewLocal(spec(time.Hour), 0)
	v := l.Version()
	r := mustReserve(t, l, "acme/alice", meter.Charge{Counter: cRequests, Amount: 1}, meter.Charge{Counter: cInflight}, meter.Charge{Counter: cBytes, Amount: 10, Clamp: true})
	r.Actual[2] = 70
	if err := l.Settle(t.Context(), &r, time.Now()); err != nil {
		t.Fatal(err)
	}
	mustReserve(t, l, "acme/alice", meter.Charge{Counter: cInflight}) // in flight at the snapshot
	if l.Version() == v {
		t.Error("Version did not change")
	}
	data, err := l.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	back := meter.NewLocal(spec(time.Hour), 0)
	if err := back.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	for i, want := range []int64{1, 70, 0} {
		if got := back.Usage("acme/alice", i, time.Now()); got != want {
			t.Errorf("counter %d restored as %d, want %d", i, got, want)
		}
	}
	_, err = back.Reserve(t.Context(), "acme/alice", []meter.Charge{{Counter: cBytes, Amount: 31}}, time.Now())
	refusal(t, err, "result_bytes")
	other := meter.NewLocal(spec(time.Minute), 0)
	if err := other.UnmarshalBinary(data); err == nil {
		t.Error("a snapshot of another window was restored")
	}
	if err := back.UnmarshalBinary([]byte("{")); err == nil {
		t.Error("garbage restored")
	}
}

func FuzzSnapshot(f *testing.F) {
	l := meter.NewLocal(spec(time.Hour), 0)
	if _, err := l.Reserve(context.Background(), "k", []meter.Charge{{Counter: cRequests, Amount: 1}}, time.Now()); err != nil {
		f.Fatal(err)
	}
	data, _ := l.MarshalBinary()
	f.Add(data)
	f.Fuzz(func(t *testing.T, b []byte) {
		m := meter.NewLocal(spec(time.Hour), 0)
		if m.UnmarshalBinary(b) != nil {
			return
		}
		// Whatever was restored can be used without a panic.
		_, _ = m.Reserve(context.Background(), "k", []meter.Charge{{Counter: cRequests, Amount: 1}, {Counter: cBytes, Amount: 5, Clamp: true}}, time.Now())
	})
}

// TestLocalExpire: a budget without a window is dropped once unused for
// Expire (what it stood for, a session, is gone), and Delete drops it at
// once.
func TestLocalExpire(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := spec(0)
		s.Expire = time.Hour
		l := meter.NewLocal(s, 2)
		mustReserve(t, l, "session:a", meter.Charge{Counter: cRequests, Amount: 1})
		mustReserve(t, l, "session:b", meter.Charge{Counter: cRequests, Amount: 1})
		if _, err := l.Reserve(t.Context(), "session:c", []meter.Charge{{Counter: cRequests, Amount: 1}}, time.Now()); !errors.Is(err, meter.ErrTooManyKeys) {
			t.Fatalf("a third key in a table of 2: %v", err)
		}
		l.Delete("session:a")
		mustReserve(t, l, "session:c", meter.Charge{Counter: cRequests, Amount: 1})
		time.Sleep(time.Hour + 2*time.Second)
		mustReserve(t, l, "session:d", meter.Charge{Counter: cRequests, Amount: 1})
		if got := l.Usage("session:b", cRequests, time.Now()); got != 0 {
			t.Errorf("an expired key still counts %d", got)
		}
	})
}
