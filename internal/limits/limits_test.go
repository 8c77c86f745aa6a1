package limits

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"
)

func TestRetryAfterSeconds(t *testing.T) {
	tests := []struct {
		name string
		d    time.Duration
		want string
	}{
		{"negative", -time.Second, "1"},
		{"zero", 0, "1"},
		{"one nanosecond", time.Nanosecond, "1"},
		{"half a second", 500 * time.Millisecond, "1"},
		{"one second", time.Second, "1"},
		{"just over a second", time.Second + time.Nanosecond, "2"},
		{"seven seconds", 7 * time.Second, "7"},
		{"a minute and a bit", time.Minute + time.Millisecond, "61"},
		{"longest duration", math.MaxInt64, "9223372037"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RetryAfterSeconds(tt.d); got != tt.want {
				t.Errorf("RetryAfterSeconds(%v) = %q, want %q", tt.d, got, tt.want)
			}
		})
	}
}

func TestLimiterFunc(t *testing.T) {
	var gotKey string
	l := Limiter(LimiterFunc(func(_ context.Context, key string, _ time.Time) (time.Duration, error) {
		gotKey = key
		return time.Second, ErrLimited
	}))
	d, err := l.Admit(t.Context(), "k", time.Now())
	if gotKey != "k" || d != time.Second || !errors.Is(err, ErrLimited) {
		t.Errorf("Admit = %v, %v (key %q), want 1s, ErrLimited (key k)", d, err, gotKey)
	}
}

// Switched-off limiters are nil and must behave as "no limit" for every
// method, through the interface too, without allocating.
func TestNilLimiters(t *testing.T) {
	tests := []struct {
		name    string
		limiter Limiter
		isNil   bool
	}{
		{"window limit 0", NewWindow(0, time.Second, WindowOptions{}), true},
		{"window negative limit", NewWindow(-1, time.Second, WindowOptions{}), true},
		{"window zero duration", NewWindow(3, 0, WindowOptions{}), true},
		{"buckets rate 0", NewBuckets(0, 10, BucketOptions{}), true},
		{"buckets negative rate", NewBuckets(-1, 10, BucketOptions{}), true},
		{"buckets NaN rate", NewBuckets(math.NaN(), 10, BucketOptions{}), true},
		{"buckets infinite rate", NewBuckets(math.Inf(1), 10, BucketOptions{}), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Now()
			switch l := tt.limiter.(type) {
			case *Window:
				if l != nil {
					t.Fatal("constructor returned a non-nil *Window")
				}
				l.Undo(t.Context(), "k", now)
				if n := l.Sweep(now); n != 0 {
					t.Errorf("Sweep = %d, want 0", n)
				}
				if n := l.Len(); n != 0 {
					t.Errorf("Len = %d, want 0", n)
				}
				if ok, d := l.Allow("k", now); !ok || d != 0 {
					t.Errorf("Allow = %v, %v, want true, 0", ok, d)
				}
				if a := testing.AllocsPerRun(100, func() { l.Allow("k", now); l.Undo(t.Context(), "k", now) }); a != 0 {
					t.Errorf("nil Window allocates %v per call, want 0", a)
				}
			case *Buckets:
				if l != nil {
					t.Fatal("constructor returned a non-nil *Buckets")
				}
				if n := l.Sweep(now); n != 0 {
					t.Errorf("Sweep = %d, want 0", n)
				}
				if n := l.Len(); n != 0 {
					t.Errorf("Len = %d, want 0", n)
				}
				if ok, d := l.Allow("k", now); !ok || d != 0 {
					t.Errorf("Allow = %v, %v, want true, 0", ok, d)
				}
				if a := testing.AllocsPerRun(100, func() { l.Allow("k", now) }); a != 0 {
					t.Errorf("nil Buckets allocates %v per call, want 0", a)
				}
			}
			if !Off(tt.limiter) {
				t.Error("Off = false for a switched-off limiter")
			}
			for range 1000 {
				if d, err := tt.limiter.Admit(t.Context(), "k", now); err != nil || d != 0 {
					t.Fatalf("Admit = %v, %v, want 0, nil", d, err)
				}
			}
		})
	}
}

func TestOff(t *testing.T) {
	tests := []struct {
		name string
		l    Limiter
		want bool
	}{
		{"nil interface", nil, true},
		{"nil window", (*Window)(nil), true},
		{"nil buckets", (*Buckets)(nil), true},
		{"window", NewWindow(1, time.Second, WindowOptions{}), false},
		{"buckets", NewBuckets(1, 1, BucketOptions{}), false},
		{"func", LimiterFunc(func(context.Context, string, time.Time) (time.Duration, error) { return 0, nil }), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Off(tt.l); got != tt.want {
				t.Errorf("Off = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRefused(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{ErrLimited, true},
		{ErrTooManyKeys, true},
		{fmt.Errorf("shared window: %w", ErrLimited), true},
		{errors.New("connection refused"), false},
		{context.DeadlineExceeded, false},
	}
	for _, tt := range tests {
		if got := Refused(tt.err); got != tt.want {
			t.Errorf("Refused(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
