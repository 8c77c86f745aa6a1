package bolt

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

// seed writes n records in one transaction (Put would fsync each).
func seed(b *testing.B, s *Store, n int) []string {
	b.Helper()
	ids := make([]string, n)
	err := s.db.Update(func(tx *bbolt.Tx) error {
		for i := range ids {
			ids[i] = fmt.Sprintf("session-%08d", i)
			v, err := encodeRecord(storetest.Record(ids[i]))
			if err != nil {
				return err
			}
			if err := tx.Bucket(bucketSessions).Put([]byte(ids[i]), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return ids
}

func benchStore(b *testing.B) *Store {
	return mustOpen(b, filepath.Join(b.TempDir(), "sessions.db"), Options{})
}

func BenchmarkPut(b *testing.B) {
	s := benchStore(b)
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
	s := benchStore(b)
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
	s := benchStore(b)
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
	s := benchStore(b)
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
// that each saw activity.
func BenchmarkFlush10k(b *testing.B) {
	s := mustOpen(b, filepath.Join(b.TempDir(), "sessions.db"), Options{FlushInterval: time.Hour})
	ids := seed(b, s, 10000)
	ctx := context.Background()
	at := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		at = at.Add(time.Second)
		for _, id := range ids {
			_ = s.Touch(ctx, id, at)
		}
		if err := s.flush(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkList10k(b *testing.B) {
	s := benchStore(b)
	seed(b, s, 10000)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		rs, err := s.List(ctx)
		if err != nil || len(rs) != 10000 {
			b.Fatal(len(rs), err)
		}
	}
}
