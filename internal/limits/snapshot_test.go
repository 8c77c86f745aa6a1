package limits

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// windowState is a Window's state as wall-clock admission times per key.
func windowState(w *Window) map[string][]int64 {
	out := map[string][]int64{}
	base := w.t.base.UnixNano()
	for i := range w.t.shards {
		s := &w.t.shards[i]
		s.mu.Lock()
		for k, r := range s.m {
			for j := range r.n {
				out[k] = append(out[k], base+r.t[(r.head+j)%len(r.t)])
			}
		}
		s.mu.Unlock()
	}
	return out
}

type bucketState struct {
	Last   int64
	Tokens float64
}

// bucketsState is a Buckets' state: each key's last event and the tokens
// it held then.
func bucketsState(b *Buckets) map[string]bucketState {
	out := map[string]bucketState{}
	for i := range b.t.shards {
		s := &b.t.shards[i]
		s.mu.Lock()
		for k, e := range s.m {
			out[k] = bucketState{e.last.UnixNano(), e.lim.TokensAt(e.last)}
		}
		s.mu.Unlock()
	}
	return out
}

// tokensClose compares token counts to within the float error of a
// restore (a nanosecond's worth of refill, and rounding).
var tokensClose = cmpopts.EquateApprox(0, 1e-6)

// A restored Window continues exactly where the saved one was: the same
// admissions, so the same answers from then on.
func TestWindowSnapshotContinues(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const limit, window = 5, 10 * time.Second
		start := time.Now()
		w := NewWindow(limit, window, WindowOptions{})
		rng := rand.New(rand.NewPCG(1, 2))
		keys := []string{"", "203.0.113.7", "principal:alice", "ü"}
		for range 200 {
			time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond)
			w.Allow(keys[rng.IntN(len(keys))], time.Now())
		}
		data, err := w.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		// A new process: a new base, a while later.
		time.Sleep(1500 * time.Millisecond)
		w2 := NewWindow(limit, window, WindowOptions{})
		if err := w2.UnmarshalBinary(data); err != nil {
			t.Fatal(err)
		}
		// Admissions that had left the window by the restore (the saved
		// Window had not swept them yet) are not restored.
		live := map[string][]int64{}
		for k, times := range windowState(w) {
			for _, at := range times {
				if at > time.Now().Add(-window).UnixNano() {
					live[k] = append(live[k], at)
				}
			}
		}
		if diff := cmp.Diff(live, windowState(w2)); diff != "" {
			t.Fatalf("restored state (-saved +restored):\n%s", diff)
		}
		for i := range 300 {
			time.Sleep(time.Duration(rng.IntN(100)) * time.Millisecond)
			k := keys[rng.IntN(len(keys))]
			now := time.Now()
			ok1, r1 := w.Allow(k, now)
			ok2, r2 := w2.Allow(k, now)
			if ok1 != ok2 || r1 != r2 {
				t.Fatalf("call %d at %v, key %q: saved %v %v, restored %v %v", i, now.Sub(start), k, ok1, r1, ok2, r2)
			}
		}
	})
}

func TestBucketsSnapshotContinues(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBuckets(10, 5, BucketOptions{})
		keys := []string{"principal:alice", "address:203.0.113.7", ""}
		rng := rand.New(rand.NewPCG(3, 4))
		for range 300 {
			time.Sleep(time.Duration(rng.IntN(40)) * time.Millisecond)
			b.Allow(keys[rng.IntN(len(keys))], time.Now())
		}
		data, err := b.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		b2 := NewBuckets(10, 5, BucketOptions{})
		if err := b2.UnmarshalBinary(data); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(bucketsState(b), bucketsState(b2), tokensClose); diff != "" {
			t.Fatalf("restored state (-saved +restored):\n%s", diff)
		}
		// Empty alice's bucket in both; the refusals then agree on when
		// the next token comes, to within rounding.
		now := time.Now()
		for ok := true; ok; ok, _ = b.Allow(keys[0], now) {
		}
		for ok := true; ok; ok, _ = b2.Allow(keys[0], now) {
		}
		_, r1 := b.Allow(keys[0], now)
		_, r2 := b2.Allow(keys[0], now)
		if d := r1 - r2; d < -time.Microsecond || d > time.Microsecond {
			t.Errorf("retry after: saved %v, restored %v", r1, r2)
		}
		time.Sleep(time.Second)
		if got, want := bucketsState(b2)[keys[1]].Tokens, bucketsState(b)[keys[1]].Tokens; math.Abs(got-want) > 1e-6 {
			t.Errorf("untouched key's tokens: restored %v, saved %v", got, want)
		}
	})
}

// A crash loses the admissions made after the last save, never more: the
// restored state is the saved one, from which a key that was exhausted
// stays exhausted.
func TestSnapshotKeepsExhaustedKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := NewWindow(3, time.Minute, WindowOptions{})
		b := NewBuckets(0.01, 3, BucketOptions{})
		for range 3 {
			w.Allow("k", time.Now())
			b.Allow("k", time.Now())
		}
		wd, _ := w.MarshalBinary()
		bd, _ := b.MarshalBinary()
		time.Sleep(10 * time.Second)
		w2 := NewWindow(3, time.Minute, WindowOptions{})
		b2 := NewBuckets(0.01, 3, BucketOptions{})
		if err := errors.Join(w2.UnmarshalBinary(wd), b2.UnmarshalBinary(bd)); err != nil {
			t.Fatal(err)
		}
		if ok, retry := w2.Allow("k", time.Now()); ok || retry != 50*time.Second {
			t.Errorf("window after restore: %v, retry %v; want refused, 50s", ok, retry)
		}
		if ok, retry := b2.Allow("k", time.Now()); ok || retry != 90*time.Second {
			t.Errorf("bucket after restore: %v, retry %v; want refused, 90s", ok, retry)
		}
		if ok, _ := w2.Allow("other", time.Now()); !ok {
			t.Error("a key not in the snapshot is refused")
		}
	})
}

func TestVersion(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := NewWindow(1, time.Minute, WindowOptions{})
		b := NewBuckets(0.01, 1, BucketOptions{})
		check := func(what string, wantW, wantB uint64) {
			t.Helper()
			if gw, gb := w.Version(), b.Version(); gw != wantW || gb != wantB {
				t.Errorf("%s: Version = %d, %d; want %d, %d", what, gw, gb, wantW, wantB)
			}
		}
		check("new", 0, 0)
		w.Allow("a", time.Now())
		b.Allow("a", time.Now())
		check("admitted", 1, 1)
		w.Allow("a", time.Now())
		b.Allow("a", time.Now())
		check("refused", 1, 1)
		_, _ = w.MarshalBinary()
		_, _ = b.MarshalBinary()
		check("marshalled", 1, 1)
		w.Undo(t.Context(), "a", time.Now())
		check("undone", 2, 1)
		w.Undo(t.Context(), "a", time.Now())
		w.Undo(t.Context(), "never", time.Now())
		check("nothing to undo", 2, 1)
		time.Sleep(2 * time.Minute)
		w.Sweep(time.Now())
		b.Sweep(time.Now())
		check("swept", 2, 1)
		var nw *Window
		var nb *Buckets
		if nw.Version() != 0 || nb.Version() != 0 {
			t.Error("nil limiters have a version")
		}
	})
}

// State saved under other settings is read as strictly as the new ones
// allow: no more admissions than the limit, no more tokens than the burst.
func TestSnapshotNewSettings(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := NewWindow(10, time.Minute, WindowOptions{})
		for i := range 10 {
			w.Allow("k", time.Now())
			time.Sleep(time.Duration(i) * time.Second)
		}
		data, _ := w.MarshalBinary()
		w2 := NewWindow(3, time.Minute, WindowOptions{})
		if err := w2.UnmarshalBinary(data); err != nil {
			t.Fatal(err)
		}
		saved := windowState(w)["k"]
		if diff := cmp.Diff(saved[len(saved)-3:], windowState(w2)["k"]); diff != "" {
			t.Errorf("kept admissions (-want +got):\n%s", diff)
		}

		b := NewBuckets(1, 100, BucketOptions{})
		b.Allow("k", time.Now())
		bd, _ := b.MarshalBinary()
		b2 := NewBuckets(1, 2, BucketOptions{})
		if err := b2.UnmarshalBinary(bd); err != nil {
			t.Fatal(err)
		}
		if got := bucketsState(b2)["k"].Tokens; got != 2 {
			t.Errorf("tokens after restore with a smaller burst = %v, want 2", got)
		}
	})
}

// Saved times later than the restoring limiter's creation (the wall clock
// stepped back across the restart) are taken as made at its creation.
func TestSnapshotClockSteppedBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w2 := NewWindow(1, time.Minute, WindowOptions{})
		b2 := NewBuckets(1, 1, BucketOptions{})
		made := time.Now()
		time.Sleep(time.Hour)
		w := NewWindow(1, time.Minute, WindowOptions{})
		b := NewBuckets(1, 1, BucketOptions{})
		w.Allow("k", time.Now())
		b.Allow("k", time.Now())
		wd, _ := w.MarshalBinary()
		bd, _ := b.MarshalBinary()
		if err := errors.Join(w2.UnmarshalBinary(wd), b2.UnmarshalBinary(bd)); err != nil {
			t.Fatal(err)
		}
		if got := windowState(w2)["k"]; len(got) != 1 || got[0] != made.UnixNano() {
			t.Errorf("restored admission %v, want [%d]", got, made.UnixNano())
		}
		if got := bucketsState(b2)["k"].Last; got != made.UnixNano() {
			t.Errorf("restored last event %d, want %d", got, made.UnixNano())
		}
		if ok, _ := w2.Allow("k", made.Add(time.Minute)); !ok {
			t.Error("window still refuses a window after its creation")
		}
	})
}

func TestSnapshotMaxKeys(t *testing.T) {
	w := NewWindow(1, time.Minute, WindowOptions{})
	b := NewBuckets(1, 1, BucketOptions{})
	now := time.Now()
	for i := range 10 {
		w.Allow(fmt.Sprint(i), now)
		b.Allow(fmt.Sprint(i), now)
	}
	wd, _ := w.MarshalBinary()
	bd, _ := b.MarshalBinary()
	w2 := NewWindow(1, time.Minute, WindowOptions{MaxKeys: 4})
	b2 := NewBuckets(1, 1, BucketOptions{MaxKeys: 4})
	if err := errors.Join(w2.UnmarshalBinary(wd), b2.UnmarshalBinary(bd)); err != nil {
		t.Fatal(err)
	}
	if w2.Len() != 4 || b2.Len() != 4 || len(windowState(w2)) != 4 || len(bucketsState(b2)) != 4 {
		t.Errorf("Len after restoring 10 keys into 4 = %d, %d; want 4, 4", w2.Len(), b2.Len())
	}
	// Restoring replaces: the count starts again from the snapshot.
	if err := w2.UnmarshalBinary(wd); err != nil || w2.Len() != 4 {
		t.Errorf("second restore: %v, Len %d; want 4", err, w2.Len())
	}
	empty, _ := NewWindow(1, time.Minute, WindowOptions{}).MarshalBinary()
	if err := w2.UnmarshalBinary(empty); err != nil || w2.Len() != 0 {
		t.Errorf("restoring an empty snapshot: %v, Len %d; want 0", err, w2.Len())
	}
}

func TestSnapshotNil(t *testing.T) {
	var w *Window
	var b *Buckets
	for _, m := range []interface {
		MarshalBinary() ([]byte, error)
		UnmarshalBinary([]byte) error
	}{w, b} {
		if data, err := m.MarshalBinary(); data != nil || err != nil {
			t.Errorf("%T.MarshalBinary = %q, %v; want nil, nil", m, data, err)
		}
		if err := m.UnmarshalBinary([]byte("anything")); err != nil {
			t.Errorf("%T.UnmarshalBinary: %v", m, err)
		}
	}
}

func TestSnapshotCorrupt(t *testing.T) {
	w := NewWindow(3, time.Minute, WindowOptions{})
	b := NewBuckets(1, 3, BucketOptions{})
	now := time.Now()
	w.Allow("kept", now)
	b.Allow("kept", now)
	win := func(s string) []byte { return append(windowMagic[:], s...) }
	bkt := func(s string) []byte { return append(bucketsMagic[:], s...) }
	nan := string([]byte{0x7f, 0xf8, 0, 0, 0, 0, 0, 1})
	neg := string([]byte{0xbf, 0xf0, 0, 0, 0, 0, 0, 0}) // -1.0
	tests := []struct {
		name string
		into interface{ UnmarshalBinary([]byte) error }
		data []byte
	}{
		{"empty", w, nil},
		{"buckets into window", w, bkt("")},
		{"window into buckets", b, win("")},
		{"other version", w, []byte{'M', 'G', 'W', 2}},
		{"key length beyond data", w, win("\x05ab")},
		{"truncated count", w, win("\x01a")},
		{"zero count", w, win("\x01a\x00\x02")},
		{"count beyond data", w, win("\x01a\x7f\x02")},
		{"truncated gap", w, win("\x01a\x02\x02")},
		{"gap overflows", w, win("\x01a\x02\xfe\xff\xff\xff\xff\xff\xff\xff\xff\x01\xff\xff\xff\xff\xff\xff\xff\xff\x7f")},
		{"key twice", w, win("\x01a\x01\x02\x01a\x01\x02")},
		{"truncated tokens", b, bkt("\x01a\x02\x00\x00")},
		{"NaN tokens", b, bkt("\x01a\x02" + nan)},
		{"negative tokens", b, bkt("\x01a\x02" + neg)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.into.UnmarshalBinary(tt.data); !errors.Is(err, ErrCorruptSnapshot) {
				t.Errorf("UnmarshalBinary(%q) = %v, want ErrCorruptSnapshot", tt.data, err)
			}
			if _, ok := windowState(w)["kept"]; !ok || w.Len() != 1 {
				t.Error("a failed restore changed the window")
			}
			if _, ok := bucketsState(b)["kept"]; !ok || b.Len() != 1 {
				t.Error("a failed restore changed the buckets")
			}
		})
	}
}

// FuzzWindowSnapshot checks that any snapshot UnmarshalBinary accepts
// round-trips: what it restored encodes to a snapshot that restores the
// same state.
func FuzzWindowSnapshot(f *testing.F) {
	w := NewWindow(4, time.Minute, WindowOptions{})
	now := time.Now()
	for i := range 6 {
		w.Allow(fmt.Sprint(i%3), now.Add(time.Duration(i)*time.Second))
	}
	seed, _ := w.MarshalBinary()
	f.Add(seed)
	f.Add(windowMagic[:])
	f.Add([]byte("MGW\x01\x01a\x02\x02\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// In a bubble, both limiters are made at the same instant.
		synctest.Test(t, func(t *testing.T) {
			w1 := NewWindow(4, time.Minute, WindowOptions{MaxKeys: 64})
			if err := w1.UnmarshalBinary(data); err != nil {
				if !errors.Is(err, ErrCorruptSnapshot) {
					t.Fatalf("error %v does not wrap ErrCorruptSnapshot", err)
				}
				return
			}
			for k, times := range windowState(w1) {
				if len(times) == 0 || len(times) > 4 {
					t.Fatalf("key %q restored with %d admissions", k, len(times))
				}
			}
			again, err := w1.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			w2 := NewWindow(4, time.Minute, WindowOptions{MaxKeys: 64})
			if err := w2.UnmarshalBinary(again); err != nil {
				t.Fatalf("re-encoded snapshot refused: %v", err)
			}
			if diff := cmp.Diff(windowState(w1), windowState(w2), cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("round trip (-first +second):\n%s", diff)
			}
		})
	})
}

func FuzzBucketsSnapshot(f *testing.F) {
	b := NewBuckets(2, 4, BucketOptions{})
	now := time.Now()
	for i := range 6 {
		b.Allow(fmt.Sprint(i%3), now)
	}
	seed, _ := b.MarshalBinary()
	f.Add(seed)
	f.Add(bucketsMagic[:])
	f.Fuzz(func(t *testing.T, data []byte) {
		// In a bubble, both limiters are made at the same instant.
		synctest.Test(t, func(t *testing.T) {
			b1 := NewBuckets(2, 4, BucketOptions{MaxKeys: 64})
			if err := b1.UnmarshalBinary(data); err != nil {
				if !errors.Is(err, ErrCorruptSnapshot) {
					t.Fatalf("error %v does not wrap ErrCorruptSnapshot", err)
				}
				return
			}
			for k, s := range bucketsState(b1) {
				if !(s.Tokens >= -1e-9 && s.Tokens <= 4+1e-9) {
					t.Fatalf("key %q restored with %v tokens", k, s.Tokens)
				}
			}
			again, err := b1.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			b2 := NewBuckets(2, 4, BucketOptions{MaxKeys: 64})
			if err := b2.UnmarshalBinary(again); err != nil {
				t.Fatalf("re-encoded snapshot refused: %v", err)
			}
			if diff := cmp.Diff(bucketsState(b1), bucketsState(b2), tokensClose, cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("round trip (-first +second):\n%s", diff)
			}
		})
	})
}
