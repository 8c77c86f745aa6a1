package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// procStart returns the start time (/proc/PID/stat field 22) and state of
// pid; ok is false once it is gone.
func procStart(pid int) (start string, state byte, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", 0, false
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return f[19], f[0][0], true
}

// running reports whether pid is still the process that started at start
// and not a zombie.
func running(pid int, start string) bool {
	s, state, ok := procStart(pid)
	return ok && s == start && state != 'Z' && state != 'X'
}

type recordedProc struct {
	pid   int
	start string
}

// TestKilledGatewayLeavesNoProcesses: stdio servers that ignore the end of
// their stdin and SIGTERM, each with a helper process in its group (as a
// `go run` or `npx` wrapper has). After kill -9 of the gateway the servers
// die with it (parent-death signal); their helpers, which no signal
// reaches, are ended by the next gateway's start from the records in the
// store, so a crash and a restart leave nothing running.
func TestKilledGatewayLeavesNoProcesses(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("the parent-death signal and /proc are Linux's; elsewhere children are not tracked")
	}
	bin := mcpgateBin
	stubborn := filepath.Join(t.TempDir(), "stubborn")
	if out, err := exec.Command("go", "build", "-o", stubborn, "./testdata/stubborn").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	piddir := t.TempDir()
	addr, dir := freeAddr(t), t.TempDir()
	args := []string{"--listen", addr, "--data-dir", dir, "--stdio", stubborn + " -piddir " + piddir}
	gw := startProcess(t, bin, args...)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 3
	for range n {
		cs, err := newSDKClient().Connect(ctx, &mcp.StreamableClientTransport{Endpoint: "http://" + addr + "/mcp"}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
		if err != nil {
			t.Fatal(err)
		}
		defer cs.Close()
		if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "pid"}); err != nil {
			t.Fatal(err)
		}
	}
	var servers, helpers []recordedProc
	t.Cleanup(func() {
		for _, p := range append(servers, helpers...) {
			if running(p.pid, p.start) {
				_ = syscall.Kill(p.pid, syscall.SIGKILL)
			}
		}
	})
	stopped := 0 // started and already stopped: a throwaway (the era probe's)
	entries, err := os.ReadDir(piddir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		pid, _ := strconv.Atoi(e.Name())
		b, err := os.ReadFile(filepath.Join(piddir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		hpid, _ := strconv.Atoi(string(b))
		for _, p := range []struct {
			pid  int
			list *[]recordedProc
		}{{pid, &servers}, {hpid, &helpers}} {
			start, state, ok := procStart(p.pid)
			if !ok || state == 'Z' {
				stopped++
				continue
			}
			*p.list = append(*p.list, recordedProc{p.pid, start})
		}
	}
	// One process per session, none for the era probe.
	if len(servers) != n || stopped > 0 {
		t.Fatalf("%d server processes running for %d sessions and %d processes started and stopped; want %d and 0", len(servers), n, stopped, n)
	}

	gw.kill()
	waitFor(t, "the servers to die with the gateway", func() bool {
		for _, p := range servers {
			if running(p.pid, p.start) {
				return false
			}
		}
		return true
	})
	for _, p := range helpers {
		if !running(p.pid, p.start) {
			t.Fatalf("helper %d ended with its server; the test needs it orphaned", p.pid)
		}
	}

	startProcess(t, bin, args...) // sweeps before it listens
	for _, p := range helpers {
		if running(p.pid, p.start) {
			t.Errorf("helper %d left by the crashed gateway still runs after the restart", p.pid)
		}
	}
}
