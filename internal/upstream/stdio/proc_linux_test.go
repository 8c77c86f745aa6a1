package stdio

import (
	"bufio"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// orphanGroup starts a shell in a process group of its own that starts a
// sleep and waits on its stdin; it returns the shell's identity, the
// sleep's pid, and a func that makes the shell exit (and reaps it), which
// leaves the sleep alone in the group.
func orphanGroup(t *testing.T) (leader Process, member int, leave func()) {
	t.Helper()
	cmd := exec.Command("sh", "-c", "sleep 600 & echo $!; read x")
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
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	member, _ = strconv.Atoi(strings.TrimSpace(line))
	leader, err = identify(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-leader.Pgid, syscall.SIGKILL)
		_ = in.Close()
		_ = cmd.Wait()
	})
	return leader, member, func() { _ = in.Close(); _ = cmd.Wait() }
}

func running(t *testing.T, pid int) bool {
	t.Helper()
	s, err := readStat(pid)
	return err == nil && s.state != 'Z' && s.state != 'X'
}

// TestReap: what is left of a recorded group is killed; a record whose
// pid now names another process (other start time) or whose boot is
// another kills nothing.
func TestReap(t *testing.T) {
	t.Parallel()
	t.Run("leftover member", func(t *testing.T) {
		t.Parallel()
		leader, member, leave := orphanGroup(t)
		leave()
		if !running(t, member) {
			t.Fatal("the member ended with its leader")
		}
		killed, err := Reap([]Process{leader})
		if err != nil || killed[0] != 1 {
			t.Fatalf("Reap = %v, %v; want [1]", killed, err)
		}
		if running(t, member) {
			t.Error("member still running")
		}
	})
	t.Run("reused pid", func(t *testing.T) {
		t.Parallel()
		leader, member, _ := orphanGroup(t)
		other := leader
		other.Start-- // the record of an earlier process with this pid
		killed, err := Reap([]Process{other})
		if err != nil || killed[0] != 0 {
			t.Fatalf("Reap = %v, %v; want [0]", killed, err)
		}
		if !running(t, leader.Pid) || !running(t, member) {
			t.Error("a process that is not the recorded one was killed")
		}
		if !Alive(leader) || Alive(other) {
			t.Errorf("Alive(leader) = %v, Alive(other) = %v; want true, false", Alive(leader), Alive(other))
		}
	})
	t.Run("other boot", func(t *testing.T) {
		t.Parallel()
		leader, member, leave := orphanGroup(t)
		leave()
		old := leader
		old.Boot = "not-this-boot"
		killed, err := Reap([]Process{old})
		if err != nil || killed[0] != 0 {
			t.Fatalf("Reap = %v, %v; want [0]", killed, err)
		}
		if !running(t, member) {
			t.Error("killed a process of a record from another boot")
		}
	})
}
