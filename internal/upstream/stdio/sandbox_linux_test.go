package stdio

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
)

// sandboxed opens a legacy session of the test server in sb and
// initializes it.
func sandboxed(t *testing.T, sb *Sandbox) (testUpstream, *Conn, *sink) {
	t.Helper()
	if err := CheckSandbox(sb); err != nil {
		t.Fatalf("CheckSandbox: %v", err)
	}
	u := newTestUpstream(t, Options{Sandbox: sb}, "-legacy")
	c, s, _ := u.open(t, core.EraLegacy)
	initialize(t, c)
	return u, c, s
}

func callTool(t *testing.T, c *Conn, id int, tool string, args map[string]any) (*core.Message, error) {
	t.Helper()
	return c.RoundTrip(timeout(t, 10*time.Second), toolCall(t, id, tool, args, nil), nil)
}

func TestSandboxIsTheCommand(t *testing.T) {
	t.Parallel()
	_, c, _ := sandboxed(t, &Sandbox{NoNewPrivs: true, OpenFiles: 64, CPUSeconds: 30, AddressSpace: 8 << 30})
	// The helper executed the server in its place: the pid the gateway
	// records and signals is the server's.
	exe, err := os.Readlink("/proc/" + strconv.Itoa(c.pid) + "/exe")
	if err != nil || exe != serverBin {
		t.Fatalf("pid %d runs %q (%v), want %s", c.pid, exe, err, serverBin)
	}
	status, _ := os.ReadFile("/proc/" + strconv.Itoa(c.pid) + "/status")
	if !strings.Contains(string(status), "NoNewPrivs:\t1") {
		t.Errorf("no_new_privs not set:\n%s", status)
	}
	limits, _ := os.ReadFile("/proc/" + strconv.Itoa(c.pid) + "/limits")
	for _, want := range []string{"Max open files            64                   64", "Max cpu time              30                   30"} {
		if !strings.Contains(string(limits), want) {
			t.Errorf("limits lack %q:\n%s", want, limits)
		}
	}
	environ, _ := os.ReadFile("/proc/" + strconv.Itoa(c.pid) + "/environ")
	if strings.Contains(string(environ), sandboxEnv) {
		t.Errorf("the server's environment still holds %s", sandboxEnv)
	}
	if p, err := identify(c.pid); err != nil || p.Pgid != c.pid {
		t.Errorf("process group: %+v, %v; want its own", p, err)
	}
}

func TestSandboxFilesystem(t *testing.T) {
	t.Parallel()
	if LandlockABI() < 1 {
		t.Skip("the kernel has no Landlock (TestSandboxLandlockRequired covers that case)")
	}
	allowed, writable, outside := t.TempDir(), t.TempDir(), t.TempDir()
	for _, d := range []string{allowed, outside} {
		if err := os.WriteFile(filepath.Join(d, "f"), []byte("content of "+filepath.Base(d)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, c, _ := sandboxed(t, &Sandbox{NoNewPrivs: true, Filesystem: &Filesystem{
		Read: []string{allowed}, Write: []string{writable}, Exec: []string{filepath.Dir(serverBin)},
	}})
	for i, tc := range []struct {
		tool, path, want string
	}{
		{"read", filepath.Join(allowed, "f"), "content of " + filepath.Base(allowed)},
		{"read", filepath.Join(outside, "f"), "permission denied"},
		{"read", "/etc/passwd", "permission denied"},
		{"write", filepath.Join(writable, "new"), "written"},
		{"write", filepath.Join(allowed, "new"), "permission denied"},
	} {
		resp, err := callTool(t, c, i+10, tc.tool, map[string]any{"path": tc.path})
		if err != nil {
			t.Fatalf("%s %s: %v", tc.tool, tc.path, err)
		}
		if got := toolText(t, resp); !strings.Contains(got, tc.want) {
			t.Errorf("%s %s = %q, want %q", tc.tool, tc.path, got, tc.want)
		}
	}
}

func TestSandboxLandlockRequired(t *testing.T) {
	t.Parallel()
	sb := &Sandbox{NoNewPrivs: true, Filesystem: &Filesystem{Read: []string{"/usr"}, Require: true}}
	err := CheckSandbox(sb)
	if LandlockABI() >= 1 {
		if err != nil {
			t.Fatalf("CheckSandbox with Landlock: %v", err)
		}
		return
	}
	if !errors.Is(err, ErrLandlockUnavailable) {
		t.Fatalf("CheckSandbox without Landlock = %v, want ErrLandlockUnavailable", err)
	}
	sb.Filesystem.Require = false
	u := newTestUpstream(t, Options{Sandbox: sb})
	if u.rec.count("sandbox_landlock_unavailable") != 1 {
		t.Errorf("sandbox_landlock_unavailable logged %d times, want once", u.rec.count("sandbox_landlock_unavailable"))
	}
}

func TestSandboxMemory(t *testing.T) {
	t.Parallel()
	u, c, s := sandboxed(t, &Sandbox{NoNewPrivs: true, AddressSpace: 3 << 30})
	resp, err := callTool(t, c, 10, "alloc", map[string]any{"mib": 16})
	if err != nil || !strings.Contains(toolText(t, resp), "allocated 16 MiB") {
		t.Fatalf("a small allocation: %v", err)
	}
	_, err = callTool(t, c, 11, "alloc", map[string]any{"mib": 4096})
	var ee *ExitError
	if !errors.As(err, &ee) || ee.State == nil || ee.State.Success() {
		t.Fatalf("allocation past the limit: %v, want the process to die", err)
	}
	u.rec.wait(t, "the server saying it ran out of memory", stderrLine("out of memory"))
	if !strings.Contains(err.Error(), "exit status") {
		t.Errorf("error %q does not say how the process ended", err)
	}
	select {
	case <-s.closedCh:
	case <-time.After(10 * time.Second):
		t.Fatal("the session was not told the process ended")
	}
}

func TestSandboxOpenFiles(t *testing.T) {
	t.Parallel()
	_, c, _ := sandboxed(t, &Sandbox{NoNewPrivs: true, OpenFiles: 32})
	resp, err := callTool(t, c, 10, "openfiles", map[string]any{"n": 100})
	if err != nil {
		t.Fatal(err)
	}
	got := toolText(t, resp)
	if !strings.Contains(got, "too many open files") {
		t.Fatalf("openfiles = %q, want too many open files", got)
	}
	// The server lives on: its limit is its own business.
	resp, err = callTool(t, c, 11, "echo", map[string]any{"text": "still here"})
	if err != nil || toolText(t, resp) != "still here" {
		t.Fatalf("after the limit: %v", err)
	}
}

// TestSandboxForkBomb runs a fork bomb under a user of its own with a
// processes limit of 8: RLIMIT_NPROC counts per real uid and root is
// exempt, so the limit needs the user (sandbox.user).
func TestSandboxForkBomb(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("switching to a user of the sandbox's own needs root")
	}
	uid := freeUID(t)
	sb := &Sandbox{NoNewPrivs: true, User: &User{UID: uid, GID: uid}, Processes: 8}
	u := newTestUpstream(t, Options{Sandbox: sb, Command: "sh", Args: []string{"-c",
		`i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done; echo "started $i" >&2; exec cat`}})
	c, s, _ := u.open(t, core.EraLegacy)
	var err error
	select {
	case err = <-s.closedCh:
	case <-time.After(10 * time.Second):
		t.Fatalf("the fork bomb was not stopped (%d processes of uid %d)", processesOf(uid), uid)
	}
	var ee *ExitError
	if !errors.As(err, &ee) || !strings.Contains(ee.LastStderr, "fork") {
		t.Fatalf("process ended with %v, want the shell unable to fork", err)
	}
	// The group is killed as the server ends; the kernel takes a moment
	// to take its processes away, longer on a loaded machine.
	deadline := time.Now().Add(5 * time.Second)
	for processesOf(uid) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := processesOf(uid); n > 0 {
		t.Errorf("%d processes of uid %d outlived the server by 5s", n, uid)
	}
	_ = c
}

// freeUID is a uid no process runs as.
func freeUID(t *testing.T) uint32 {
	for uid := uint32(61000 + os.Getpid()%1000); uid < 70000; uid++ {
		if processesOf(uid) == 0 {
			return uid
		}
	}
	t.Fatal("no free uid")
	return 0
}

func processesOf(uid uint32) int {
	d, _ := os.ReadDir("/proc")
	n := 0
	want := "Uid:\t" + strconv.FormatUint(uint64(uid), 10) + "\t"
	for _, e := range d {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err == nil && strings.Contains(string(b), want) && !strings.Contains(string(b), "State:\tZ") {
			n++
		}
	}
	return n
}
