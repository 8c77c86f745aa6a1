package redisstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

// The benchmarks run against the test Redis (see helpers_test.go); on
// loopback, Put and Get measure one round trip plus encoding, Touch none.

// seed writes n records and returns their ids.
func seed(b *testing.B, s *Store, n int) []string {
	b.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("session-%08d", i)
		if err := s.Put(context.Background(), storetest.Record(ids[i])); err != nil {
			b.Fatal(err)
		}
	}
	return ids
}

func BenchmarkPut(b *testing.B) {
	s := openStore(b, Options{})
	ctx := context.Background()
	r := storetest.Record("s1")
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Put(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGet(b *testing.B) {
	s := openStore(b, Options{})
	ids := seed(b, s, 1000)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := s.Get(ctx, ids[i%len(ids)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkTouch(b *testing.B) {
	s := openStore(b, Options{})
	ids := seed(b, s, 1000)
	ctx := context.Background()
	at := time.Now()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := s.Touch(ctx, ids[i%len(ids)], at.Add(time.Duration(i))); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkTouchParallel(b *testing.B) {
	s := openStore(b, Options{})
	ids := seed(b, s, 1000)
	ctx := context.Background()
	at := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if err := s.Touch(ctx, ids[i%len(ids)], at.Add(time.Duration(i))); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// BenchmarkFlush10k is the background cost, per interval, of 10k sessions
// that each saw activity: one round trip.
func BenchmarkFlush10k(b *testing.B) {
	s := openStore(b, Options{FlushInterval: time.Hour})
	ids := seed(b, s, 10000)
	ctx := context.Background()
	at := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		at = at.Add(time.Second)
		for _, id := range ids {
			_ = s.Touch(ctx, id, at)
		}
		if err := s.flush(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkList1k(b *testing.B) {
	s := openStore(b, Options{})
	seed(b, s, 1000)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		rs, err := s.List(ctx)
		if err != nil || len(rs) != 1000 {
			b.Fatal(len(rs), err)
		}
	}
}
