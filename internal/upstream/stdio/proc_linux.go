package stdio

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// waitNoReap blocks until the process exits but leaves it a zombie, so its
// pid and process group id stay reserved while the group is signalled one
// last time. It reports false when it could not wait that way.
func waitNoReap(pid int) bool {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err == nil {
			return true
		}
		if !errors.Is(err, syscall.EINTR) {
			return false
		}
	}
}

// sysProcAttr puts the child in a process group of its own, so the whole
// group (a wrapper such as npx and the server it starts) can be signalled
// and a terminal's Ctrl-C does not reach it before mcpgate shuts it down;
// and it asks the kernel to SIGKILL the child when mcpgate dies, however it
// dies (kill -9 included). The death signal reaches the child only, not
// what it started: those are found again by the next gateway (Reap).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// spawners is how many locked threads fork children.
const spawners = 4

var (
	spawnOnce sync.Once
	spawnReqs chan spawnReq
)

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

// startCmd starts cmd from one of a few goroutines locked to their OS
// thread for the life of mcpgate. The kernel ties the parent-death signal
// to the thread that forked the child, not to the process: forked from an
// ordinary goroutine's thread, the child would be killed whenever the Go
// runtime retires that thread (it does when a goroutine exits while
// locked to it, as some libraries do on purpose). A thread locked by a
// goroutine that never returns runs nothing else and never exits, so the
// signal fires when mcpgate dies, and only then.
func startCmd(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnReqs = make(chan spawnReq)
		for range spawners {
			go spawnLoop()
		}
	})
	r := spawnReq{cmd: cmd, done: make(chan error, 1)}
	spawnReqs <- r
	return <-r.done
}

func spawnLoop() {
	runtime.LockOSThread() // never unlocked, see startCmd
	for r := range spawnReqs {
		r.done <- r.cmd.Start()
	}
}

// stat is what mcpgate reads of /proc/PID/stat.
type stat struct {
	state byte
	pgrp  int
	start uint64 // clock ticks after boot
}

func readStat(pid int) (stat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return stat{}, err
	}
	// The command name (field 2) is in parentheses and may hold anything,
	// spaces and parentheses included: the fields that matter follow the
	// last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return stat{}, fmt.Errorf("stdio: /proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), f[2] field 5 (pgrp), f[19] field 22 (starttime).
	if len(f) < 20 || len(f[0]) != 1 {
		return stat{}, fmt.Errorf("stdio: /proc/%d/stat: malformed", pid)
	}
	pgrp, err1 := strconv.Atoi(f[2])
	start, err2 := strconv.ParseUint(f[19], 10, 64)
	if err1 != nil || err2 != nil {
		return stat{}, fmt.Errorf("stdio: /proc/%d/stat: malformed", pid)
	}
	return stat{state: f[0][0], pgrp: pgrp, start: start}, nil
}

var (
	bootOnce sync.Once
	bootID   string
)

// boot is the kernel's boot id: pids and start times of another boot name
// nothing.
func boot() string {
	bootOnce.Do(func() {
		b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
		if err == nil {
			bootID = strings.TrimSpace(string(b))
		}
	})
	return bootID
}

// identify describes the live process pid.
func identify(pid int) (Process, error) {
	s, err := readStat(pid)
	if err != nil {
		return Process{}, err
	}
	b := boot()
	if b == "" {
		return Process{}, errors.New("stdio: no boot id")
	}
	return Process{Pid: pid, Pgid: s.pgrp, Start: s.start, Boot: b}, nil
}

// Alive reports whether p still runs: its pid names a process of this
// boot that started when p did and is not a zombie.
func Alive(p Process) bool {
	s, err := readStat(p.Pid)
	return err == nil && p.Boot != "" && p.Boot == boot() && s.start == p.Start && s.state != 'Z' && s.state != 'X'
}

// Reap ends what is left of the process groups of ps, processes that an
// earlier gateway spawned and recorded (see Recorder), and reports for
// each how many processes it killed. It kills a process only when it can
// show that it belongs to that group: same boot, its process group id is
// p.Pgid, and it started no earlier than p (a member of a group is
// started after the group's leader). If a process with the leader's pid
// exists but started at another time, the pid was reused and the group is
// long gone: nothing is killed. The leader itself is usually dead already
// (the parent-death signal); what Reap finds are its descendants, such as
// the server a `go run` or `npx` wrapper started.
//
// Each process is signalled through a pidfd opened before it is checked
// once more, so a pid reused in between is never signalled. /proc is read
// once per round, however many groups there are.
func Reap(ps []Process) ([]int, error) {
	killed := make([]int, len(ps))
	todo := make([]int, 0, len(ps))
	for i, p := range ps {
		if p.Boot != "" && p.Boot == boot() && p.Pgid > 1 {
			todo = append(todo, i)
		}
	}
	// A member may fork while the others are killed: look again until the
	// groups are empty (SIGKILL cannot be caught, so they empty quickly).
	seen := make(map[int]bool) // killed already: counted once
	for round := 0; len(todo) > 0 && round < 20; round++ {
		procs, err := scanProc()
		if err != nil {
			return killed, err
		}
		var next []int
		for _, i := range todo {
			p := ps[i]
			if s, ok := procs.byPid[p.Pgid]; ok && s.start != p.Start {
				continue // the leader's pid names another process: reused
			}
			found := false
			for _, m := range procs.byGroup[p.Pgid] {
				if !belongs(m.stat, p) {
					continue
				}
				found = true
				ok, err := killMember(m.pid, p)
				if err != nil {
					return killed, err
				}
				if ok && !seen[m.pid] {
					seen[m.pid] = true
					killed[i]++
				}
			}
			if found {
				next = append(next, i)
			}
		}
		todo = next
	}
	return killed, nil
}

type procEntry struct {
	pid int
	stat
}

type procTable struct {
	byPid   map[int]stat
	byGroup map[int][]procEntry
}

// scanProc reads the stat of every process once.
func scanProc() (procTable, error) {
	d, err := os.ReadDir("/proc")
	if err != nil {
		return procTable{}, err
	}
	t := procTable{byPid: make(map[int]stat, len(d)), byGroup: make(map[int][]procEntry)}
	for _, e := range d {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 1 {
			continue
		}
		s, err := readStat(pid)
		if err != nil {
			continue // gone meanwhile
		}
		t.byPid[pid] = s
		t.byGroup[s.pgrp] = append(t.byGroup[s.pgrp], procEntry{pid, s})
	}
	return t, nil
}

func belongs(s stat, p Process) bool {
	return s.pgrp == p.Pgid && s.start >= p.Start && s.state != 'Z' && s.state != 'X'
}

// killMember sends SIGKILL to pid if, once pinned by a pidfd, it still
// belongs to p's group. It reports whether it did.
func killMember(pid int, p Process) (bool, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, syscall.ESRCH) {
		return false, nil
	}
	if errors.Is(err, syscall.ENOSYS) {
		// Kernels before 5.3: check and kill with the narrowest window.
		if s, err := readStat(pid); err != nil || !belongs(s, p) {
			return false, nil
		}
		return signalled(syscall.Kill(pid, syscall.SIGKILL))
	}
	if err != nil {
		return false, fmt.Errorf("stdio: pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(fd)
	if s, err := readStat(pid); err != nil || !belongs(s, p) {
		return false, nil
	}
	ok, err := signalled(unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0))
	if ok {
		// A pidfd turns readable when its process exits: wait for that,
		// so the next look at the group does not find it again.
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			if _, err := unix.Poll(pfd, int(killWait.Milliseconds())); !errors.Is(err, syscall.EINTR) {
				break
			}
		}
	}
	return ok, err
}

// killWait bounds the wait for a killed process to exit.
const killWait = time.Second

func signalled(err error) (bool, error) {
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, syscall.ESRCH):
		return false, nil
	}
	return false, fmt.Errorf("stdio: kill: %w", err)
}
