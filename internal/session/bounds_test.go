package session_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/session"
)

// TestSetBoundsExactUnderConcurrency changes the global cap back and forth
// while workers create and end sessions: no admission ever exceeds the cap
// in force when it was decided, so the live count never exceeds the larger
// of the two, and once the small cap is set for good, admissions stop
// exactly at it.
func TestSetBoundsExactUnderConcurrency(t *testing.T) {
	for _, policy := range []session.Policy{session.Reject, session.EvictOldest} {
		t.Run(string(policy), func(t *testing.T) {
			t.Parallel()
			const small, large, workers, perWorker = 10, 30, 16, 200
			m := session.NewManager(session.Options{Global: session.Cap{Max: large, Policy: policy}})
			defer m.Close(context.Background())
			var over atomic.Int64
			check := func() {
				if n := m.Len(); n > large {
					over.Store(int64(n))
				}
			}
			stop := make(chan struct{})
			var flipper sync.WaitGroup
			flipper.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					max := large
					if i%2 == 0 {
						max = small
					}
					m.SetBounds(session.Bounds{Global: session.Cap{Max: max, Policy: policy}})
					check()
				}
			})
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					for i := range perWorker {
						s, err := anon(t, m, fmt.Sprintf("10.0.%d.%d", w, i%4))
						check()
						var ce *session.CapError
						switch {
						case errors.As(err, &ce):
						case err != nil:
							t.Error(err)
							return
						case i%3 == 0:
							_ = m.End(context.Background(), s.ID(), session.ReasonDeleted)
						}
					}
				})
			}
			wg.Wait()
			close(stop)
			flipper.Wait()
			if n := over.Load(); n > 0 {
				t.Fatalf("live count reached %d, above the largest cap %d", n, large)
			}

			// The small cap for good: every admission beyond it is refused
			// (reject) or replaces one (evict), none goes over.
			m.SetBounds(session.Bounds{Global: session.Cap{Max: small, Policy: policy}})
			before := m.Len()
			var admitted atomic.Int64
			var burst sync.WaitGroup
			for i := range 50 {
				burst.Go(func() {
					_, err := anon(t, m, fmt.Sprint("10.9.9.", i))
					var ce *session.CapError
					switch {
					case err == nil:
						admitted.Add(1)
					case !errors.As(err, &ce):
						t.Error(err)
					}
				})
			}
			burst.Wait()
			if policy == session.EvictOldest {
				if n := m.Len(); n != small {
					t.Errorf("evict-oldest at the small cap: %d live, want %d", n, small)
				}
				// A place held by a reservation not yet committed cannot be
				// evicted, so with 50 at once a few may find only such
				// places: refused, never over the cap.
				if admitted.Load() < small {
					t.Errorf("evict-oldest admitted %d of 50, want at least the cap's %d", admitted.Load(), small)
				}
			} else if want := max(0, small-before); admitted.Load() != int64(want) || m.Len() != max(before, small) {
				t.Errorf("reject from %d live: admitted %d (want %d), %d live", before, admitted.Load(), want, m.Len())
			}
		})
	}
}

// TestSetBoundsPerAddressExact: a per-address cap set at run time admits
// exactly its size from one address, however many ask at once.
func TestSetBoundsPerAddressExact(t *testing.T) {
	t.Parallel()
	m := session.NewManager(session.Options{})
	defer m.Close(context.Background())
	m.SetBounds(session.Bounds{PerAddress: session.Cap{Max: 7, Policy: session.Reject}})
	var admitted, refused atomic.Int64
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			_, err := anon(t, m, "192.0.2.1")
			var ce *session.CapError
			switch {
			case err == nil:
				admitted.Add(1)
			case errors.As(err, &ce) && ce.Scope == session.ScopeAddress && ce.Max == 7:
				refused.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if admitted.Load() != 7 || refused.Load() != 43 {
		t.Fatalf("admitted %d, refused %d; want 7 and 43", admitted.Load(), refused.Load())
	}
	if _, err := anon(t, m, "192.0.2.2"); err != nil {
		t.Fatalf("another address: %v", err)
	}
}

// TestLoweredCapEvictsNoOne: lowering a cap ends no live session; new
// admissions are refused until the count is under the new cap, and an
// evicting policy set later makes room only when a new session asks.
func TestLoweredCapEvictsNoOne(t *testing.T) {
	t.Parallel()
	m := session.NewManager(session.Options{Global: session.Cap{Max: 10, Policy: session.Reject}})
	defer m.Close(context.Background())
	var live []*session.Session
	for i := range 10 {
		s, err := anon(t, m, fmt.Sprint("10.0.0.", i))
		if err != nil {
			t.Fatal(err)
		}
		live = append(live, s)
	}
	m.SetBounds(session.Bounds{Global: session.Cap{Max: 4, Policy: session.Reject}})
	if got := m.Bounds().Global; got.Max != 4 {
		t.Fatalf("Bounds().Global = %+v", got)
	}
	for _, s := range live {
		if _, err := m.Get(s.ID()); err != nil {
			t.Fatalf("a live session was ended by the lowered cap: %v", err)
		}
	}
	var ce *session.CapError
	if _, err := anon(t, m, "10.0.1.1"); !errors.As(err, &ce) || ce.Max != 4 {
		t.Fatalf("admission over the lowered cap: %v, want a cap error naming 4", err)
	}
	for _, s := range live[:7] {
		if err := m.End(context.Background(), s.ID(), session.ReasonDeleted); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := anon(t, m, "10.0.1.2"); err != nil {
		t.Fatalf("admission under the lowered cap: %v", err)
	}
	if _, err := anon(t, m, "10.0.1.3"); !errors.As(err, &ce) {
		t.Fatalf("admission at the lowered cap: %v, want refused", err)
	}
	m.SetBounds(session.Bounds{Global: session.Cap{Max: 2, Policy: session.EvictOldest}})
	if m.Len() != 4 {
		t.Fatalf("setting an evicting policy ended sessions: %d live, want 4", m.Len())
	}
	if _, err := anon(t, m, "10.0.1.4"); err != nil {
		t.Fatal(err)
	}
	if m.Len() != 2 {
		t.Fatalf("after an admission under evict-oldest at 2: %d live", m.Len())
	}
}

// TestSetBoundsDefaults: new default lifetimes apply to sessions committed
// afterwards; those already live keep theirs.
func TestSetBoundsDefaults(t *testing.T) {
	t.Parallel()
	m := session.NewManager(session.Options{DefaultIdleTimeout: time.Hour})
	defer m.Close(context.Background())
	before, err := anon(t, m, "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	m.SetBounds(session.Bounds{DefaultIdleTimeout: 2 * time.Hour, DefaultTTL: 3 * time.Hour})
	after, err := anon(t, m, "10.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	if got := session.IdleTimeoutOf(before); got != time.Hour {
		t.Errorf("live session's idle timeout became %v", got)
	}
	if got := session.IdleTimeoutOf(after); got != 2*time.Hour {
		t.Errorf("new session's idle timeout %v, want 2h", got)
	}
	// Zero keeps the idle timeout in force: a session always has one.
	m.SetBounds(session.Bounds{})
	if got := m.Bounds().DefaultIdleTimeout; got != 2*time.Hour {
		t.Errorf("zero DefaultIdleTimeout changed it to %v", got)
	}
}

// TestProvisionOnce: Provision is one step, before the first admission.
func TestProvisionOnce(t *testing.T) {
	t.Parallel()
	m := session.NewManager(session.Options{})
	defer m.Close(context.Background())
	if err := m.Provision(session.Provisions{}); err != nil {
		t.Fatal(err)
	}
	if err := m.Provision(session.Provisions{}); !errors.Is(err, session.ErrProvisioned) {
		t.Fatalf("second Provision: %v", err)
	}
	late := session.NewManager(session.Options{})
	defer late.Close(context.Background())
	if _, err := anon(t, late, "10.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if err := late.Provision(session.Provisions{}); !errors.Is(err, session.ErrProvisioned) {
		t.Fatalf("Provision after an admission: %v", err)
	}
}

// TestEndMatching ends exactly the sessions matched, with the reason given.
func TestEndMatching(t *testing.T) {
	t.Parallel()
	m := session.NewManager(session.Options{})
	defer m.Close(context.Background())
	a, _ := anon(t, m, "10.0.0.1")
	b, _ := anon(t, m, "10.0.0.2")
	n := m.EndMatching(t.Context(), func(s *session.Session) bool { return s.ID() == a.ID() }, session.ReasonRouteRemoved)
	if n != 1 {
		t.Fatalf("ended %d, want 1", n)
	}
	<-a.Done()
	if a.Reason() != session.ReasonRouteRemoved {
		t.Errorf("reason %q", a.Reason())
	}
	if _, err := m.Get(b.ID()); err != nil {
		t.Errorf("unmatched session ended: %v", err)
	}
}
