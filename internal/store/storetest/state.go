package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/mcpgate/mcpgate/internal/store"
)

// stateCrashEnv, set in a child's environment to the store path, makes the
// StateCrash subtest play the process that dies.
const stateCrashEnv = "MCPGATE_STORETEST_STATE_CRASH_PATH"

// RunState runs the store.StateStore conformance suite against fresh
// stores made by open, one per subtest; open's stores must implement
// store.StateStore. The suite closes every store it opens.
func RunState(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	o := func(t *testing.T) store.StateStore {
		t.Helper()
		s := open(t)
		t.Cleanup(func() { _ = s.Close() })
		ss, ok := s.(store.StateStore)
		if !ok {
			t.Fatalf("%T does not implement store.StateStore", s)
		}
		return ss
	}
	t.Run("RoundTrip", func(t *testing.T) { testStateRoundTrip(t, o(t)) })
	t.Run("Copies", func(t *testing.T) { testStateCopies(t, o(t)) })
	t.Run("Concurrent", func(t *testing.T) { testStateConcurrent(t, o(t)) })
	t.Run("ClosedAndContext", func(t *testing.T) { testStateClosed(t, o(t)) })
}

// RunStateDurable runs the durability suite of store.StateStore against
// a backend that persists to path, as RunDurable does for records: blobs
// survive Close and reopening, and a crash right after SaveState returned.
func RunStateDurable(t *testing.T, open func(t *testing.T, path string) store.Store) {
	t.Helper()
	o := func(t *testing.T, path string) store.StateStore {
		t.Helper()
		s := open(t, path)
		t.Cleanup(func() { _ = s.Close() })
		ss, ok := s.(store.StateStore)
		if !ok {
			t.Fatalf("%T does not implement store.StateStore", s)
		}
		return ss
	}
	t.Run("StateReopen", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "store.db")
		s := o(t, path)
		mustSaveState(t, s, "a", []byte("first"))
		mustSaveState(t, s, "a", []byte("second"))
		mustSaveState(t, s, "b", bigBlob())
		mustClose(t, s.(store.Store))
		s = o(t, path)
		wantState(t, s, "a", []byte("second"))
		wantState(t, s, "b", bigBlob())
	})
	t.Run("StateCrash", func(t *testing.T) {
		if path := os.Getenv(stateCrashEnv); path != "" {
			s := o(t, path)
			mustSaveState(t, s, "limits", []byte("old"))
			mustSaveState(t, s, "limits", bigBlob())
			fmt.Println(crashMarker)
			_ = os.Stdout.Sync()
			os.Exit(crashExitCode)
		}
		path := filepath.Join(t.TempDir(), "store.db")
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run="+runPattern(t.Name()), "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), stateCrashEnv+"="+path)
		out, err := cmd.CombinedOutput()
		if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != crashExitCode || !bytes.Contains(out, []byte(crashMarker)) {
			t.Fatalf("child %v: %v (want exit status %d after %q); output:\n%s", cmd.Args, err, crashExitCode, crashMarker, out)
		}
		wantState(t, o(t, path), "limits", bigBlob())
	})
}

// bigBlob is a few megabytes that are not all alike: a limiter snapshot
// with many keys is that large.
func bigBlob() []byte {
	b := make([]byte, 3<<20)
	for i := range b {
		b[i] = byte(i*7 + i>>9)
	}
	return b
}

func mustSaveState(t *testing.T, s store.StateStore, name string, data []byte) {
	t.Helper()
	if err := s.SaveState(t.Context(), name, data); err != nil {
		t.Fatalf("SaveState(%q, %d bytes): %v", name, len(data), err)
	}
}

func wantState(t *testing.T, s store.StateStore, name string, want []byte) {
	t.Helper()
	got, err := s.LoadState(t.Context(), name)
	if err != nil {
		t.Fatalf("LoadState(%q): %v", name, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("LoadState(%q) = %d bytes %.32q…; want %d bytes %.32q…", name, len(got), got, len(want), want)
	}
}

func testStateRoundTrip(t *testing.T, s store.StateStore) {
	if _, err := s.LoadState(t.Context(), "never"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LoadState of a name never saved: %v, want ErrNotFound", err)
	}
	mustSaveState(t, s, "limits.requests", []byte("one"))
	mustSaveState(t, s, "limits.creation.per_address", []byte("two\x00\xff"))
	wantState(t, s, "limits.requests", []byte("one"))
	wantState(t, s, "limits.creation.per_address", []byte("two\x00\xff"))
	mustSaveState(t, s, "limits.requests", []byte("replaced"))
	wantState(t, s, "limits.requests", []byte("replaced"))
	mustSaveState(t, s, "empty", nil)
	wantState(t, s, "empty", []byte{})
	mustSaveState(t, s, "big", bigBlob())
	wantState(t, s, "big", bigBlob())
	if err := s.SaveState(t.Context(), "", []byte("x")); err == nil {
		t.Error("SaveState with an empty name succeeded")
	}
}

func testStateCopies(t *testing.T, s store.StateStore) {
	data := []byte("original")
	mustSaveState(t, s, "a", data)
	copy(data, "CHANGED!")
	wantState(t, s, "a", []byte("original"))
	got, err := s.LoadState(t.Context(), "a")
	if err != nil {
		t.Fatal(err)
	}
	copy(got, "CHANGED!")
	wantState(t, s, "a", []byte("original"))
}

// Concurrent saves of one name leave one of the blobs whole; loads see a
// whole blob, never a mix.
func testStateConcurrent(t *testing.T, s store.StateStore) {
	blobs := make([][]byte, 8)
	for i := range blobs {
		blobs[i] = bytes.Repeat([]byte{byte('a' + i)}, 64<<10)
	}
	mustSaveState(t, s, "shared", blobs[0])
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range blobs {
		wg.Go(func() {
			for range 10 {
				if err := s.SaveState(context.Background(), "shared", blobs[i]); err != nil {
					errs <- err
					return
				}
				if err := s.SaveState(context.Background(), fmt.Sprintf("own-%d", i), blobs[i]); err != nil {
					errs <- err
					return
				}
			}
		})
		wg.Go(func() {
			for range 10 {
				got, err := s.LoadState(context.Background(), "shared")
				if err != nil {
					errs <- err
					return
				}
				if len(got) != 64<<10 || !bytes.Equal(got, bytes.Repeat(got[:1], len(got))) {
					errs <- fmt.Errorf("LoadState returned a mixed or partial blob (%d bytes)", len(got))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range blobs {
		wantState(t, s, fmt.Sprintf("own-%d", i), blobs[i])
	}
}

func testStateClosed(t *testing.T, s store.StateStore) {
	mustSaveState(t, s, "a", []byte("x"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.SaveState(ctx, "a", []byte("y")); !errors.Is(err, context.Canceled) {
		t.Errorf("SaveState with a cancelled context: %v, want context.Canceled", err)
	}
	if _, err := s.LoadState(ctx, "a"); !errors.Is(err, context.Canceled) {
		t.Errorf("LoadState with a cancelled context: %v, want context.Canceled", err)
	}
	wantState(t, s, "a", []byte("x"))
	mustClose(t, s.(store.Store))
	if err := s.SaveState(t.Context(), "a", []byte("y")); !errors.Is(err, store.ErrClosed) {
		t.Errorf("SaveState after Close: %v, want ErrClosed", err)
	}
	if _, err := s.LoadState(t.Context(), "a"); !errors.Is(err, store.ErrClosed) {
		t.Errorf("LoadState after Close: %v, want ErrClosed", err)
	}
}
