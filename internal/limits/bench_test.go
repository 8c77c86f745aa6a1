package limits

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// allower is what the benchmarks drive: both limiters, nil or not.
type allower interface {
	Allow(key string, now time.Time) (bool, time.Duration)
}

func BenchmarkWindowAllow(b *testing.B) {
	// 10 per second, with the serial clock at exactly that rate: every
	// call expires one admission and records one.
	benchmarkAllow(b, func() allower { return NewWindow(10, time.Second, WindowOptions{}) }, 100*time.Millisecond)
	b.Run("nil", func(b *testing.B) {
		benchmarkSerial(b, (*Window)(nil), time.Millisecond)
	})
}

func BenchmarkBucketsAllow(b *testing.B) {
	benchmarkAllow(b, func() allower { return NewBuckets(10, 20, BucketOptions{}) }, 100*time.Millisecond)
	b.Run("nil", func(b *testing.B) {
		benchmarkSerial(b, (*Buckets)(nil), time.Millisecond)
	})
}

func benchmarkAllow(b *testing.B, newLimiter func() allower, step time.Duration) {
	b.Run("existing_key", func(b *testing.B) {
		benchmarkSerial(b, newLimiter(), step)
	})
	// The parallel cases read time.Now() as callers do; their keys are
	// mostly over the limit, so they measure the refusal path under
	// contention.
	b.Run("parallel_distinct_keys", func(b *testing.B) {
		l := newLimiter()
		keys := make([]string, 1024)
		for i := range keys {
			keys[i] = fmt.Sprintf("198.51.100.%d:%d", i%256, 40000+i)
		}
		var next atomic.Int64
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			key := keys[int(next.Add(1))%len(keys)]
			for pb.Next() {
				l.Allow(key, time.Now())
			}
		})
	})
	b.Run("parallel_one_key", func(b *testing.B) {
		l := newLimiter()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				l.Allow("", time.Now())
			}
		})
	})
}

func benchmarkSerial(b *testing.B, l allower, step time.Duration) {
	now := time.Now()
	l.Allow("203.0.113.7", now)
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(step)
		l.Allow("203.0.113.7", now)
	}
}

// BenchmarkSnapshot measures what the gateway's saver pays per save: one
// MarshalBinary of 100k keys (a Window of 4 admissions each, a bucket
// each).
func BenchmarkSnapshot(b *testing.B) {
	const keys = 100_000
	now := time.Now()
	w := NewWindow(4, time.Hour, WindowOptions{MaxKeys: keys})
	bk := NewBuckets(1, 4, BucketOptions{MaxKeys: keys})
	for i := range keys {
		k := fmt.Sprintf("198.51.%d.%d", i/256, i%256)
		for j := range 4 {
			w.Allow(k, now.Add(time.Duration(j)*time.Second))
		}
		bk.Allow(k, now)
	}
	for _, l := range []struct {
		name string
		m    interface{ AppendBinary([]byte) ([]byte, error) }
	}{{"window", w}, {"buckets", bk}} {
		b.Run(l.name, func(b *testing.B) {
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				buf, _ = l.m.AppendBinary(buf[:0])
			}
			b.ReportMetric(float64(len(buf))/keys, "B/key")
		})
	}
}
