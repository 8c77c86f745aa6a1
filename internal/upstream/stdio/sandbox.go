package stdio

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strings"
)

// Sandbox confines a process beyond its own process group: no_new_privs,
// resource limits, another user, and a Landlock file-system restriction.
//
// Go cannot run code between fork and exec, so a sandboxed process is
// started as the gateway's own executable (os.Executable) under a hidden
// entry, which restricts itself and then executes the command in its
// place: the pid, the process group and the parent-death signal are the
// command's, so the records and the sweep (Reap) are unchanged. The entry
// runs from this package's init, so any binary that links it — mcpgate,
// or a program embedding the gateway — serves as its own helper with
// nothing to call; CheckSandbox, which the gateway runs when it builds
// the route, reports a binary that cannot (no os.Executable).
type Sandbox struct {
	// NoNewPrivs sets PR_SET_NO_NEW_PRIVS. Landlock needs it (or a
	// process with CAP_SYS_ADMIN).
	NoNewPrivs bool `json:"nnp,omitempty"`
	// User, when set, is the user and group the process runs as, with no
	// supplementary groups; changing them needs a gateway running as root.
	User *User `json:"user,omitempty"`
	// Limits are resource limits, soft and hard; zero leaves one as the
	// gateway's. Processes is RLIMIT_NPROC, which counts every process and
	// thread of the process's user and does not apply to root: it bounds a
	// fork bomb only under a User of the route's own.
	AddressSpace int64 `json:"as,omitempty"`
	CPUSeconds   int64 `json:"cpu,omitempty"`
	OpenFiles    int64 `json:"nofile,omitempty"`
	Processes    int64 `json:"nproc,omitempty"`
	// Memory caps the resident memory of the process group in bytes, and
	// CPU its CPU in cores; zero is no cap. The gateway enforces them, not
	// the helper: a cgroup v2 cgroup per process (memory.max, cpu.max)
	// where the gateway may create one, else a sampler of /proc that kills
	// the group past a cap (CPU: on average over 5s). A process a cap
	// killed fails with an error wrapping upstream.ErrResourceLimit.
	Memory int64   `json:"-"`
	CPU    float64 `json:"-"`
	// Filesystem, when set, restricts the paths the process can reach.
	Filesystem *Filesystem `json:"fs,omitempty"`
}

// User is a uid and gid.
type User struct {
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
}

// Filesystem is a Landlock restriction: the process reaches only what
// lies beneath these absolute paths (and /dev/null), each with its rights.
type Filesystem struct {
	// Read: read files, list directories.
	Read []string `json:"r,omitempty"`
	// Write: read, create, write, truncate, remove (renames across
	// directories are refused: Landlock's "refer" right is not granted).
	Write []string `json:"w,omitempty"`
	// Exec: read and execute. The command lies beneath one, and so must a
	// dynamically linked program's loader and a script's interpreter.
	Exec []string `json:"x,omitempty"`
	// Require refuses to start where the kernel lacks Landlock; otherwise
	// the restriction is skipped there (logged at New as
	// sandbox_landlock_unavailable) and the rest still applies.
	Require bool `json:"require,omitempty"`
}

// LogValue summarizes the sandbox for the log.
func (s *Sandbox) LogValue() slog.Value {
	if s == nil {
		return slog.StringValue("none")
	}
	attrs := []slog.Attr{slog.Bool("no_new_privs", s.NoNewPrivs)}
	if s.User != nil {
		attrs = append(attrs, slog.String("user", fmt.Sprintf("%d:%d", s.User.UID, s.User.GID)))
	}
	for _, l := range []struct {
		k string
		v int64
	}{{"address_space", s.AddressSpace}, {"cpu_seconds", s.CPUSeconds}, {"open_files", s.OpenFiles}, {"processes", s.Processes}} {
		if l.v > 0 {
			attrs = append(attrs, slog.Int64(l.k, l.v))
		}
	}
	if s.Memory > 0 {
		attrs = append(attrs, slog.Int64("memory", s.Memory))
	}
	if s.CPU > 0 {
		attrs = append(attrs, slog.Float64("cpu", s.CPU))
	}
	if s.Filesystem != nil {
		attrs = append(attrs, slog.Bool("filesystem", true))
	}
	return slog.GroupValue(attrs...)
}

// The hidden entry: argv[0] sandboxArg0 and the sandbox in sandboxEnv
// (removed before the command runs), then the path to execute and the
// command's own argv.
const (
	sandboxArg0 = "mcpgate-sandbox"
	sandboxEnv  = "MCPGATE_SANDBOX_EXEC"
)

// spec is what the helper is given.
type spec struct {
	Sandbox
	// Parent is the gateway's pid: a helper whose parent changed died
	// before it could set the parent-death signal again (a change of user
	// clears it).
	Parent int `json:"parent"`
}

// ErrLandlockUnavailable is CheckSandbox's error for a sandbox that
// requires Landlock on a kernel without it.
var ErrLandlockUnavailable = errors.New("stdio: sandbox: the kernel has no Landlock (filesystem.require is set)")

// sandboxCmd returns the command that starts cfg's command in s, and the
// helper's environment: env plus the sandbox.
func (u *Upstream) sandboxCmd(env []string) (*exec.Cmd, error) {
	path := u.cfg.Command
	if !strings.ContainsRune(path, '/') {
		// Looked up as exec.Command would, in mcpgate's PATH.
		p, err := exec.LookPath(path)
		if err != nil {
			return nil, err
		}
		path = p
	}
	b, err := json.Marshal(spec{Sandbox: *u.cfg.Sandbox, Parent: os.Getpid()})
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(u.self)
	cmd.Args = append([]string{sandboxArg0, path, u.cfg.Command}, u.cfg.Args...)
	cmd.Env = append(env[:len(env):len(env)], sandboxEnv+"="+string(b))
	return cmd, nil
}

// CheckSandbox says whether s can be applied here: it needs Linux and an
// executable this process can start again (os.Executable), and with
// Filesystem.Require, a kernel with Landlock (ErrLandlockUnavailable).
// The gateway runs it when it builds a route, so `mcpgate validate` and
// start-up fail rather than every spawn.
func CheckSandbox(s *Sandbox) error {
	if s == nil {
		return nil
	}
	if runtime.GOOS != "linux" {
		return fmt.Errorf("stdio: sandbox: needs Linux, not %s", runtime.GOOS)
	}
	if _, err := os.Executable(); err != nil {
		return fmt.Errorf("stdio: sandbox: the gateway cannot start itself as the sandbox's helper: %w", err)
	}
	if s.Filesystem != nil && s.Filesystem.Require && landlockABI() < 1 {
		return ErrLandlockUnavailable
	}
	return nil
}

// LandlockABI is the kernel's Landlock ABI version; 0 means no Landlock.
func LandlockABI() int { return landlockABI() }
