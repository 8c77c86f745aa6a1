package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/store"
)

// TouchBuffer is implemented by a backend that buffers Touch in memory and
// writes it durably at most FlushInterval later (and on Close). RunDurable
// uses it to bound what a crash may lose; a backend that does not
// implement it must make Touch durable before it returns.
type TouchBuffer interface {
	FlushInterval() time.Duration
}

// cmpOpts is how the suite compares records: times by Equal (cmp uses the
// method), nil and empty slices and maps alike, and bytes at once rather
// than byte by byte (InitRaw can be large).
var cmpOpts = cmp.Options{
	cmp.FilterPath(func(p cmp.Path) bool { return p.Last().Type() != reflect.TypeFor[[]byte]() }, cmpopts.EquateEmpty()),
	cmp.Comparer(bytes.Equal),
}

// base is a time with nanoseconds and a zone that is neither UTC nor
// Local, so that a backend truncating or mangling either is caught.
var base = time.Date(2031, time.May, 6, 7, 8, 9, 123456789, time.FixedZone("UTC+5:30", 5*3600+1800))

// Record returns a record with every field set, derived from id. Backends
// may use it in their own tests and benchmarks.
func Record(id string) *store.Record {
	return &store.Record{
		ID:              id,
		Route:           "route-" + id,
		Era:             core.EraLegacy,
		ProtocolVersion: core.Version20241105,
		Principal:       "user:" + id,
		Tenant:          "tenant-ü",
		Groups:          []string{"admins", "grüppe"},
		Claims: map[string]any{
			"sub": "user:" + id, "exp": float64(1.9e9), "email_verified": true, "null": nil,
			"aud": []any{"mcpgate", float64(2)}, "nested": map[string]any{"scope": "read write"},
		},
		RemoteAddr:      "192.0.2.1:4711",
		ClientName:      "client \"quoted\" ✓",
		ClientVersion:   "1.2.3",
		InitRaw:         []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"x":"` + id + `"}}` + "\x00\xff"),
		UpstreamSession: "up-" + id,
		Created:         base,
		LastActive:      base.Add(time.Minute),
		IdleTimeout:     30 * time.Minute,
		TTL:             24 * time.Hour,
		Usage:           map[string]int64{"requests": 3, "tokens": -1 << 40},
		Overrides:       map[string]string{"max_requests": "10", "": "empty key"},
	}
}

// Run runs the conformance suite against fresh stores made by open, one
// per subtest. The suite closes every store it opens (Close must be
// idempotent, so open may register its own cleanup as well).
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	o := func(t *testing.T) store.Store {
		t.Helper()
		s := open(t)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, o) })
	t.Run("InvalidPut", func(t *testing.T) { testInvalidPut(t, o) })
	t.Run("GetReturnsCopy", func(t *testing.T) { testGetReturnsCopy(t, o) })
	t.Run("PutCopies", func(t *testing.T) { testPutCopies(t, o) })
	t.Run("GetMissing", func(t *testing.T) { testGetMissing(t, o) })
	t.Run("PutReplaces", func(t *testing.T) { testPutReplaces(t, o) })
	t.Run("Delete", func(t *testing.T) { testDelete(t, o) })
	t.Run("List", func(t *testing.T) { testList(t, o) })
	t.Run("Touch", func(t *testing.T) { testTouch(t, o) })
	t.Run("Add", func(t *testing.T) { testAdd(t, o) })
	t.Run("ConcurrentAdd", func(t *testing.T) { testConcurrentAdd(t, o) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, o) })
	t.Run("ConcurrentTouchMonotonic", func(t *testing.T) { testConcurrentTouchMonotonic(t, o) })
	t.Run("Closed", func(t *testing.T) { testClosed(t, o) })
	t.Run("Context", func(t *testing.T) { testContext(t, o) })
}

func mustPut(t *testing.T, s store.Store, r *store.Record) {
	t.Helper()
	if err := s.Put(t.Context(), r); err != nil {
		t.Fatalf("Put(%q): %v", r.ID, err)
	}
}

func mustGet(t *testing.T, s store.Store, id string) *store.Record {
	t.Helper()
	r, err := s.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("Get(%q): %v", id, err)
	}
	return r
}

func mustTouch(t *testing.T, s store.Store, id string, at time.Time) {
	t.Helper()
	if err := s.Touch(t.Context(), id, at); err != nil {
		t.Fatalf("Touch(%q): %v", id, err)
	}
}

func mustList(t *testing.T, s store.Store) []*store.Record {
	t.Helper()
	rs, err := s.List(t.Context())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return rs
}

func wantNotFound(t *testing.T, s store.Store, id string) {
	t.Helper()
	r, err := s.Get(t.Context(), id)
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(%q) = %+v, %v; want ErrNotFound", id, r, err)
	}
}

func diffRecord(t *testing.T, want, got *store.Record) {
	t.Helper()
	if d := cmp.Diff(want, got, cmpOpts); d != "" {
		t.Errorf("record %q mismatch (-want +got):\n%s", want.ID, d)
	}
}

// diffList compares order-insensitively.
func diffList(t *testing.T, want, got []*store.Record) {
	t.Helper()
	byID := func(a, b *store.Record) int { return strings.Compare(a.ID, b.ID) }
	want, got = slices.Clone(want), slices.Clone(got)
	slices.SortFunc(want, byID)
	slices.SortFunc(got, byID)
	if d := cmp.Diff(want, got, cmpOpts); d != "" {
		t.Errorf("List mismatch (-want +got):\n%s", d)
	}
}

func testRoundTrip(t *testing.T, open func(*testing.T) store.Store) {
	big := make([]byte, 256<<10)
	for i := range big {
		big[i] = byte(i * 7)
	}
	tests := []struct {
		name string
		rec  *store.Record
	}{
		{name: "every field", rec: Record("s-full")},
		{name: "id only", rec: &store.Record{ID: "s-min"}},
		{name: "empty collections", rec: func() *store.Record {
			r := Record("s-empty")
			r.InitRaw, r.Usage, r.Overrides = []byte{}, map[string]int64{}, map[string]string{}
			r.Groups, r.Claims = []string{}, map[string]any{}
			return r
		}()},
		{name: "monotonic and local times", rec: func() *store.Record {
			r := Record("s-now")
			r.Created = time.Now()
			r.LastActive = time.Now().Add(time.Nanosecond)
			return r
		}()},
		{name: "unicode and odd id", rec: Record("s/é ✓\x00\"{}")},
		{name: "large init", rec: func() *store.Record {
			r := Record("s-big")
			r.InitRaw = big
			return r
		}()},
		{name: "modern era zero durations", rec: func() *store.Record {
			r := Record("s-modern")
			r.Era, r.IdleTimeout, r.TTL = core.EraModern, 0, 0
			return r
		}()},
	}
	s := open(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.rec.Clone()
			mustPut(t, s, tt.rec)
			diffRecord(t, want, mustGet(t, s, tt.rec.ID))
		})
	}
	t.Run("list", func(t *testing.T) {
		var want []*store.Record
		for _, tt := range tests {
			want = append(want, tt.rec)
		}
		diffList(t, want, mustList(t, s))
	})
}

func testInvalidPut(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	if err := s.Put(t.Context(), nil); err == nil {
		t.Error("Put(nil) = nil; want an error")
	}
	if err := s.Put(t.Context(), &store.Record{Route: "r"}); err == nil {
		t.Error(`Put(ID "") = nil; want an error`)
	}
	if got := mustList(t, s); len(got) != 0 {
		t.Errorf("List after invalid Puts = %d records; want none", len(got))
	}
}

// mutate changes every mutable part of r in place.
func mutate(r *store.Record) {
	r.Route += "-changed"
	r.LastActive = r.LastActive.Add(time.Hour)
	if len(r.InitRaw) > 0 {
		r.InitRaw[0] ^= 0xff
	}
	if r.Usage != nil {
		r.Usage["requests"] += 100
		r.Usage["new"] = 1
	}
	if r.Overrides != nil {
		r.Overrides["max_requests"] = "changed"
		r.Overrides["new"] = "x"
	}
}

func testGetReturnsCopy(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	want := Record("s1")
	mustPut(t, s, want.Clone())
	mutate(mustGet(t, s, "s1"))
	diffRecord(t, want, mustGet(t, s, "s1"))

	for _, r := range mustList(t, s) {
		mutate(r)
	}
	diffRecord(t, want, mustGet(t, s, "s1"))
}

func testPutCopies(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	r := Record("s1")
	mustPut(t, s, r)
	mutate(r)
	diffRecord(t, Record("s1"), mustGet(t, s, "s1"))
}

func testGetMissing(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	wantNotFound(t, s, "nope")
	wantNotFound(t, s, "")
	mustPut(t, s, Record("s1"))
	wantNotFound(t, s, "s")
	wantNotFound(t, s, "s10")
}

func testPutReplaces(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	mustPut(t, s, Record("s1"))
	// Fewer fields: a backend that merges instead of replacing keeps the
	// old maps and strings.
	r2 := &store.Record{ID: "s1", Route: "other", Era: core.EraModern, Created: base.Add(time.Hour), LastActive: base.Add(-time.Hour)}
	mustPut(t, s, r2.Clone())
	diffRecord(t, r2, mustGet(t, s, "s1"))
	diffList(t, []*store.Record{r2}, mustList(t, s))
}

func testDelete(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	ctx := t.Context()
	mustPut(t, s, Record("s1"))
	mustPut(t, s, Record("s2"))
	if err := s.Delete(ctx, "s1"); err != nil {
		t.Fatalf("Delete(s1): %v", err)
	}
	wantNotFound(t, s, "s1")
	diffRecord(t, Record("s2"), mustGet(t, s, "s2"))
	diffList(t, []*store.Record{Record("s2")}, mustList(t, s))
	for _, id := range []string{"s1", "missing", ""} {
		if err := s.Delete(ctx, id); err != nil {
			t.Errorf("Delete(%q) of a missing record = %v; want nil", id, err)
		}
	}
	// Re-creating a deleted id is a fresh record.
	mustPut(t, s, &store.Record{ID: "s1"})
	diffRecord(t, &store.Record{ID: "s1"}, mustGet(t, s, "s1"))
}

func testList(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	if got := mustList(t, s); len(got) != 0 {
		t.Fatalf("List of an empty store = %d records; want none", len(got))
	}
	var want []*store.Record
	for i := range 100 {
		r := Record(fmt.Sprintf("s%03d", i))
		r.Usage["i"] = int64(i)
		want = append(want, r)
		mustPut(t, s, r.Clone())
	}
	got := mustList(t, s)
	diffList(t, want, got)
	for _, r := range got {
		mutate(r)
	}
	diffList(t, want, mustList(t, s))
}

func testTouch(t *testing.T, open func(*testing.T) store.Store) {
	t.Run("updates LastActive", func(t *testing.T) {
		s := open(t)
		want := Record("s1")
		mustPut(t, s, want.Clone())
		at := base.Add(time.Hour + time.Nanosecond)
		mustTouch(t, s, "s1", at)
		want.LastActive = at
		diffRecord(t, want, mustGet(t, s, "s1"))
		diffList(t, []*store.Record{want}, mustList(t, s))

		later := at.Add(time.Second)
		mustTouch(t, s, "s1", later)
		want.LastActive = later
		diffRecord(t, want, mustGet(t, s, "s1"))
	})
	t.Run("never backwards", func(t *testing.T) {
		s := open(t)
		want := Record("s1")
		mustPut(t, s, want.Clone())
		mustTouch(t, s, "s1", want.LastActive.Add(-time.Second))
		diffRecord(t, want, mustGet(t, s, "s1"))
		at := want.LastActive.Add(time.Hour)
		mustTouch(t, s, "s1", at)
		mustTouch(t, s, "s1", at.Add(-time.Minute))
		want.LastActive = at
		diffRecord(t, want, mustGet(t, s, "s1"))
		diffList(t, []*store.Record{want}, mustList(t, s))
	})
	t.Run("missing is ignored", func(t *testing.T) {
		s := open(t)
		mustTouch(t, s, "ghost", base)
		mustTouch(t, s, "", base)
		wantNotFound(t, s, "ghost")
		if got := mustList(t, s); len(got) != 0 {
			t.Fatalf("List after Touch of missing ids = %d records; want none", len(got))
		}
	})
	t.Run("Put supersedes earlier Touch", func(t *testing.T) {
		s := open(t)
		mustPut(t, s, Record("s1"))
		mustTouch(t, s, "s1", base.Add(time.Hour))
		want := Record("s1") // LastActive base+1m, before the Touch
		want.Route = "replaced"
		mustPut(t, s, want.Clone())
		diffRecord(t, want, mustGet(t, s, "s1"))
		diffList(t, []*store.Record{want}, mustList(t, s))
	})
	t.Run("Delete drops Touch", func(t *testing.T) {
		s := open(t)
		mustPut(t, s, Record("s1"))
		mustTouch(t, s, "s1", base.Add(time.Hour))
		if err := s.Delete(t.Context(), "s1"); err != nil {
			t.Fatal(err)
		}
		wantNotFound(t, s, "s1")
		// A Touch between Delete and re-creation is of a missing record.
		mustTouch(t, s, "s1", base.Add(2*time.Hour))
		want := &store.Record{ID: "s1", LastActive: base}
		mustPut(t, s, want.Clone())
		diffRecord(t, want, mustGet(t, s, "s1"))
	})
	t.Run("touch before create is ignored", func(t *testing.T) {
		s := open(t)
		mustTouch(t, s, "s1", base.Add(time.Hour))
		want := &store.Record{ID: "s1", LastActive: base}
		mustPut(t, s, want.Clone())
		diffRecord(t, want, mustGet(t, s, "s1"))
	})
}

func testAdd(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	steps := []struct {
		name    string
		counter string
		delta   int64
		want    int64
	}{
		{"new counter starts at zero", "a", 5, 5},
		{"adds", "a", 2, 7},
		{"negative", "a", -10, -3},
		{"zero reads", "a", 0, -3},
		{"independent counter", "b", 0, 0},
		{"independent counter adds", "b", 1 << 40, 1 << 40},
		{"unaffected by other", "a", 0, -3},
		{"name like a record id", "s1", 1, 1},
	}
	for _, st := range steps {
		got, err := s.Add(t.Context(), st.counter, st.delta)
		if err != nil || got != st.want {
			t.Fatalf("%s: Add(%q, %d) = %d, %v; want %d", st.name, st.counter, st.delta, got, err, st.want)
		}
	}
	if _, err := s.Add(t.Context(), "", 1); err == nil {
		t.Error(`Add("") = nil error; want an error`)
	}
	// Counters and records are separate namespaces.
	wantNotFound(t, s, "s1")
}

func testConcurrentAdd(t *testing.T, open func(*testing.T) store.Store) {
	const goroutines, perG = 50, 20
	s := open(t)
	results := make(chan int64, goroutines*perG)
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range perG {
				v, err := s.Add(context.Background(), "c", 1)
				if err != nil {
					t.Errorf("Add: %v", err)
					return
				}
				results <- v
			}
		})
	}
	wg.Wait()
	close(results)
	// Each Add sees a distinct new value: they are 1..n in some order.
	var got []int64
	for v := range results {
		got = append(got, v)
	}
	slices.Sort(got)
	want := make([]int64, goroutines*perG)
	for i := range want {
		want[i] = int64(i + 1)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("values returned by concurrent Adds (-want +got):\n%s", d)
	}
	if v, err := s.Add(t.Context(), "c", 0); err != nil || v != goroutines*perG {
		t.Errorf("Add(c, 0) = %d, %v; want %d", v, err, goroutines*perG)
	}
}

// testConcurrent mixes every operation on a few shared ids; run under
// -race it checks the backend's locking, and each result is checked
// against what some writer could have written.
func testConcurrent(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	ids := []string{"a", "b", "c", "d"}
	check := func(r *store.Record) {
		if !slices.Contains(ids, r.ID) || r.Route != "route-"+r.ID || len(r.Usage) != 2 {
			t.Errorf("read a record no writer wrote: %+v", r)
		}
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 100 {
				id := ids[(g+i)%len(ids)]
				var err error
				switch (g + i) % 6 {
				case 0, 1:
					err = s.Put(ctx, Record(id))
				case 2:
					var r *store.Record
					r, err = s.Get(ctx, id)
					if err == nil {
						check(r)
					}
				case 3:
					err = s.Touch(ctx, id, base.Add(time.Duration(i)*time.Second))
				case 4:
					err = s.Delete(ctx, id)
				case 5:
					var rs []*store.Record
					rs, err = s.List(ctx)
					for _, r := range rs {
						check(r)
					}
				}
				if err != nil && !errors.Is(err, store.ErrNotFound) {
					t.Errorf("goroutine %d op %d: %v", g, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, r := range mustList(t, s) {
		check(r)
	}
}

// testConcurrentTouchMonotonic checks that concurrent Touches never make
// LastActive go backwards for a reader.
func testConcurrentTouchMonotonic(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	mustPut(t, s, &store.Record{ID: "s1", LastActive: base})
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				// Interleaved, so each writer's times are out of order with
				// the others'.
				at := base.Add(time.Duration(i*8+g) * time.Millisecond)
				if err := s.Touch(ctx, "s1", at); err != nil {
					t.Errorf("Touch: %v", err)
					return
				}
			}
		})
	}
	for range 4 {
		wg.Go(func() {
			last := base
			for range 200 {
				r, err := s.Get(ctx, "s1")
				if err != nil {
					t.Errorf("Get: %v", err)
					return
				}
				if r.LastActive.Before(last) {
					t.Errorf("LastActive went backwards: %v after %v", r.LastActive, last)
					return
				}
				last = r.LastActive
			}
		})
	}
	wg.Wait()
	want := base.Add(time.Duration(199*8+7) * time.Millisecond)
	if got := mustGet(t, s, "s1").LastActive; !got.Equal(want) {
		t.Errorf("LastActive = %v; want the latest Touch %v", got, want)
	}
}

// ops is every Store method but Close, for the tables below.
var ops = []struct {
	name string
	do   func(ctx context.Context, s store.Store) error
}{
	{"Put", func(ctx context.Context, s store.Store) error { return s.Put(ctx, Record("new")) }},
	{"Get", func(ctx context.Context, s store.Store) error { _, err := s.Get(ctx, "s1"); return err }},
	{"Touch", func(ctx context.Context, s store.Store) error { return s.Touch(ctx, "s1", base.Add(time.Hour)) }},
	{"Delete", func(ctx context.Context, s store.Store) error { return s.Delete(ctx, "s1") }},
	{"List", func(ctx context.Context, s store.Store) error { _, err := s.List(ctx); return err }},
	{"Add", func(ctx context.Context, s store.Store) error { _, err := s.Add(ctx, "c", 1); return err }},
}

func testClosed(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	mustPut(t, s, Record("s1"))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			if err := op.do(t.Context(), s); !errors.Is(err, store.ErrClosed) {
				t.Errorf("%s after Close = %v; want ErrClosed", op.name, err)
			}
		})
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v; want nil", err)
	}
}

func testContext(t *testing.T, open func(*testing.T) store.Store) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Unix(0, 0))
	defer cancel2()
	ctxs := []struct {
		name string
		ctx  context.Context
		want error
	}{
		{"cancelled", cancelled, context.Canceled},
		{"deadline exceeded", expired, context.DeadlineExceeded},
	}
	for _, c := range ctxs {
		for _, op := range ops {
			t.Run(c.name+"/"+op.name, func(t *testing.T) {
				s := open(t)
				want := Record("s1")
				mustPut(t, s, want.Clone())
				if _, err := s.Add(t.Context(), "c", 1); err != nil {
					t.Fatal(err)
				}
				if err := op.do(c.ctx, s); !errors.Is(err, c.want) {
					t.Fatalf("%s with a %s context = %v; want %v", op.name, c.name, err, c.want)
				}
				// A refused call has no effect.
				diffList(t, []*store.Record{want}, mustList(t, s))
				if v, err := s.Add(t.Context(), "c", 0); err != nil || v != 1 {
					t.Errorf("counter after refused %s = %d, %v; want 1", op.name, v, err)
				}
			})
		}
	}
}
