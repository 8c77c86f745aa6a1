package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/mcpgate/mcpgate/internal/core"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	bbolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func mustOpen(t testing.TB, path string, opts Options) *Store {
	t.Helper()
	s, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		interval time.Duration
	}{
		// Touches stay pending for the whole subtest: reads merge them.
		{"buffered", time.Hour},
		// The flusher runs all the time: reads race it.
		{"flushing", time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			storetest.Run(t, func(t *testing.T) store.Store {
				return mustOpen(t, filepath.Join(t.TempDir(), "sessions.db"), Options{FlushInterval: tt.interval})
			})
		})
	}
}

func TestDurable(t *testing.T) {
	t.Parallel()
	storetest.RunDurable(t, func(t *testing.T, path string) store.Store {
		s, err := Open(path, Options{FlushInterval: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions.db")
	mustOpen(t, path, Options{})
	start := time.Now()
	s, err := Open(path, Options{Timeout: 100 * time.Millisecond})
	if err == nil {
		s.Close()
		t.Fatal("second Open of the same file succeeded")
	}
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), path) {
		t.Errorf("second Open = %v; want ErrLocked naming %s", err, path)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("second Open took %v; want about the 100ms timeout", d)
	}
}

func TestOpenCreates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "nested")
	path := filepath.Join(dir, "sessions.db")
	mustOpen(t, path, Options{})
	for _, c := range []struct {
		path string
		want os.FileMode
	}{{dir, 0o700 | os.ModeDir}, {path, 0o600}} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode() & (os.ModePerm | os.ModeDir); got != c.want {
			t.Errorf("mode of %s = %v; want %v", c.path, got, c.want)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, bytes.Repeat([]byte("not a bolt file "), 1024), 0o600); err != nil {
		t.Fatal(err)
	}
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		path     string
		opts     Options
		contains string
	}{
		{"negative flush interval", filepath.Join(dir, "a.db"), Options{FlushInterval: -1}, "FlushInterval"},
		{"negative timeout", filepath.Join(dir, "b.db"), Options{Timeout: -1}, "Timeout"},
		{"not a bolt file", garbage, Options{}, garbage},
		{"directory is a file", filepath.Join(blocker, "c.db"), Options{}, blocker},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(tt.path, tt.opts)
			if err == nil {
				s.Close()
				t.Fatalf("Open succeeded; want an error")
			}
			if !strings.Contains(err.Error(), tt.contains) {
				t.Errorf("Open = %v; want it to mention %q", err, tt.contains)
			}
		})
	}
}

// logBuffer collects log records for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestCorruptValues(t *testing.T) {
	var logs logBuffer
	s := mustOpen(t, filepath.Join(t.TempDir(), "sessions.db"), Options{
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	ctx := t.Context()
	good := storetest.Record("good")
	if err := s.Put(ctx, good); err != nil {
		t.Fatal(err)
	}
	badTouch := storetest.Record("bad-touch")
	if err := s.Put(ctx, badTouch); err != nil {
		t.Fatal(err)
	}
	corrupt := map[string]string{
		"empty":      "",
		"not json":   "\x00\x01garbage",
		"truncated":  `{"id":"truncated","route":`,
		"wrong type": `{"id":"wrong type","created":42}`,
		"bad time":   `{"id":"bad time","created":"yesterday"}`,
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		for id, v := range corrupt {
			if err := tx.Bucket(bucketSessions).Put([]byte(id), []byte(v)); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketCounters).Put([]byte("bad"), []byte("xyz")); err != nil {
			return err
		}
		return tx.Bucket(bucketTouches).Put([]byte("bad-touch"), []byte("short"))
	})
	if err != nil {
		t.Fatal(err)
	}

	got, err := s.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if d := cmp.Diff([]*store.Record{badTouch, good}, got, cmpopts.EquateEmpty()); d != "" {
		t.Errorf("List (-want +got):\n%s", d)
	}
	for id := range corrupt {
		if !strings.Contains(logs.String(), "session="+core.Fingerprint(id)) || strings.Contains(logs.String(), id) {
			t.Errorf("no warning logged for corrupt record %q; logs:\n%s", id, logs.String())
		}
		r, err := s.Get(ctx, id)
		if err == nil || errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get(%q) of a corrupt record = %+v, %v; want a decode error", id, r, err)
		}
	}
	if !strings.Contains(logs.String(), "store touch value corrupt") {
		t.Errorf("no warning logged for the corrupt touch value; logs:\n%s", logs.String())
	}
	if _, err := s.Add(ctx, "bad", 1); err == nil || !strings.Contains(err.Error(), "corrupt counter") {
		t.Errorf("Add of a corrupt counter = %v; want a corrupt counter error", err)
	}
	// Put repairs a corrupt record.
	if err := s.Put(ctx, storetest.Record("empty")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "empty"); err != nil {
		t.Errorf("Get after repairing Put: %v", err)
	}
}

func pageWrites(s *Store) int64 {
	st := s.db.Stats()
	return st.TxStats.GetWrite()
}

// diskTouch reads the flushed touch of id straight from the file.
func diskTouch(t *testing.T, s *Store, id string) (at time.Time, ok bool) {
	t.Helper()
	err := s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketTouches).Get([]byte(id))
		if v == nil {
			return nil
		}
		var err error
		at, err = decodeTouch(v)
		ok = err == nil
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return at, ok
}

func TestTouchBatching(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir, err := os.MkdirTemp("", "mcpgate-bolt-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		s, err := Open(filepath.Join(dir, "sessions.db"), Options{FlushInterval: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ctx := context.Background()
		for _, id := range []string{"s1", "s2"} {
			if err := s.Put(ctx, storetest.Record(id)); err != nil {
				t.Fatal(err)
			}
		}

		writes := pageWrites(s)
		at := storetest.Record("s1").LastActive.Add(time.Hour)
		for i := range 1000 {
			if err := s.Touch(ctx, fmt.Sprintf("s%d", 1+i%2), at.Add(time.Duration(i))); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Touch(ctx, "ghost", at); err != nil {
			t.Fatal(err)
		}
		if w := pageWrites(s); w != writes {
			t.Fatalf("Touch wrote to disk: %d page writes", w-writes)
		}
		if _, ok := diskTouch(t, s, "s2"); ok {
			t.Fatal("touch on disk before the flush interval")
		}
		r, err := s.Get(ctx, "s2")
		if err != nil || !r.LastActive.Equal(at.Add(999)) {
			t.Fatalf("Get before flush = %v, %v; want LastActive %v", r.LastActive, err, at.Add(999))
		}

		time.Sleep(10*time.Second - time.Nanosecond)
		synctest.Wait()
		if _, ok := diskTouch(t, s, "s2"); ok {
			t.Fatal("touch on disk before the flush interval")
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		for id, want := range map[string]time.Time{"s1": at.Add(998), "s2": at.Add(999)} {
			if got, ok := diskTouch(t, s, id); !ok || !got.Equal(want) {
				t.Errorf("flushed touch of %s = %v, %v; want %v", id, got, ok, want)
			}
		}
		if _, ok := diskTouch(t, s, "ghost"); ok {
			t.Error("flush wrote a touch for a missing record")
		}
		s.mu.Lock()
		n := len(s.pending) + len(s.flushing)
		s.mu.Unlock()
		if n != 0 {
			t.Errorf("%d touches still buffered after the flush", n)
		}

		// Nothing pending: the next tick writes nothing.
		writes = pageWrites(s)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if w := pageWrites(s); w != writes {
			t.Errorf("idle flush wrote %d pages", w-writes)
		}
	})
}

// TestPutOrderedWithFlush checks that a Touch followed by a Put is
// superseded by the Put even when a flush of that Touch runs concurrently
// with the Put.
func TestPutOrderedWithFlush(t *testing.T) {
	s := mustOpen(t, filepath.Join(t.TempDir(), "sessions.db"), Options{FlushInterval: time.Hour})
	ctx := t.Context()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 200 {
		old := &store.Record{ID: "s1", Route: "old", LastActive: t0}
		if err := s.Put(ctx, old); err != nil {
			t.Fatal(err)
		}
		if err := s.Touch(ctx, "s1", t0.Add(5*time.Second)); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			if err := s.flush(); err != nil {
				t.Error(err)
			}
		})
		// Readers concurrent with the Put see the old record with its
		// touch, or the new one without: never a mix.
		for range 2 {
			wg.Go(func() {
				for {
					r, err := s.Get(ctx, "s1")
					if err != nil {
						t.Error(err)
						return
					}
					want := t0.Add(5 * time.Second)
					if r.Route == "new" {
						want = t0.Add(3 * time.Second)
					}
					if !r.LastActive.Equal(want) {
						t.Errorf("iteration %d: Get = %s record with LastActive %v; want %v", i, r.Route, r.LastActive, want)
						return
					}
					if r.Route == "new" {
						return
					}
				}
			})
		}
		if err := s.Put(ctx, &store.Record{ID: "s1", Route: "new", LastActive: t0.Add(3 * time.Second)}); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if err := s.flush(); err != nil {
			t.Fatal(err)
		}
		r, err := s.Get(ctx, "s1")
		if err != nil || !r.LastActive.Equal(t0.Add(3*time.Second)) {
			t.Fatalf("iteration %d: after Put and flushes LastActive = %v, %v; want %v", i, r.LastActive, err, t0.Add(3*time.Second))
		}
	}
}

// TestCloseConcurrent closes while every method is in use: each call
// either works or reports ErrClosed, and nothing leaks or panics.
func TestCloseConcurrent(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "sessions.db"), Options{FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("s%d", i%4)
				var err error
				switch (g + i) % 6 {
				case 0:
					err = s.Put(ctx, storetest.Record(id))
				case 1:
					_, err = s.Get(ctx, id)
				case 2:
					err = s.Touch(ctx, id, time.Now())
				case 3:
					err = s.Delete(ctx, id)
				case 4:
					_, err = s.List(ctx)
				case 5:
					_, err = s.Add(ctx, "c", 1)
				}
				if errors.Is(err, store.ErrClosed) {
					return
				}
				if err != nil && !errors.Is(err, store.ErrNotFound) {
					t.Errorf("op %d: %v", (g+i)%6, err)
					return
				}
			}
		})
	}
	time.Sleep(20 * time.Millisecond)
	var closeErrs [3]error
	var cwg sync.WaitGroup
	for i := range closeErrs {
		cwg.Go(func() { closeErrs[i] = s.Close() })
	}
	cwg.Wait()
	wg.Wait()
	for i, err := range closeErrs {
		if err != nil {
			t.Errorf("Close #%d = %v", i, err)
		}
	}
}

func TestTouchCodec(t *testing.T) {
	tests := []struct {
		name string
		at   time.Time
	}{
		{"zero", time.Time{}},
		{"epoch", time.Unix(0, 0)},
		{"nanoseconds", time.Date(2031, 5, 6, 7, 8, 9, 999999999, time.UTC)},
		{"before 1678", time.Date(1600, 1, 1, 0, 0, 0, 1, time.UTC)},
		{"after 2262", time.Date(3000, 1, 1, 0, 0, 0, 1, time.UTC)},
		{"zone", time.Date(2031, 5, 6, 7, 8, 9, 1, time.FixedZone("X", -7*3600))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := appendTouch(nil, tt.at)
			got, err := decodeTouch(v)
			if err != nil || !got.Equal(tt.at) {
				t.Errorf("decodeTouch(appendTouch(%v)) = %v, %v", tt.at, got, err)
			}
		})
	}
	for _, v := range [][]byte{nil, make([]byte, 11), make([]byte, 13), append(make([]byte, 8), 0xff, 0xff, 0xff, 0xff)} {
		if _, err := decodeTouch(v); err == nil {
			t.Errorf("decodeTouch(%x) succeeded; want an error", v)
		}
	}
}

func FuzzDecodeRecord(f *testing.F) {
	for _, r := range []*store.Record{storetest.Record("s1"), {ID: "s2"}} {
		v, err := encodeRecord(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(r.ID), v)
	}
	f.Add([]byte("s3"), []byte(`{"usage":{"a":1e30}}`))
	f.Add([]byte("s4"), []byte(`{"init_raw":"!!"}`))
	f.Fuzz(func(t *testing.T, key, v []byte) {
		r, err := decodeRecord(key, v)
		if err != nil {
			return
		}
		if r.ID != string(key) {
			t.Fatalf("ID = %q; want the key %q", r.ID, key)
		}
		// What decodes re-encodes to the same record.
		v2, err := encodeRecord(r)
		if err != nil {
			return // e.g. a year past 9999 decodes but does not encode
		}
		r2, err := decodeRecord(key, v2)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v\n%s", err, v2)
		}
		if d := cmp.Diff(r, r2, cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("round trip (-first +second):\n%s", d)
		}
	})
}
