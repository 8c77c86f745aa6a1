package stdio

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// capped opens a legacy session of the test server under caps, sampled
// every 10ms with a CPU window of window.
func capped(t *testing.T, mem int64, cpu float64, window time.Duration) (testUpstream, *Conn, *sink) {
	t.Helper()
	sb := &Sandbox{NoNewPrivs: true, Memory: mem, CPU: cpu}
	if err := CheckSandbox(sb); err != nil {
		t.Fatalf("CheckSandbox: %v", err)
	}
	u := newTestUpstream(t, Options{Sandbox: sb}, "-legacy")
	u.capInterval, u.cpuWindow = 10*time.Millisecond, window
	c, s, _ := u.open(t, core.EraLegacy)
	initialize(t, c)
	return u, c, s
}

// wantCapKill checks that err, a call's error, says the cap key ended the
// process with its limit, and that the Sink was told the same.
func wantCapKill(t *testing.T, err error, s *sink, key, limit string) {
	t.Helper()
	words, ok := upstream.ResourceLimit(err)
	if !ok || !errors.Is(err, upstream.ErrClosed) {
		t.Fatalf("call error %v: want a resource limit that closed the process", err)
	}
	if !strings.Contains(words, key) || !strings.Contains(words, limit) {
		t.Errorf("ResourceLimit = %q, want it to name %s and %s", words, key, limit)
	}
	select {
	case cerr := <-s.closedCh:
		if w, ok := upstream.ResourceLimit(cerr); !ok || w != words {
			t.Errorf("the Sink was told %v, want the same resource limit", cerr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the Sink was not told the process ended")
	}
}

func TestCapMemory(t *testing.T) {
	t.Parallel()
	u, c, s := capped(t, 64<<20, 0, time.Second)
	resp, err := callTool(t, c, 10, "echo", map[string]any{"text": "under the cap"})
	if err != nil || toolText(t, resp) != "under the cap" {
		t.Fatalf("under the cap: %v", err)
	}
	_, err = callTool(t, c, 11, "grow", map[string]any{"mib": 512})
	wantCapKill(t, err, s, "sandbox.memory", "64 MiB")
	rec := u.rec.wait(t, "the cap logged", func(r record) bool { return r.Msg == "stdio_resource_limit" })
	if rec.Attrs["cap"] != "sandbox.memory" || rec.Attrs["limit"] != "64 MiB" {
		t.Errorf("logged %v", rec.Attrs)
	}
}

func TestCapCPU(t *testing.T) {
	t.Parallel()
	if _, err := cgroupParent(); err == nil {
		t.Skip("with a cgroup, cpu.max throttles the process instead of killing it")
	}
	u, c, s := capped(t, 0, 0.25, 300*time.Millisecond)
	_, err := callTool(t, c, 10, "spin", nil)
	wantCapKill(t, err, s, "sandbox.cpu", "0.25 cores")
	if !strings.Contains(err.Error(), "on average over 300ms") {
		t.Errorf("error %q does not name the window", err)
	}
	u.rec.wait(t, "the cap logged", func(r record) bool { return r.Msg == "stdio_resource_limit" && r.Attrs["cap"] == "sandbox.cpu" })
}

// TestCapCPUIdleLives: a process under its CPU cap is left alone.
func TestCapCPUIdleLives(t *testing.T) {
	t.Parallel()
	_, c, s := capped(t, 256<<20, 0.5, 50*time.Millisecond)
	for i := range 5 {
		resp, err := callTool(t, c, 10+i, "echo", map[string]any{"text": "idle"})
		if err != nil || toolText(t, resp) != "idle" {
			t.Fatalf("call %d: %v", i, err)
		}
		time.Sleep(30 * time.Millisecond) // across several windows
	}
	if _, closed := s.snapshot(); len(closed) != 0 {
		t.Fatalf("ended: %v", closed)
	}
}

func TestParseUsage(t *testing.T) {
	t.Parallel()
	line := "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 150 50 7 3 20 0 4 0 98765 1000000 2500 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
	pgrp, u, ok := parseUsage([]byte(line))
	if !ok || pgrp != 1234 || u.state != 'S' || u.ticks != 210 || u.start != 98765 || u.rss != 2500 {
		t.Fatalf("parseUsage = %d %+v %v", pgrp, u, ok)
	}
	for _, bad := range []string{"", "1 (x) S 1 2", "1 (x S 1 1 1"} {
		if _, _, ok := parseUsage([]byte(bad)); ok {
			t.Errorf("parseUsage(%q) ok", bad)
		}
	}
}

func TestFindCgroup(t *testing.T) {
	t.Parallel()
	const v1 = "30 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory\n"
	for _, tc := range []struct {
		name, mountinfo, self, want, err string
	}{
		{"unified root", "29 25 0:25 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", "0::/system.slice/mcpgate.service\n",
			"/sys/fs/cgroup/system.slice/mcpgate.service", ""},
		{"hybrid", v1 + "31 25 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n", "4:memory:/x\n0::/\n",
			"/sys/fs/cgroup/unified", ""},
		{"namespaced mount root", "29 25 0:25 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", "0::/kubepods/pod1/c1\n",
			"/sys/fs/cgroup/c1", ""},
		{"escaped mount point", `29 25 0:25 / /mnt/cg\040v2 rw - cgroup2 cgroup2 rw` + "\n", "0::/a\n", "/mnt/cg v2/a", ""},
		{"v1 only", v1, "4:memory:/x\n", "", "cgroup v1 only"},
		{"no mount", v1, "0::/a\n", "", "no cgroup2 file system"},
		{"other root", "29 25 0:25 /other / rw - cgroup2 cgroup2 rw\n", "0::/a\n", "", "not under a cgroup2 mount"},
		{"sibling prefix", "29 25 0:25 /ab /cg rw - cgroup2 cgroup2 rw\n", "0::/abc\n", "", "not under a cgroup2 mount"},
	} {
		got, err := findCgroup([]byte(tc.mountinfo), []byte(tc.self))
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

// TestDelegate checks the controller logic on directories laid out as a
// cgroup's (regular files, which accept any write).
func TestDelegate(t *testing.T) {
	t.Parallel()
	mk := func(controllers, subtree string) string {
		d := t.TempDir()
		for f, v := range map[string]string{"cgroup.controllers": controllers, "cgroup.subtree_control": subtree} {
			if err := os.WriteFile(filepath.Join(d, f), []byte(v), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	if err := delegate(mk("hugetlb\n", ""), 1); err == nil || !strings.Contains(err.Error(), "memory controller is not available") {
		t.Errorf("without memory: %v", err)
	}
	if err := delegate(mk("memory pids\n", ""), 1); err == nil || !strings.Contains(err.Error(), "cpu controller") {
		t.Errorf("without cpu: %v", err)
	}
	d := mk("cpuset cpu io memory pids\n", "")
	if err := delegate(d, 1); err != nil {
		t.Errorf("controllers available: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(d, "cgroup.subtree_control")); string(b) != "+memory +cpu" {
		t.Errorf("subtree_control written %q, want +memory +cpu", b)
	}
	if err := delegate(mk("cpu memory\n", "cpu memory\n"), 1); err != nil {
		t.Errorf("already enabled: %v", err)
	}
	if err := delegate(filepath.Join(t.TempDir(), "missing"), 1); err == nil {
		t.Error("a missing cgroup accepted")
	}
}

// TestCgroupProc makes the cgroup of a process where cgroup v2 is usable.
func TestCgroupProc(t *testing.T) {
	t.Parallel()
	parent, err := cgroupParent()
	if err != nil {
		t.Skipf("no writable cgroup v2 with the memory and cpu controllers here, caps are sampled: %v", err)
	}
	cg, err := newCgroupProc(parent, 64<<20, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]string{"memory.max": "67108864", "cpu.max": "50000 100000"} {
		if b, _ := os.ReadFile(filepath.Join(cg.dir, f)); strings.TrimSpace(string(b)) != want {
			t.Errorf("%s = %q, want %q", f, b, want)
		}
	}
	cg.remove()
	if _, err := os.Stat(cg.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cgroup left after remove: %v", err)
	}
}

func TestFormatBytes(t *testing.T) {
	t.Parallel()
	for n, want := range map[int64]string{512: "512 B", 64 << 20: "64 MiB", 1536 << 10: "1.5 MiB", 3 << 30: "3 GiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func FuzzParseUsage(f *testing.F) {
	f.Add([]byte("1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 150 50 7 3 20 0 4 0 98765 1000000 2500 0 0"))
	f.Add([]byte("1 (x) Z 0 1 1 0 -1 0 0 0 0 0 -5 0 0 0 0 0 0 0 1 0 -1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, u, ok := parseUsage(b)
		if ok && u.rss < 0 {
			t.Fatalf("negative rss %d", u.rss)
		}
	})
}

func FuzzFindCgroup(f *testing.F) {
	f.Add([]byte("29 25 0:25 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"), []byte("0::/a/b\n"))
	f.Add([]byte(`29 25 0:25 /k\040p /mnt/c\134g rw - cgroup2 cgroup2 rw`+"\n"), []byte("0::/k p/c\n"))
	f.Fuzz(func(t *testing.T, mountinfo, self []byte) {
		dir, err := findCgroup(mountinfo, self)
		if err == nil && dir != filepath.Clean(dir) {
			t.Fatalf("findCgroup = %q, not clean", dir)
		}
	})
}
