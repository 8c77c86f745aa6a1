package gateway

import (
	"bufio"
	"context"
	"github.com/mcpgate/mcpgate/internal/metrics"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/bolt"
	"github.com/mcpgate/mcpgate/internal/upstream"
	"github.com/mcpgate/mcpgate/internal/upstream/stdio"
)

// leftoverGroup starts a process group whose leader (a shell) then exits,
// leaving a sleep behind, as a crashed gateway's `go run` or `npx` server
// leaves its child. It returns the leader as recorded and the sleep's pid.
func leftoverGroup(t *testing.T) (leader store.Proc, member int) {
	t.Helper()
	cmd := exec.Command("sh", "-c", "sleep 600 & echo $!; cat /proc/$$/stat; read x")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(out)
	line, _ := r.ReadString('\n')
	member, _ = strconv.Atoi(strings.TrimSpace(line))
	st, _ := r.ReadString('\n')
	f := strings.Fields(st[strings.LastIndexByte(st, ')')+1:])
	start, _ := strconv.ParseUint(f[19], 10, 64)
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	pid := cmd.Process.Pid
	t.Cleanup(func() { _ = syscall.Kill(-pid, syscall.SIGKILL) })
	_ = in.Close()
	_ = cmd.Wait()
	return store.Proc{Pid: pid, Pgid: pid, Start: start, Boot: strings.TrimSpace(string(boot)), Route: "r"}, member
}

func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	st := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))[0]
	return st != "Z" && st != "X"
}

// TestReapLeftovers: at start, the groups of records whose gateway is
// dead are ended and their records deleted; records of a gateway that
// still runs (another one on this host sharing the store) are left, and
// so are its processes. Afterwards this gateway's spawns are recorded and
// their records deleted when they end.
func TestReapLeftovers(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("processes are identified on Linux only")
	}
	st, err := bolt.Open(filepath.Join(t.TempDir(), "sessions.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	g := &Gateway{log: slog.New(slog.DiscardHandler), procs: newProcRecorder(slog.New(slog.DiscardHandler), upstreamMetrics(t))}
	host := g.procs.host
	ctx := context.Background()

	orphan, orphanChild := leftoverGroup(t)
	orphan.Gateway, orphan.GatewayStart = orphan.Pid, orphan.Start // its gateway: dead (the shell)

	// A live gateway's process: this test process stands for that other
	// gateway (on this host, sharing the store), a sleep for its process.
	theirs, theirChild := leftoverGroup(t)
	other, ok := stdio.Self()
	if !ok {
		t.Fatal("no identity")
	}
	theirs.Gateway, theirs.GatewayStart = other.Pid, other.Start
	g.procs.self.Start++ // and this gateway is not that one

	stale := store.Proc{Pid: 4242, Pgid: 4242, Start: 1, Boot: "another-boot", Gateway: 1, GatewayStart: 1}
	for _, p := range []store.Proc{orphan, theirs, stale} {
		if err := st.PutProc(ctx, host, p); err != nil {
			t.Fatal(err)
		}
	}
	g.reapLeftovers(ctx, st)

	if alive(orphanChild) {
		t.Error("the dead gateway's leftover still runs")
	}
	if !alive(theirChild) {
		t.Error("a running gateway's process was killed")
	}
	keys := func() []string {
		recs, err := st.ListProcs(ctx, host)
		if err != nil {
			t.Fatal(err)
		}
		var ks []string
		for _, p := range recs {
			ks = append(ks, p.Key())
		}
		slices.Sort(ks)
		return ks
	}
	if got := keys(); !slices.Equal(got, []string{theirs.Key()}) {
		t.Errorf("records after the sweep: %v, want only %v", got, theirs.Key())
	}

	// From now on, spawns are recorded, and deleted when they end.
	up := stdio.New(stdio.Options{Command: "sh", Args: []string{"-c", "cat >/dev/null"}, ShutdownGrace: time.Second}, "r", nil)
	defer up.Close()
	g.procs.attach(up, "r")
	conn, err := up.Open(ctx, upstream.OpenParams{Session: &core.SessionInfo{ID: "s"}, Era: core.EraLegacy}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(); len(got) != 2 {
		t.Errorf("records while a process runs: %v, want 2", got)
	}
	if err := conn.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := keys(); !slices.Equal(got, []string{theirs.Key()}) {
		t.Errorf("records after it ended: %v, want only %v", got, theirs.Key())
	}
}

func upstreamMetrics(t *testing.T) *metrics.Upstreams {
	m, err := metrics.NewUpstreams(nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
