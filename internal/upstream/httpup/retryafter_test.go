package httpup

import (
	"net/http"
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	future := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	for _, tt := range []struct {
		in       string
		min, max time.Duration
	}{
		{"", 0, 0},
		{"0", 0, 0},
		{"3", 3 * time.Second, 3 * time.Second},
		{"86400", time.Hour, time.Hour}, // capped
		{"-1", 0, 0},
		{"soon", 0, 0},
		{future, 80 * time.Second, 90 * time.Second},
		{"Wed, 21 Oct 2015 07:28:00 GMT", 0, 0}, // past
	} {
		h := http.Header{}
		if tt.in != "" {
			h.Set("Retry-After", tt.in)
		}
		if got := retryAfter(h); got < tt.min || got > tt.max {
			t.Errorf("retryAfter(%q) = %v, want in [%v, %v]", tt.in, got, tt.min, tt.max)
		}
	}
}

// FuzzRetryAfter: any header value gives a delay in [0, 1h], never a
// panic.
func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"", "1", "120", "Wed, 21 Oct 2015 07:28:00 GMT", "-5", "99999999999999999999", "1.5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h := http.Header{"Retry-After": {s}}
		if d := retryAfter(h); d < 0 || d > time.Hour {
			t.Fatalf("retryAfter(%q) = %v", s, d)
		}
	})
}
