package redisstore

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/limits"
)

// The limiter benchmarks measure one check: one EVALSHA round trip to the
// test Redis on loopback, the script, and the client's encoding.

func BenchmarkWindowAdmit(b *testing.B) {
	s := openStore(b, Options{})
	benchmarkLimiter(b, map[string]limits.Limiter{
		// Admissions leave within a millisecond: the set stays small and
		// nearly every check admits.
		"admit": s.NewWindow("admit", 1000, time.Millisecond),
		// One admission an hour: every check after the first refuses.
		"refuse": s.NewWindow("refuse", 1, time.Hour),
	})
}

func BenchmarkBucketsAdmit(b *testing.B) {
	s := openStore(b, Options{})
	benchmarkLimiter(b, map[string]limits.Limiter{
		// A token every 10µs, far faster than a round trip: every check
		// admits.
		"admit":  s.NewBuckets("admit", 1e5, 1000),
		"refuse": s.NewBuckets("refuse", 0.001, 1),
	})
}

func benchmarkLimiter(b *testing.B, ls map[string]limits.Limiter) {
	for _, name := range []string{"admit", "refuse"} {
		l := ls[name]
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			_, _ = l.Admit(ctx, "203.0.113.7", time.Now()) // load the script
			b.ReportAllocs()
			for b.Loop() {
				if _, err := l.Admit(ctx, "203.0.113.7", time.Now()); err != nil && !limits.Refused(err) {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/parallel_distinct_keys", func(b *testing.B) {
			var next atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				key := "198.51.100." + strconv.FormatInt(next.Add(1), 10)
				ctx := context.Background()
				for pb.Next() {
					if _, err := l.Admit(ctx, key, time.Now()); err != nil && !limits.Refused(err) {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
