package stdio

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// userHZ is the unit of the CPU times in /proc/PID/stat (USER_HZ, 100 on
// every Linux architecture the gateway runs on).
const userHZ = 100

// procCaps enforces a sandbox's Memory and CPU on one process: through
// its cgroup (cg set) or the Upstream's sampler.
type procCaps struct {
	mem int64
	cpu float64
	cg  *cgroupProc

	// The sampler's, touched by its goroutine only.
	leaderStart uint64
	samples     []cpuSample
	tripped     bool
}

type cpuSample struct {
	at    time.Time
	ticks uint64
}

// prepareCaps readies the caps of the process cmd is about to start: a
// cgroup of its own that cmd is cloned into, when cgroup v2 is usable;
// nil when the sandbox has no cap.
func (u *Upstream) prepareCaps(cmd *exec.Cmd) *procCaps {
	sb := u.cfg.Sandbox
	if !sb.capped() {
		return nil
	}
	pc := &procCaps{mem: sb.Memory, cpu: sb.CPU}
	if parent, err := cgroupParent(); err == nil && !cgroupsOff.Load() {
		cg, err := newCgroupProc(parent, sb.Memory, sb.CPU)
		if err != nil {
			u.logger.Warn("stdio_cgroup_failed", "route", u.route, "error", err,
				"detail", "this process is capped by sampling instead")
		} else {
			pc.cg = cg
			cmd.SysProcAttr.UseCgroupFD = true
			cmd.SysProcAttr.CgroupFD = cg.fd
		}
	}
	return pc
}

// startFailed undoes prepareCaps after cmd failed to start, and reports
// whether starting again without a cgroup may succeed (the kernel could
// not clone into one: before Linux 5.7).
func (pc *procCaps) startFailed(err error) (retry bool) {
	if pc == nil || pc.cg == nil {
		return false
	}
	pc.cg.remove()
	pc.cg = nil
	if errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EBADF) {
		cgroupsOff.Store(true)
		return true
	}
	return false
}

// started begins enforcing on c's running process.
func (pc *procCaps) started(c *Conn) {
	if pc == nil {
		return
	}
	if pc.cg != nil {
		_ = unix.Close(pc.cg.fd)
		pc.cg.fd = -1
		return
	}
	if s, err := readStat(c.pid); err == nil {
		pc.leaderStart = s.start
	}
	pc.samples = append(pc.samples, cpuSample{at: time.Now()})
	c.up.sampler().add(c)
}

// ended stops enforcing once c's process was reaped and reports the cap
// that ended it, if one did and the Conn does not know it yet.
func (pc *procCaps) ended(c *Conn) error {
	if pc == nil {
		return nil
	}
	if pc.cg == nil {
		c.up.sampler().remove(c)
		return nil
	}
	oom := pc.cg.oomKills()
	pc.cg.remove()
	if oom > 0 {
		err := memoryCapError(pc.mem, pc.mem, "cgroup")
		c.b().log.Warn("stdio_resource_limit", "cap", err.key, "limit", err.limit, "enforced_by", "cgroup", "oom_kills", oom)
		return err
	}
	return nil
}

// capState says how the caps of an Upstream are enforced, for its log.
func capState() (how, detail string) {
	if dir, err := cgroupParent(); err == nil {
		return "cgroup", dir
	} else {
		return "sampled", err.Error()
	}
}

// sampler watches the capped processes of one Upstream that have no
// cgroup; its goroutine runs while there is one.
type sampler struct {
	interval, window time.Duration
	page             int64

	mu    sync.Mutex
	conns map[*Conn]struct{}
	stop  chan struct{} // closed when conns empties
}

func (u *Upstream) sampler() *sampler {
	u.sampOnce.Do(func() {
		u.samp = &sampler{interval: u.capInterval, window: u.cpuWindow, page: int64(os.Getpagesize()), conns: map[*Conn]struct{}{}}
	})
	return u.samp
}

func (s *sampler) add(c *Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns[c] = struct{}{}
	if s.stop == nil {
		s.stop = make(chan struct{})
		go s.run(s.stop)
	}
}

func (s *sampler) remove(c *Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	if len(s.conns) == 0 && s.stop != nil {
		close(s.stop)
		s.stop = nil
	}
}

func (s *sampler) run(stop chan struct{}) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			s.mu.Lock()
			conns := make([]*Conn, 0, len(s.conns))
			for c := range s.conns {
				conns = append(conns, c)
			}
			s.mu.Unlock()
			s.sample(conns, now)
		}
	}
}

// usage is what the sampler reads of one process.
type usage struct {
	start uint64
	state byte
	rss   int64  // pages
	ticks uint64 // utime+stime+cutime+cstime
}

// sample reads /proc once and checks every process group in conns.
func (s *sampler) sample(conns []*Conn, now time.Time) {
	groups := make(map[int]*Conn, len(conns))
	for _, c := range conns {
		groups[c.pid] = c // the leader's pid is its group id
	}
	d, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	type total struct {
		rss   int64
		ticks uint64
		found bool
	}
	totals := make(map[*Conn]*total, len(conns))
	for _, e := range d {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 1 {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		pgrp, u, ok := parseUsage(b)
		if !ok {
			continue
		}
		c := groups[pgrp]
		if c == nil || u.start < c.caps.leaderStart || u.state == 'X' {
			continue
		}
		t := totals[c]
		if t == nil {
			t = &total{}
			totals[c] = t
		}
		t.rss += u.rss
		t.ticks += u.ticks
		t.found = true
	}
	for c, t := range totals {
		pc := c.caps
		if pc.tripped || !t.found {
			continue
		}
		if used := t.rss * s.page; pc.mem > 0 && used > pc.mem {
			pc.tripped = true
			c.capExceeded(memoryCapError(pc.mem, used, "sampled"))
			continue
		}
		if pc.cpu <= 0 {
			continue
		}
		pc.samples = append(pc.samples, cpuSample{at: now, ticks: t.ticks})
		// Keep the newest sample at least window old as the base.
		i := 0
		for i+1 < len(pc.samples) && now.Sub(pc.samples[i+1].at) >= s.window {
			i++
		}
		pc.samples = pc.samples[i:]
		base := pc.samples[0]
		span := now.Sub(base.at)
		if span < s.window || t.ticks < base.ticks {
			continue
		}
		if cores := float64(t.ticks-base.ticks) / userHZ / span.Seconds(); cores > pc.cpu {
			pc.tripped = true
			c.capExceeded(cpuCapError(pc.cpu, cores, s.window))
		}
	}
}

// parseUsage reads a /proc/PID/stat: the process group, and the usage.
func parseUsage(b []byte) (pgrp int, u usage, ok bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, u, false
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), f[2] 5 (pgrp), f[11]..f[14] 14..17
	// (utime, stime, cutime, cstime), f[19] 22 (starttime), f[21] 24 (rss).
	if len(f) < 22 || len(f[0]) != 1 {
		return 0, u, false
	}
	pgrp, err := strconv.Atoi(f[2])
	if err != nil {
		return 0, u, false
	}
	var ticks uint64
	for _, s := range f[11:15] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, u, false
		}
		if v > 0 {
			ticks += uint64(v)
		}
	}
	start, err1 := strconv.ParseUint(f[19], 10, 64)
	rss, err2 := strconv.ParseInt(f[21], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, u, false
	}
	return pgrp, usage{start: start, state: f[0][0], rss: max(rss, 0), ticks: ticks}, true
}

// capExceeded kills the process group for a cap.
func (c *Conn) capExceeded(err *capError) {
	c.b().log.Warn("stdio_resource_limit", "cap", err.key, "limit", err.limit, "used", err.used, "enforced_by", err.how)
	c.breakProcess(err)
}

// Cgroup v2.

var (
	cgroupOnce sync.Once
	cgroupDir  string
	cgroupErr  error
	// cgroupsOff is set when the kernel could not start a process in a
	// cgroup: every later process is sampled.
	cgroupsOff atomic.Bool
	cgroupSeq  atomic.Uint64
)

// cgroupParent is the cgroup v2 directory the gateway creates the
// cgroups of capped processes in, or why there is none (then the caps
// are sampled). It is found once.
func cgroupParent() (string, error) {
	cgroupOnce.Do(func() {
		mi, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			cgroupErr = fmt.Errorf("cgroup v2: %v", err)
			return
		}
		self, err := os.ReadFile("/proc/self/cgroup")
		if err != nil {
			cgroupErr = fmt.Errorf("cgroup v2: %v", err)
			return
		}
		dir, err := findCgroup(mi, self)
		if err == nil {
			err = delegate(dir, os.Getpid())
		}
		cgroupDir, cgroupErr = dir, err
	})
	return cgroupDir, cgroupErr
}

// cgroupControllers are the controllers a process's cgroup needs.
var cgroupControllers = []string{"memory", "cpu"}

// findCgroup is the directory of the gateway's cgroup v2 cgroup, from
// /proc/self/mountinfo and /proc/self/cgroup.
func findCgroup(mountinfo, self []byte) (string, error) {
	path, ok := "", false
	for _, l := range strings.Split(string(self), "\n") {
		if p, found := strings.CutPrefix(l, "0::"); found {
			path, ok = p, true
			break
		}
	}
	if !ok {
		return "", errors.New("cgroup v2: the gateway is in no cgroup v2 hierarchy (cgroup v1 only)")
	}
	var mounts []string
	for _, l := range strings.Split(string(mountinfo), "\n") {
		pre, post, found := strings.Cut(l, " - ")
		if !found {
			continue
		}
		if f := strings.Fields(post); len(f) == 0 || f[0] != "cgroup2" {
			continue
		}
		f := strings.Fields(pre)
		if len(f) < 5 {
			continue
		}
		root, mnt := unescapeMount(f[3]), unescapeMount(f[4])
		mounts = append(mounts, mnt)
		rel, found := strings.CutPrefix(path, root)
		if root == "/" {
			rel, found = path, true
		}
		if !found || (rel != "" && rel[0] != '/') {
			continue
		}
		return filepath.Join(mnt, rel), nil
	}
	if len(mounts) == 0 {
		return "", errors.New("cgroup v2: no cgroup2 file system is mounted")
	}
	return "", fmt.Errorf("cgroup v2: the gateway's cgroup %s is not under a cgroup2 mount (%s)", path, strings.Join(mounts, ", "))
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// delegate makes dir, the gateway's cgroup, able to hold the cgroups of
// capped processes: the memory and cpu controllers are available in it
// and enabled for its children. A cgroup other than the root that holds
// processes cannot enable controllers for children (cgroup v2's "no
// internal processes" rule): when the gateway (pid) is the only process
// in dir, it moves itself into a child of its own, mcpgate, first, as a
// service with a delegated cgroup is expected to.
func delegate(dir string, pid int) error {
	have, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("cgroup v2: %s: %v", dir, err)
	}
	for _, c := range cgroupControllers {
		if !hasWord(have, c) {
			return fmt.Errorf("cgroup v2: the %s controller is not available in %s (it has: %q)", c, dir, strings.TrimSpace(string(have)))
		}
	}
	enabled := func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
		if err != nil {
			return false
		}
		for _, c := range cgroupControllers {
			if !hasWord(b, c) && !hasWord(b, "+"+c) {
				return false
			}
		}
		return true
	}
	if !enabled() {
		enable := func() error {
			return os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+"+strings.Join(cgroupControllers, " +")), 0)
		}
		err := enable()
		if errors.Is(err, syscall.EBUSY) {
			procs, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
			if strings.TrimSpace(string(procs)) != strconv.Itoa(pid) {
				return fmt.Errorf("cgroup v2: %s holds processes besides the gateway, so it cannot enable controllers for children", dir)
			}
			leaf := filepath.Join(dir, "mcpgate")
			if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return fmt.Errorf("cgroup v2: %v", err)
			}
			if err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
				return fmt.Errorf("cgroup v2: moving the gateway into %s: %v", leaf, err)
			}
			err = enable()
		}
		if err != nil {
			return fmt.Errorf("cgroup v2: enabling memory and cpu for the children of %s: %v", dir, err)
		}
		if !enabled() {
			return fmt.Errorf("cgroup v2: %s does not enable memory and cpu for its children", dir)
		}
	}
	// Can a child be made?
	probe := filepath.Join(dir, "mcpgate-check-"+strconv.Itoa(pid))
	if err := os.Mkdir(probe, 0o755); err != nil {
		return fmt.Errorf("cgroup v2: %s is not writable: %v", dir, err)
	}
	_ = os.Remove(probe)
	return nil
}

func hasWord(b []byte, w string) bool {
	for _, f := range strings.Fields(string(b)) {
		if f == w {
			return true
		}
	}
	return false
}

// cgroupProc is the cgroup of one process.
type cgroupProc struct {
	dir string
	fd  int // open until the process started in it
}

// cpuPeriod is the cpu.max period, in microseconds.
const cpuPeriod = 100000

func newCgroupProc(parent string, mem int64, cpu float64) (*cgroupProc, error) {
	dir := filepath.Join(parent, "mcpgate-"+strconv.Itoa(os.Getpid())+"-"+strconv.FormatUint(cgroupSeq.Add(1), 10))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	cg := &cgroupProc{dir: dir, fd: -1}
	set := func(file, v string, required bool) error {
		err := os.WriteFile(filepath.Join(dir, file), []byte(v), 0)
		if err != nil && required {
			return fmt.Errorf("cgroup v2: %s: %v", file, err)
		}
		return nil
	}
	var err error
	if mem > 0 {
		err = set("memory.max", strconv.FormatInt(mem, 10), true)
		if err == nil {
			// Not into swap, and the whole cgroup at once.
			_ = set("memory.swap.max", "0", false)
			_ = set("memory.oom.group", "1", false)
		}
	}
	if err == nil && cpu > 0 {
		quota := max(int64(cpu*cpuPeriod), 1000)
		err = set("cpu.max", strconv.FormatInt(quota, 10)+" "+strconv.Itoa(cpuPeriod), true)
	}
	if err == nil {
		cg.fd, err = unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		cg.remove()
		return nil, err
	}
	return cg, nil
}

// oomKills reads memory.events' oom_kill.
func (cg *cgroupProc) oomKills() int64 {
	b, err := os.ReadFile(filepath.Join(cg.dir, "memory.events"))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "oom_kill "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// remove kills what is left in the cgroup and removes it; a cgroup whose
// last processes are still exiting is busy for a moment.
func (cg *cgroupProc) remove() {
	if cg.fd >= 0 {
		_ = unix.Close(cg.fd)
		cg.fd = -1
	}
	_ = os.WriteFile(filepath.Join(cg.dir, "cgroup.kill"), []byte("1"), 0)
	for i := 0; i < 100; i++ {
		err := unix.Rmdir(cg.dir)
		if err == nil || errors.Is(err, syscall.ENOENT) || !errors.Is(err, syscall.EBUSY) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
