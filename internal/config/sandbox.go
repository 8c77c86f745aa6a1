package config

import (
	"errors"
	"fmt"
	"math"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
)

// Sandbox confines each process of a stdio upstream: its own process
// group (always), no_new_privs, resource limits, optionally another user,
// and a Landlock file-system restriction where the kernel has Landlock.
// mcpgate applies it by starting itself as a small helper that restricts
// itself and then executes the command (the pid stays the same).
type Sandbox struct {
	// NoNewPrivs sets PR_SET_NO_NEW_PRIVS: neither the server nor
	// anything it runs gains privileges through set-user-ID binaries or
	// file capabilities. Default true; Landlock needs it.
	NoNewPrivs *bool `yaml:"no_new_privs"`
	// User runs the process as this user: a name, a uid, or uid:gid
	// (a name's group is its primary group; a bare uid's group is the
	// same number). Supplementary groups are dropped. Default: the
	// gateway's own user. Needs a gateway running as root. The processes
	// limit counts per user, and root is exempt from it: with a
	// processes limit, a gateway running as root must name a user.
	User string `yaml:"user"`
	// Rlimits are the process's resource limits (soft and hard).
	Rlimits Rlimits `yaml:"rlimits"`
	// Memory caps the resident memory of the process and what it started
	// (its process group): past it the process is killed and its session
	// ends with reason resource_limit. Enforced by a cgroup v2 memory.max
	// where the gateway may create cgroups, else by sampling the group's
	// resident memory every 250ms (a fast allocation can overshoot
	// between two samples). Zero: no cap.
	Memory ByteSize `yaml:"memory"`
	// CPU caps the CPU the process group uses, in cores (0.5 is half of
	// one core, 2 two cores). A cgroup v2 cpu.max throttles the process to
	// it; without a cgroup, a process using more than this on average over
	// 5s is killed and its session ends with reason resource_limit. Zero:
	// no cap.
	CPU float64 `yaml:"cpu"`
	// Filesystem restricts what paths the process can reach (Landlock).
	Filesystem *SandboxFilesystem `yaml:"filesystem"`
}

// Rlimits are resource limits; zero leaves a limit as the gateway's.
type Rlimits struct {
	// AddressSpace caps virtual memory (RLIMIT_AS): an allocation past it
	// fails, which usually ends the process. Go and Node servers reserve
	// a lot of address space they never use: allow 2GiB or more for them.
	AddressSpace ByteSize `yaml:"address_space"`
	// CPUSeconds caps CPU time (RLIMIT_CPU); the process is killed when
	// it is used up.
	CPUSeconds int64 `yaml:"cpu_seconds"`
	// OpenFiles caps open file descriptors (RLIMIT_NOFILE).
	OpenFiles int64 `yaml:"open_files"`
	// Processes caps the processes and threads of the process's user
	// (RLIMIT_NPROC), so a fork bomb stops there. It counts every process
	// of that user on the machine: give the route a user of its own.
	Processes int64 `yaml:"processes"`
}

// SandboxFilesystem lists the paths (existing) the process may reach,
// each with what lies beneath it; everything else is refused. A relative
// path is taken from the directory the process starts in (the upstream's
// dir, or the gateway's working directory), as a relative command is.
// /dev/null is always readable and writable.
type SandboxFilesystem struct {
	// Read: read files and list directories.
	Read []string `yaml:"read"`
	// Write: read, and create, write, truncate, rename and remove.
	Write []string `yaml:"write"`
	// Exec: read and execute. The command must lie beneath one, and so
	// must the dynamic loader of a dynamically linked program (/lib,
	// /lib64) and the interpreter of a script.
	Exec []string `yaml:"exec"`
	// Require refuses to start where the kernel lacks Landlock. Default
	// false: the restriction is then skipped (logged once at start-up as
	// sandbox_landlock_unavailable) and the rest of the sandbox applies.
	Require bool `yaml:"require"`
}

// minSandboxMemory is the least sandbox.memory accepted.
const minSandboxMemory = 4 << 20

// NoNewPrivsOn reports whether no_new_privs applies (its default is on).
func (s *Sandbox) NoNewPrivsOn() bool { return s.NoNewPrivs == nil || *s.NoNewPrivs }

func (s *Sandbox) setDefaults() {
	if s.NoNewPrivs == nil {
		on := true
		s.NoNewPrivs = &on
	}
}

// SandboxUser is a resolved sandbox.user.
type SandboxUser struct {
	UID, GID uint32
}

// ResolveUser reads sandbox.user: a name (its uid and primary group), a
// uid, or uid:gid.
func ResolveUser(s string) (SandboxUser, error) {
	id := func(v, what string) (uint32, error) {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 1<<32-1 {
			return 0, fmt.Errorf("invalid %s %q", what, v)
		}
		return uint32(n), nil
	}
	if u, g, ok := strings.Cut(s, ":"); ok {
		uid, err := id(u, "uid")
		if err != nil {
			return SandboxUser{}, err
		}
		gid, err := id(g, "gid")
		if err != nil {
			return SandboxUser{}, err
		}
		return SandboxUser{UID: uid, GID: gid}, nil
	}
	if uid, err := id(s, "uid"); err == nil {
		return SandboxUser{UID: uid, GID: uid}, nil
	}
	u, err := user.Lookup(s)
	if err != nil {
		return SandboxUser{}, fmt.Errorf("user %q: %v", s, err)
	}
	uid, err1 := id(u.Uid, "uid")
	gid, err2 := id(u.Gid, "gid")
	if err1 != nil || err2 != nil {
		return SandboxUser{}, fmt.Errorf("user %q has no numeric uid and gid", s)
	}
	return SandboxUser{UID: uid, GID: gid}, nil
}

// checkSandbox checks a stdio upstream's sandbox against the machine:
// paths exist and are absolute, the command can be executed from within
// the restriction, a user can be switched to, and the processes limit is
// enforceable.
func checkSandbox(path string, st *StdioUpstream, bad func(path, format string, args ...any)) {
	sb := st.Sandbox
	if sb == nil {
		return
	}
	p := path + ".sandbox"
	r := sb.Rlimits
	for name, v := range map[string]int64{"address_space": int64(r.AddressSpace), "cpu_seconds": r.CPUSeconds, "open_files": r.OpenFiles, "processes": r.Processes} {
		if v < 0 {
			bad(p+".rlimits."+name, "must not be negative")
		}
	}
	if sb.Memory < 0 {
		bad(p+".memory", "must not be negative")
	} else if sb.Memory > 0 && sb.Memory < minSandboxMemory {
		bad(p+".memory", "want at least 4MiB: no server starts in less")
	}
	switch {
	case math.IsNaN(sb.CPU) || math.IsInf(sb.CPU, 0) || sb.CPU < 0:
		bad(p+".cpu", "must be a number of CPU cores, not negative (0.5 is half a core)")
	case sb.CPU > 0 && sb.CPU < 0.01:
		bad(p+".cpu", "want at least 0.01 (a hundredth of a core)")
	}
	if r.OpenFiles > 0 && r.OpenFiles < 4 {
		bad(p+".rlimits.open_files", "want at least 4: the process needs its standard streams")
	}
	uid := uint32(os.Geteuid())
	if sb.User != "" {
		u, err := ResolveUser(sb.User)
		switch {
		case err != nil:
			bad(p+".user", "%v", err)
		case os.Geteuid() != 0 && u.UID != uid:
			bad(p+".user", "switching to another user needs a gateway running as root")
		default:
			uid = u.UID
		}
	}
	if r.Processes > 0 && uid == 0 {
		bad(p+".rlimits.processes", "not enforced for root (RLIMIT_NPROC counts per user, and root is exempt): set sandbox.user to an unprivileged user of the route's own")
	}
	fs := sb.Filesystem
	if fs == nil {
		return
	}
	if !sb.NoNewPrivsOn() {
		bad(p+".no_new_privs", "must be true with filesystem: Landlock needs it")
	}
	var execs []string
	for key, list := range map[string][]string{"read": fs.Read, "write": fs.Write, "exec": fs.Exec} {
		for i, dir := range list {
			ip := fmt.Sprintf("%s.filesystem.%s[%d]", p, key, i)
			dir, err := absUnder(st.Dir, dir)
			if err != nil {
				bad(ip, "%v", err)
				continue
			}
			if _, err := os.Stat(dir); err != nil {
				bad(ip, "%v", unwrapPath(err))
				continue
			}
			if key == "exec" {
				execs = append(execs, filepath.Clean(dir))
			}
		}
	}
	if st.Command == "" {
		return
	}
	cmd, err := ResolveCommand(st.Command, st.Dir)
	if err != nil {
		return // said at .command
	}
	if abs, err := filepath.Abs(cmd); err == nil {
		cmd = abs
	}
	if !beneathAny(cmd, execs) {
		resolved, err := filepath.EvalSymlinks(cmd)
		if err != nil || !beneathAny(resolved, execs) {
			bad(p+".filesystem.exec", "the command %s is not beneath any exec path: it could not be started", cmd)
		}
	}
}

// Resolved is fs with every path made absolute as the process will see
// it: relative ones joined to dir, the directory it starts in ("" for the
// gateway's working directory). A path that cannot be made absolute is
// left as written (validation reports it).
func (fs *SandboxFilesystem) Resolved(dir string) SandboxFilesystem {
	out := *fs
	for _, list := range []*[]string{&out.Read, &out.Write, &out.Exec} {
		abs := make([]string, len(*list))
		for i, p := range *list {
			if a, err := absUnder(dir, p); err == nil {
				p = a
			}
			abs[i] = p
		}
		*list = abs
	}
	return out
}

// absUnder makes p absolute, relative to dir (itself relative to the
// working directory, "" for the working directory itself).
func absUnder(dir, p string) (string, error) {
	if p == "" {
		return "", errors.New("an empty path")
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, p)
	}
	return filepath.Abs(p)
}

// beneathAny reports whether path is one of dirs or lies beneath one.
func beneathAny(path string, dirs []string) bool {
	for _, d := range dirs {
		if path == d || strings.HasPrefix(path, strings.TrimSuffix(d, "/")+"/") {
			return true
		}
	}
	return false
}
