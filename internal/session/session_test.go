package session_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/session"
)

func TestMain(m *testing.M) {
	// Every Manager starts a reaper goroutine; Close must stop it.
	goleak.VerifyTestMain(m)
}

// event is one lifecycle hook call, recorded for comparison.
type event struct {
	Hook   string // "created" or "ended"
	ID     string
	Reason session.Reason
}

// recorder collects hook calls and closer calls from any goroutine.
type recorder struct {
	mu     sync.Mutex
	events []event
	closed map[string][]session.Reason
}

func newRecorder() *recorder { return &recorder{closed: map[string][]session.Reason{}} }

func (r *recorder) hooks() session.Hooks {
	return session.Hooks{
		Created: func(info *core.SessionInfo) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.events = append(r.events, event{Hook: "created", ID: info.ID})
		},
		Ended: func(info *core.SessionInfo, reason session.Reason) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.events = append(r.events, event{Hook: "ended", ID: info.ID, Reason: reason})
		},
	}
}

func (r *recorder) closer(id string) session.Closer {
	return func(_ context.Context, reason session.Reason) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.closed[id] = append(r.closed[id], reason)
	}
}

func (r *recorder) snapshot() ([]event, map[string][]session.Reason) {
	r.mu.Lock()
	defer r.mu.Unlock()
	closed := make(map[string][]session.Reason, len(r.closed))
	for k, v := range r.closed {
		closed[k] = append([]session.Reason(nil), v...)
	}
	return append([]event(nil), r.events...), closed
}

func newManager(t testing.TB, opts session.Options) *session.Manager {
	t.Helper()
	m := session.NewManager(opts)
	t.Cleanup(func() { m.Close(context.Background()) })
	return m
}

func mustCreate(t testing.TB, m *session.Manager, info *core.SessionInfo, lim session.Limits, c session.Closer) *session.Session {
	t.Helper()
	s, err := m.Create(info, lim, c, nil)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return s
}

func isDone(s *session.Session) bool {
	select {
	case <-s.Done():
		return true
	default:
		return false
	}
}

func TestNewIDValidAndUnique(t *testing.T) {
	const n = 10000
	seen := make(map[string]bool, n)
	for range n {
		id := session.NewID()
		if !session.ValidID(id) {
			t.Fatalf("NewID() = %q, not ValidID", id)
		}
		// 192 bits, base64url without padding.
		if len(id) != 32 {
			t.Fatalf("NewID() = %q, len %d, want 32", id, len(id))
		}
		if strings.ContainsAny(id, "+/=") {
			t.Fatalf("NewID() = %q is not base64url without padding", id)
		}
		if seen[id] {
			t.Fatalf("NewID() repeated %q", id)
		}
		seen[id] = true
	}
}

func TestValidID(t *testing.T) {
	tests := []struct {
		name string
		id   string
		want bool
	}{
		{"empty", "", false},
		{"single char", "a", true},
		{"minted", session.NewID(), true},
		{"uuid", "0b1f1c0e-7c2a-4e55-9a9b-1f0a3b9d6c2e", true},
		{"all visible punctuation", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", true},
		{"max length", strings.Repeat("x", 128), true},
		{"too long", strings.Repeat("x", 129), false},
		{"space", "abc def", false},
		{"leading space", " abc", false},
		{"tab", "abc\tdef", false},
		{"newline (header injection)", "abc\r\nX-Evil: 1", false},
		{"nul", "abc\x00", false},
		{"DEL", "abc\x7f", false},
		{"non-ASCII", "séance", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := session.ValidID(tt.id); got != tt.want {
				t.Errorf("ValidID(%q) = %v, want %v", tt.id, got, tt.want)
			}
		})
	}
}

func TestCreateGetEndLen(t *testing.T) {
	rec := newRecorder()
	m := newManager(t, session.Options{Hooks: []session.Hooks{rec.hooks()}})
	ctx := context.Background()

	if got := m.Len(); got != 0 {
		t.Fatalf("Len() of a new manager = %d, want 0", got)
	}
	before := time.Now()
	info := &core.SessionInfo{Route: "r", Era: core.EraLegacy}
	s, err := m.Create(info, session.Limits{}, nil, "state")
	if err != nil {
		t.Fatal(err)
	}
	if !session.ValidID(s.ID()) {
		t.Errorf("minted id %q is not ValidID", s.ID())
	}
	if s.Info() != info || info.ID != s.ID() {
		t.Errorf("Create did not keep info and fill in its id: info.ID=%q, s.ID()=%q", info.ID, s.ID())
	}
	if info.Created.Before(before) || info.Created.After(time.Now()) {
		t.Errorf("info.Created = %v, want the creation time", info.Created)
	}
	if s.Value != "state" {
		t.Errorf("Value = %v, want the value given to Create", s.Value)
	}
	if s.Reason() != "" || isDone(s) {
		t.Errorf("live session: Reason()=%q done=%v", s.Reason(), isDone(s))
	}

	s2 := mustCreate(t, m, &core.SessionInfo{ID: "given-id"}, session.Limits{}, nil)
	if s2.ID() != "given-id" {
		t.Errorf("Create replaced a given id: %q", s2.ID())
	}
	if got := m.Len(); got != 2 {
		t.Errorf("Len() = %d, want 2", got)
	}
	for _, want := range []*session.Session{s, s2} {
		got, err := m.Get(want.ID())
		if err != nil || got != want {
			t.Errorf("Get(%q) = %p, %v; want %p", want.ID(), got, err, want)
		}
	}

	if err := m.End(ctx, s.ID(), session.ReasonDeleted); err != nil {
		t.Fatalf("End: %v", err)
	}
	if !isDone(s) || s.Reason() != session.ReasonDeleted {
		t.Errorf("after End: done=%v Reason()=%q, want closed and %q", isDone(s), s.Reason(), session.ReasonDeleted)
	}
	if _, err := m.Get(s.ID()); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("Get of an ended session: err = %v, want ErrNotFound", err)
	}
	if err := m.End(ctx, s.ID(), session.ReasonUpstreamGone); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("second End: err = %v, want ErrNotFound", err)
	}
	if s.Reason() != session.ReasonDeleted {
		t.Errorf("second End changed Reason() to %q", s.Reason())
	}
	if err := m.End(ctx, "never-existed", session.ReasonDeleted); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("End of an unknown id: err = %v, want ErrNotFound", err)
	}
	if _, err := m.Get("never-existed"); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("Get of an unknown id: err = %v, want ErrNotFound", err)
	}
	if got := m.Len(); got != 1 {
		t.Errorf("Len() = %d, want 1", got)
	}

	events, _ := rec.snapshot()
	want := []event{
		{Hook: "created", ID: s.ID()},
		{Hook: "created", ID: "given-id"},
		{Hook: "ended", ID: s.ID(), Reason: session.ReasonDeleted},
	}
	if diff := cmp.Diff(want, events); diff != "" {
		t.Errorf("hook calls (-want +got):\n%s", diff)
	}
}

func TestCreateDuplicateID(t *testing.T) {
	m := newManager(t, session.Options{})
	first := mustCreate(t, m, &core.SessionInfo{ID: "dup"}, session.Limits{}, nil)
	if _, err := m.Create(&core.SessionInfo{ID: "dup"}, session.Limits{}, nil, nil); err == nil {
		t.Fatal("Create with a live session's id succeeded")
	}
	if got, _ := m.Get("dup"); got != first {
		t.Error("a duplicate Create replaced the live session")
	}
	if got := m.Len(); got != 1 {
		t.Errorf("Len() = %d, want 1", got)
	}
}

// TestHooksAndCloserOnce ends sessions in every way there is and checks
// that each one's Closer and Ended hooks ran exactly once, with its reason,
// even when several goroutines race to end it.
func TestHooksAndCloserOnce(t *testing.T) {
	reasons := []session.Reason{
		session.ReasonDeleted, session.ReasonUpstreamGone, session.ReasonInitFailed, session.ReasonIdle,
	}
	for _, reason := range reasons {
		t.Run(string(reason), func(t *testing.T) {
			rec := newRecorder()
			other := newRecorder() // a second subscriber sees the same events
			m := newManager(t, session.Options{Hooks: []session.Hooks{rec.hooks(), {}, other.hooks()}})
			s := mustCreate(t, m, &core.SessionInfo{ID: "s1"}, session.Limits{}, rec.closer("s1"))

			var wg sync.WaitGroup
			var ok atomic.Int32
			for range 16 {
				wg.Go(func() {
					if m.End(context.Background(), s.ID(), reason) == nil {
						ok.Add(1)
					}
				})
			}
			wg.Wait()
			if got := ok.Load(); got != 1 {
				t.Errorf("%d concurrent Ends succeeded, want exactly 1", got)
			}

			wantEvents := []event{{Hook: "created", ID: "s1"}, {Hook: "ended", ID: "s1", Reason: reason}}
			for name, r := range map[string]*recorder{"first": rec, "second": other} {
				events, _ := r.snapshot()
				if diff := cmp.Diff(wantEvents, events); diff != "" {
					t.Errorf("%s subscriber's hook calls (-want +got):\n%s", name, diff)
				}
			}
			_, closed := rec.snapshot()
			if diff := cmp.Diff(map[string][]session.Reason{"s1": {reason}}, closed); diff != "" {
				t.Errorf("closer calls (-want +got):\n%s", diff)
			}
		})
	}
}

// TestCloserRunsOutsideLock gives a session a Closer that calls back into
// the manager. Were it called with the manager's lock held, it would
// deadlock.
func TestCloserRunsOutsideLock(t *testing.T) {
	tests := []struct {
		name string
		end  func(m *session.Manager, id string)
	}{
		{"End", func(m *session.Manager, id string) { _ = m.End(context.Background(), id, session.ReasonDeleted) }},
		{"Close", func(m *session.Manager, _ string) { m.Close(context.Background()) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hookSawLen atomic.Int64
			hookSawLen.Store(-1)
			// Not newManager: after a deadlock, a cleanup Close would hang
			// the whole package instead of failing this test.
			var m *session.Manager
			m = session.NewManager(session.Options{Hooks: []session.Hooks{{
				Ended: func(*core.SessionInfo, session.Reason) { hookSawLen.Store(int64(m.Len())) },
			}}})
			var closerSaw struct {
				len   int
				get   error
				end   error
				other error
			}
			other := mustCreate(t, m, &core.SessionInfo{ID: "other"}, session.Limits{}, nil)
			closer := func(ctx context.Context, _ session.Reason) {
				closerSaw.len = m.Len()
				_, closerSaw.get = m.Get("target")
				closerSaw.end = m.End(ctx, "target", session.ReasonDeleted)
				closerSaw.other = m.End(ctx, other.ID(), session.ReasonUpstreamGone)
			}
			mustCreate(t, m, &core.SessionInfo{ID: "target"}, session.Limits{}, closer)

			done := make(chan struct{})
			go func() {
				defer close(done)
				tt.end(m, "target")
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("ending a session whose Closer calls the manager deadlocked")
			}
			defer m.Close(context.Background())
			if !errors.Is(closerSaw.get, session.ErrNotFound) || !errors.Is(closerSaw.end, session.ErrNotFound) {
				t.Errorf("inside the Closer the session is still registered: Get err=%v, End err=%v", closerSaw.get, closerSaw.end)
			}
			if tt.name == "End" {
				if closerSaw.len != 1 || closerSaw.other != nil {
					t.Errorf("inside the Closer: Len()=%d End(other)=%v, want 1 and nil", closerSaw.len, closerSaw.other)
				}
				if got := hookSawLen.Load(); got != 0 {
					t.Errorf("Len() seen from the Ended hook = %d, want 0", got)
				}
			}
		})
	}
}

func TestCloserContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const teardown = 3 * time.Second
		m := session.NewManager(session.Options{TeardownTimeout: teardown})
		defer m.Close(context.Background())

		var gotErr error
		var gotDeadline time.Time
		var hasDeadline, sawDone bool
		var s *session.Session
		closer := func(ctx context.Context, reason session.Reason) {
			gotErr = ctx.Err()
			gotDeadline, hasDeadline = ctx.Deadline()
			sawDone = isDone(s)
		}
		s = mustCreate(t, m, &core.SessionInfo{}, session.Limits{}, closer)

		// The request that ended the session is already gone; teardown
		// must still get its own bounded time.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		start := time.Now()
		if err := m.End(ctx, s.ID(), session.ReasonDeleted); err != nil {
			t.Fatal(err)
		}
		if gotErr != nil {
			t.Errorf("closer ctx.Err() = %v, want nil although the caller's ctx was cancelled", gotErr)
		}
		if !hasDeadline || !gotDeadline.Equal(start.Add(teardown)) {
			t.Errorf("closer deadline = %v (set %v), want now+TeardownTimeout = %v", gotDeadline, hasDeadline, start.Add(teardown))
		}
		if !sawDone {
			t.Error("Done() was not closed when the Closer ran")
		}
	})
}

func TestIdleExpiry(t *testing.T) {
	const (
		idle = time.Minute
		reap = 10 * time.Second
	)
	// Each step sleeps, lets the reaper run and then checks whether the
	// session is still live. Times are relative to the session's creation.
	type step struct {
		at     time.Duration
		action func(s *session.Session, held *[]struct{})
		live   bool
	}
	acquire := func(s *session.Session, held *[]struct{}) { *held = append(*held, s.Acquire()) }
	release := func(s *session.Session, held *[]struct{}) {
		s.Release((*held)[0])
		*held = (*held)[1:]
	}
	touch := func(s *session.Session, _ *[]struct{}) { s.Touch() }
	tests := []struct {
		name  string
		limit time.Duration // Limits.IdleTimeout
		steps []step
	}{
		{
			name: "untouched session ends after idle timeout plus reap interval",
			steps: []step{
				{at: idle - reap, live: true},
				{at: idle + reap, live: false},
			},
		},
		{
			name: "touch postpones expiry",
			steps: []step{
				{at: 50 * time.Second, action: touch, live: true},
				{at: 50*time.Second + idle - reap, live: true},
				{at: 50*time.Second + idle + reap, live: false},
			},
		},
		{
			name: "busy session never expires until released",
			steps: []step{
				{at: time.Second, action: acquire, live: true},
				{at: 10 * idle, live: true},
				{at: 100 * idle, action: release, live: true},
				{at: 100*idle + idle - reap, live: true},
				{at: 100*idle + idle + reap, live: false},
			},
		},
		{
			name: "every acquisition must be released",
			steps: []step{
				{at: 0, action: acquire, live: true},
				{at: time.Second, action: acquire, live: true},
				{at: 5 * idle, action: release, live: true},
				{at: 10 * idle, live: true},
				{at: 20 * idle, action: release, live: true},
				{at: 21*idle + reap, live: false},
			},
		},
		{
			name:  "per-session limit overrides the default",
			limit: 20 * time.Second,
			steps: []step{
				{at: 10 * time.Second, live: true},
				{at: 20*time.Second + reap, live: false},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rec := newRecorder()
				m := session.NewManager(session.Options{
					DefaultIdleTimeout: idle, ReapInterval: reap, Hooks: []session.Hooks{rec.hooks()},
				})
				defer m.Close(context.Background())
				s := mustCreate(t, m, &core.SessionInfo{ID: "s"}, session.Limits{IdleTimeout: tt.limit}, rec.closer("s"))
				start := time.Now()
				var held []struct{}
				for _, st := range tt.steps {
					time.Sleep(start.Add(st.at).Sub(time.Now()))
					synctest.Wait() // let the reaper act on the ticks due by now
					if live := !isDone(s); live != st.live {
						t.Fatalf("at %v: live = %v, want %v", st.at, live, st.live)
					}
					if st.action != nil {
						st.action(s, &held)
					}
				}
				if s.Reason() != session.ReasonIdle {
					t.Errorf("Reason() = %q, want %q", s.Reason(), session.ReasonIdle)
				}
				if _, err := m.Get("s"); !errors.Is(err, session.ErrNotFound) {
					t.Errorf("Get of an expired session: err = %v, want ErrNotFound", err)
				}
				events, closed := rec.snapshot()
				wantEvents := []event{{Hook: "created", ID: "s"}, {Hook: "ended", ID: "s", Reason: session.ReasonIdle}}
				if diff := cmp.Diff(wantEvents, events); diff != "" {
					t.Errorf("hook calls (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(map[string][]session.Reason{"s": {session.ReasonIdle}}, closed); diff != "" {
					t.Errorf("closer calls (-want +got):\n%s", diff)
				}
			})
		})
	}
}

// TestIdleDefaults checks the documented defaults of DefaultIdleTimeout and
// ReapInterval by when an untouched session ends.
func TestIdleDefaults(t *testing.T) {
	tests := []struct {
		name     string
		opts     session.Options
		liveAt   time.Duration // still live at this time
		endedBy  time.Duration // ended at the latest by this time
		wantReap time.Duration
	}{
		{"all defaults: 30m idle, 30s reap", session.Options{}, 30*time.Minute - time.Second, 30*time.Minute + 30*time.Second, 30 * time.Second},
		{"reap is a tenth of the idle timeout", session.Options{DefaultIdleTimeout: 2 * time.Minute}, 2*time.Minute - time.Second, 2*time.Minute + 12*time.Second, 12 * time.Second},
		{"reap at least 1s", session.Options{DefaultIdleTimeout: 5 * time.Second}, 5*time.Second - time.Millisecond, 6 * time.Second, time.Second},
		{"explicit reap interval", session.Options{DefaultIdleTimeout: time.Hour, ReapInterval: time.Second}, time.Hour - time.Millisecond, time.Hour + time.Second, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				m := session.NewManager(tt.opts)
				defer m.Close(context.Background())
				s := mustCreate(t, m, &core.SessionInfo{}, session.Limits{}, nil)
				start := time.Now()
				time.Sleep(tt.liveAt)
				synctest.Wait()
				if isDone(s) {
					t.Fatalf("session ended before %v", tt.liveAt)
				}
				time.Sleep(start.Add(tt.endedBy).Sub(time.Now()))
				synctest.Wait()
				if !isDone(s) {
					t.Fatalf("session still live at %v", tt.endedBy)
				}
				// The reaper noticed it at the first tick after expiry, not
				// one reap interval earlier.
				if age := time.Since(start); age <= tt.endedBy-tt.wantReap {
					t.Errorf("ended after %v, too early", age)
				}
			})
		})
	}
}

func TestClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder()
		m := session.NewManager(session.Options{Hooks: []session.Hooks{rec.hooks()}})
		const n = 20
		var sessions []*session.Session
		var finished atomic.Int32
		for i := range n {
			id := fmt.Sprintf("s%02d", i)
			inner := rec.closer(id)
			// Slow closers (fake time): Close must wait for every one of them.
			closer := func(ctx context.Context, reason session.Reason) {
				time.Sleep(10 * time.Millisecond)
				inner(ctx, reason)
				finished.Add(1)
			}
			sessions = append(sessions, mustCreate(t, m, &core.SessionInfo{ID: id}, session.Limits{}, closer))
		}
		// One session ended earlier keeps its own reason.
		if err := m.End(context.Background(), "s00", session.ReasonDeleted); err != nil {
			t.Fatal(err)
		}

		m.Close(context.Background())
		if got := finished.Load(); got != n {
			t.Errorf("Close returned after %d of %d closers finished", got, n)
		}
		if got := m.Len(); got != 0 {
			t.Errorf("Len() after Close = %d, want 0", got)
		}
		wantClosed := map[string][]session.Reason{}
		for i, s := range sessions {
			want := session.ReasonShutdown
			if i == 0 {
				want = session.ReasonDeleted
			}
			wantClosed[s.ID()] = []session.Reason{want}
			if !isDone(s) || s.Reason() != want {
				t.Errorf("%s: done=%v Reason()=%q, want %q", s.ID(), isDone(s), s.Reason(), want)
			}
			if err := m.End(context.Background(), s.ID(), session.ReasonDeleted); !errors.Is(err, session.ErrNotFound) {
				t.Errorf("End(%s) after Close: err = %v, want ErrNotFound", s.ID(), err)
			}
		}
		_, closed := rec.snapshot()
		if diff := cmp.Diff(wantClosed, closed); diff != "" {
			t.Errorf("closer calls (-want +got):\n%s", diff)
		}

		info := &core.SessionInfo{}
		if s, err := m.Create(info, session.Limits{}, rec.closer("late"), nil); !errors.Is(err, session.ErrClosed) || s != nil {
			t.Errorf("Create after Close = %v, %v; want nil, ErrClosed", s, err)
		}
		if got := m.Len(); got != 0 {
			t.Errorf("Len() after a refused Create = %d, want 0", got)
		}
		m.Close(context.Background()) // idempotent

		events, _ := rec.snapshot()
		created, ended := map[string]int{}, map[string]session.Reason{}
		for _, e := range events {
			switch e.Hook {
			case "created":
				created[e.ID]++
			case "ended":
				if _, dup := ended[e.ID]; dup {
					t.Errorf("Ended hook called twice for %s", e.ID)
				}
				ended[e.ID] = e.Reason
			}
		}
		if len(created) != n || len(ended) != n {
			t.Errorf("hooks: %d created, %d ended; want %d each", len(created), len(ended), n)
		}
		for id, r := range ended {
			if want := wantClosed[id][0]; r != want {
				t.Errorf("Ended hook for %s: reason %q, want %q", id, r, want)
			}
		}
	})
}

// TestConcurrent hammers one manager from many goroutines; run with -race.
func TestConcurrent(t *testing.T) {
	const (
		workers = 64
		perWork = 200
	)
	var created, ended, closed atomic.Int64
	m := session.NewManager(session.Options{Hooks: []session.Hooks{{
		Created: func(*core.SessionInfo) { created.Add(1) },
		Ended:   func(*core.SessionInfo, session.Reason) { ended.Add(1) },
	}}})
	closer := func(context.Context, session.Reason) { closed.Add(1) }

	ids := make(chan string, workers*perWork)
	var ends atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			ctx := context.Background()
			for i := range perWork {
				s, err := m.Create(&core.SessionInfo{Route: "r"}, session.Limits{}, closer, nil)
				if err != nil {
					t.Errorf("Create: %v", err)
					return
				}
				got, err := m.Get(s.ID())
				if err != nil || got != s {
					t.Errorf("Get(%s) = %p, %v; want %p", s.ID(), got, err, s)
				}
				s.Release(s.Acquire())
				s.Touch()
				_ = m.Len()
				switch i % 3 {
				case 0: // end our own
					if err := m.End(ctx, s.ID(), session.ReasonDeleted); err != nil {
						t.Errorf("End own session: %v", err)
					}
					ends.Add(1)
				default: // hand it to someone else, and end one handed to us
					ids <- s.ID()
					select {
					case id := <-ids:
						// Two ends race for the same id; exactly one wins.
						var inner sync.WaitGroup
						var wins atomic.Int32
						for range 2 {
							inner.Go(func() {
								if m.End(ctx, id, session.Reason(fmt.Sprint("w", w))) == nil {
									wins.Add(1)
								}
							})
						}
						inner.Wait()
						if wins.Load() != 1 {
							t.Errorf("%d concurrent Ends of %s succeeded, want 1", wins.Load(), id)
						}
						ends.Add(1)
					default:
					}
				}
			}
		})
	}
	wg.Wait()
	close(ids)
	leftover := int64(len(ids))
	if got, want := int64(m.Len()), leftover; got != want {
		t.Errorf("Len() = %d, want %d still-live sessions", got, want)
	}
	m.Close(context.Background())

	total := int64(workers * perWork)
	if ends.Load()+leftover != total {
		t.Errorf("ended %d + leftover %d != created %d", ends.Load(), leftover, total)
	}
	for name, got := range map[string]int64{"Created hooks": created.Load(), "Ended hooks": ended.Load(), "closers": closed.Load()} {
		if got != total {
			t.Errorf("%s = %d, want %d", name, got, total)
		}
	}
}

// TestConcurrentCreateAndClose races Create against Close: every session
// that Create admitted is ended with ReasonShutdown, every other Create
// gets ErrClosed, and nothing leaks.
func TestConcurrentCreateAndClose(t *testing.T) {
	for range 20 {
		m := session.NewManager(session.Options{})
		var admitted sync.Map
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 16 {
			wg.Go(func() {
				<-start
				for {
					s, err := m.Create(&core.SessionInfo{}, session.Limits{}, nil, nil)
					if errors.Is(err, session.ErrClosed) {
						return
					}
					if err != nil {
						t.Errorf("Create: %v", err)
						return
					}
					admitted.Store(s, true)
				}
			})
		}
		close(start)
		m.Close(context.Background())
		wg.Wait()
		admitted.Range(func(k, _ any) bool {
			s := k.(*session.Session)
			if !isDone(s) || s.Reason() != session.ReasonShutdown {
				t.Errorf("session %s admitted before Close: done=%v reason=%q", s.ID(), isDone(s), s.Reason())
			}
			return true
		})
		if m.Len() != 0 {
			t.Errorf("Len() after Close = %d", m.Len())
		}
	}
}

func BenchmarkCreateEnd(b *testing.B) {
	m := newManager(b, session.Options{})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		s, err := m.Create(&core.SessionInfo{}, session.Limits{}, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := m.End(ctx, s.ID(), session.ReasonDeleted); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGetParallel(b *testing.B) {
	m := newManager(b, session.Options{})
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = mustCreate(b, m, &core.SessionInfo{}, session.Limits{}, nil).ID()
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := m.Get(ids[i%len(ids)]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

func Example() {
	m := session.NewManager(session.Options{
		DefaultIdleTimeout: time.Minute,
		Hooks: []session.Hooks{{
			Ended: func(info *core.SessionInfo, reason session.Reason) {
				fmt.Println("ended:", info.ID, reason)
			},
		}},
	})
	defer m.Close(context.Background())

	closer := func(ctx context.Context, reason session.Reason) { fmt.Println("closing upstream:", reason) }
	s, err := m.Create(&core.SessionInfo{ID: "abc", Route: "default"}, session.Limits{}, closer, nil)
	if err != nil {
		panic(err)
	}
	s.Release(s.Acquire()) // a request in flight keeps the session alive

	_ = m.End(context.Background(), s.ID(), session.ReasonDeleted)
	_, err = m.Get("abc")
	fmt.Println(err)
	// Output:
	// closing upstream: deleted
	// ended: abc deleted
	// session not found
}

// TestCapErrorWhileScopeChanges refuses admissions to a full scope while
// its members come and go. Building the *CapError reads the scope's oldest
// member, so it must happen under the admission lock (run with -race).
func TestCapErrorWhileScopeChanges(t *testing.T) {
	m := newManager(t, session.Options{})
	adm := session.Admission{Route: "r", RouteCap: session.Cap{Max: 1, Policy: session.Reject}}
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 500 {
				r, err := m.Reserve(ctx, adm)
				if err != nil {
					var ce *session.CapError
					if !errors.As(err, &ce) {
						t.Errorf("Reserve: %v, want a *CapError", err)
						return
					}
					if ce.Scope != session.ScopeRoute || ce.Key != "r" || ce.Max != 1 || ce.RetryAfter < time.Second || ce.RetryAfter > 5*time.Minute {
						t.Errorf("CapError = %+v", *ce)
					}
					continue
				}
				s, err := r.Commit(&core.SessionInfo{Route: "r"}, session.Limits{}, nil, nil)
				if err != nil {
					t.Errorf("Commit: %v", err)
					return
				}
				if err := m.End(ctx, s.ID(), session.ReasonDeleted); err != nil {
					t.Errorf("End: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if got := m.Count(session.ScopeRoute, "r"); got != 0 {
		t.Errorf("Count(route r) = %d after every session ended, want 0", got)
	}
}
