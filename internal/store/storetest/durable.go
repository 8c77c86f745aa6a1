package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

// crashEnv, set in a child's environment to the store path, makes the
// Crash subtest play the process that dies.
const crashEnv = "MCPGATE_STORETEST_CRASH_PATH"

const (
	crashExitCode = 17
	crashMarker   = "storetest: crashing now"
	crashRecords  = 50
)

// RunDurable runs the durability suite against a backend that persists to
// path: open must open (creating if needed) the store at path. Each
// subtest uses its own path and may open it more than once, but never
// twice at the same time.
func RunDurable(t *testing.T, open func(t *testing.T, path string) store.Store) {
	t.Helper()
	o := func(t *testing.T, path string) store.Store {
		t.Helper()
		s := open(t, path)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	t.Run("Reopen", func(t *testing.T) { testReopen(t, o) })
	t.Run("TouchSurvivesClose", func(t *testing.T) { testTouchSurvivesClose(t, o) })
	t.Run("Crash", func(t *testing.T) {
		if path := os.Getenv(crashEnv); path != "" {
			crashChild(t, open, path)
			return
		}
		testCrash(t, o)
	})
}

func mustClose(t *testing.T, s store.Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func mustAdd(t *testing.T, s store.Store, counter string, delta int64) int64 {
	t.Helper()
	v, err := s.Add(t.Context(), counter, delta)
	if err != nil {
		t.Fatalf("Add(%q, %d): %v", counter, delta, err)
	}
	return v
}

func testReopen(t *testing.T, open func(*testing.T, string) store.Store) {
	path := filepath.Join(t.TempDir(), "store.db")
	s := open(t, path)
	want := map[string]*store.Record{}
	for i := range 20 {
		r := Record(fmt.Sprintf("s%02d", i))
		want[r.ID] = r
		mustPut(t, s, r.Clone())
	}
	if err := s.Delete(t.Context(), "s03"); err != nil {
		t.Fatal(err)
	}
	delete(want, "s03")
	at := base.Add(time.Hour)
	mustTouch(t, s, "s05", at)
	want["s05"].LastActive = at
	replaced := &store.Record{ID: "s07", Route: "replaced", Created: base}
	mustPut(t, s, replaced.Clone())
	want["s07"] = replaced
	mustAdd(t, s, "a", 7)
	mustAdd(t, s, "b", -3)
	mustClose(t, s)

	check := func(t *testing.T, s store.Store) {
		t.Helper()
		var list []*store.Record
		for id, r := range want {
			diffRecord(t, r, mustGet(t, s, id))
			list = append(list, r)
		}
		wantNotFound(t, s, "s03")
		diffList(t, list, mustList(t, s))
	}

	s = open(t, path)
	check(t, s)
	if v := mustAdd(t, s, "a", 0); v != 7 {
		t.Errorf("counter a after reopen = %d; want 7", v)
	}
	if v := mustAdd(t, s, "b", 1); v != -2 {
		t.Errorf("counter b after reopen = %d; want -2", v)
	}
	mustPut(t, s, Record("s99"))
	want["s99"] = Record("s99")
	mustClose(t, s)

	s = open(t, path)
	check(t, s)
	if v := mustAdd(t, s, "b", 0); v != -2 {
		t.Errorf("counter b after second reopen = %d; want -2", v)
	}
}

func testTouchSurvivesClose(t *testing.T, open func(*testing.T, string) store.Store) {
	path := filepath.Join(t.TempDir(), "store.db")
	s := open(t, path)
	want := Record("s1")
	mustPut(t, s, want.Clone())
	mustPut(t, s, Record("s2"))
	// Close right away, well inside any flush interval: Close must flush.
	at := base.Add(time.Hour)
	mustTouch(t, s, "s1", at)
	mustTouch(t, s, "ghost", at)
	mustClose(t, s)
	want.LastActive = at

	s = open(t, path)
	diffRecord(t, want, mustGet(t, s, "s1"))
	diffRecord(t, Record("s2"), mustGet(t, s, "s2"))
	wantNotFound(t, s, "ghost")
	if n := len(mustList(t, s)); n != 2 {
		t.Errorf("List after reopen = %d records; want 2", n)
	}
}

func crashID(i int) string { return fmt.Sprintf("crash-%03d", i) }

var (
	crashTouchFlushed = base.Add(time.Hour)     // given more than a flush interval before the crash
	crashTouchLate    = base.Add(2 * time.Hour) // given just before the crash
)

// crashChild is the process that dies: it writes, touches, waits out the
// flush interval for half the touches, touches the other half, writes
// once more and exits without Close.
func crashChild(t *testing.T, open func(*testing.T, string) store.Store, path string) {
	s := open(t, path)
	for i := range crashRecords {
		mustPut(t, s, Record(crashID(i)))
		mustAdd(t, s, "puts", 1)
	}
	for i := 0; i < crashRecords; i += 2 {
		mustTouch(t, s, crashID(i), crashTouchFlushed)
	}
	if tb, ok := s.(TouchBuffer); ok {
		time.Sleep(flushWait(tb.FlushInterval()))
	}
	for i := 1; i < crashRecords; i += 2 {
		mustTouch(t, s, crashID(i), crashTouchLate)
	}
	mustPut(t, s, Record(crashID(crashRecords)))
	mustAdd(t, s, "puts", 1)
	fmt.Println(crashMarker)
	_ = os.Stdout.Sync()
	os.Exit(crashExitCode)
}

// flushWait is how long after a Touch it must be durable: the interval,
// once more for a flush already under way, and slack for a loaded machine.
func flushWait(interval time.Duration) time.Duration {
	return 2*interval + 250*time.Millisecond
}

func testCrash(t *testing.T, open func(*testing.T, string) store.Store) {
	path := filepath.Join(t.TempDir(), "store.db")
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run="+runPattern(t.Name()), "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	out, err := cmd.CombinedOutput()
	if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != crashExitCode || !bytes.Contains(out, []byte(crashMarker)) {
		t.Fatalf("child %v: %v (want exit status %d after %q); output:\n%s", cmd.Args, err, crashExitCode, crashMarker, out)
	}

	s := open(t, path)
	buffered := false
	if tb, ok := s.(TouchBuffer); ok && tb.FlushInterval() > 0 {
		buffered = true
	}
	for i := range crashRecords + 1 {
		want := Record(crashID(i))
		got, err := s.Get(t.Context(), want.ID)
		if err != nil {
			t.Errorf("Get(%q) after crash: %v; every Put that returned must survive", want.ID, err)
			continue
		}
		switch {
		case i == crashRecords:
		case i%2 == 0:
			want.LastActive = crashTouchFlushed
		case !buffered || !got.LastActive.Equal(want.LastActive):
			// A buffered Touch given just before the crash may be lost,
			// but not half applied.
			want.LastActive = crashTouchLate
		}
		diffRecord(t, want, got)
	}
	if n := len(mustList(t, s)); n != crashRecords+1 {
		t.Errorf("List after crash = %d records; want %d", n, crashRecords+1)
	}
	if v := mustAdd(t, s, "puts", 0); v != crashRecords+1 {
		t.Errorf("counter after crash = %d; want %d", v, crashRecords+1)
	}
}

// runPattern returns the -test.run pattern that selects exactly the test
// named name (as from t.Name()) and its parents.
func runPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}
