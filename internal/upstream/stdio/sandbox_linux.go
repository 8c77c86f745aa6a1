package stdio

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"

	"github.com/landlock-lsm/go-landlock/landlock"
	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// The helper runs from init, before main: a process started under the
// hidden entry never becomes a gateway.
func init() {
	if len(os.Args) >= 3 && os.Args[0] == sandboxArg0 {
		if s, ok := os.LookupEnv(sandboxEnv); ok {
			sandboxExec(s, os.Args[1], os.Args[2:])
		}
	}
}

// sandboxExec restricts this process as s says and executes path with
// argv in its place. It returns only by exiting.
func sandboxExec(s, path string, argv []string) {
	// no_new_privs, Landlock and a change of user made by a raw system
	// call hold for the calling thread, which is the one that executes.
	runtime.LockOSThread()
	err := restrictAndExec(s, path, argv)
	fmt.Fprintf(os.Stderr, "mcpgate-sandbox: %v\n", err)
	code := 126
	if errors.Is(err, os.ErrNotExist) {
		code = 127
	}
	os.Exit(code)
}

func restrictAndExec(s, path string, argv []string) error {
	var sp spec
	if err := json.Unmarshal([]byte(s), &sp); err != nil {
		return fmt.Errorf("bad sandbox: %v", err)
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, sandboxEnv+"=") })
	for _, l := range []struct {
		name     string
		resource int
		v        int64
	}{
		{"address_space", unix.RLIMIT_AS, sp.AddressSpace},
		{"cpu_seconds", unix.RLIMIT_CPU, sp.CPUSeconds},
		{"open_files", unix.RLIMIT_NOFILE, sp.OpenFiles},
		{"processes", unix.RLIMIT_NPROC, sp.Processes},
	} {
		if l.v <= 0 {
			continue
		}
		var cur syscall.Rlimit
		if err := syscall.Getrlimit(l.resource, &cur); err != nil {
			return fmt.Errorf("rlimit %s: %v", l.name, err)
		}
		v := min(uint64(l.v), cur.Max) // a limit is never raised
		// syscall.Setrlimit, not a raw prlimit: for RLIMIT_NOFILE it also
		// stops Exec from restoring the limit Go found at start-up.
		if err := syscall.Setrlimit(l.resource, &syscall.Rlimit{Cur: v, Max: v}); err != nil {
			return fmt.Errorf("rlimit %s: %v", l.name, err)
		}
	}
	if u := sp.User; u != nil {
		if err := syscall.Setgroups(nil); err != nil {
			return fmt.Errorf("user: setgroups: %v", err)
		}
		if err := syscall.Setresgid(int(u.GID), int(u.GID), int(u.GID)); err != nil {
			return fmt.Errorf("user: setresgid %d: %v", u.GID, err)
		}
		if err := syscall.Setresuid(int(u.UID), int(u.UID), int(u.UID)); err != nil {
			return fmt.Errorf("user: setresuid %d: %v", u.UID, err)
		}
		// A change of user clears the parent-death signal: set it again,
		// then make sure the gateway did not die in between.
		if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0, 0, 0); err != nil {
			return fmt.Errorf("pdeathsig: %v", err)
		}
		if os.Getppid() != sp.Parent {
			return errors.New("the gateway is gone")
		}
	}
	if sp.NoNewPrivs {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("no_new_privs: %v", err)
		}
	}
	if fs := sp.Filesystem; fs != nil {
		if err := restrictPaths(fs); err != nil {
			return fmt.Errorf("landlock: %v", err)
		}
	}
	if err := syscall.Exec(path, argv, env); err != nil {
		return &os.PathError{Op: "exec", Path: path, Err: err}
	}
	return nil
}

// File-system rights (Landlock access rights).
const (
	rightsRead  = ll.AccessFSReadFile | ll.AccessFSReadDir
	rightsExec  = rightsRead | ll.AccessFSExecute
	rightsWrite = rightsRead | ll.AccessFSWriteFile | ll.AccessFSTruncate | ll.AccessFSRemoveDir | ll.AccessFSRemoveFile |
		ll.AccessFSMakeChar | ll.AccessFSMakeDir | ll.AccessFSMakeReg | ll.AccessFSMakeSock | ll.AccessFSMakeFifo |
		ll.AccessFSMakeBlock | ll.AccessFSMakeSym | ll.AccessFSResolveUnix
	// rightsFile are the rights that apply to a file (not a directory).
	rightsFile = ll.AccessFSExecute | ll.AccessFSWriteFile | ll.AccessFSReadFile | ll.AccessFSTruncate | ll.AccessFSIoctlDev
	// rightsHandled is every file-system right this version knows; what
	// the kernel lacks is dropped (best effort), so an older kernel
	// restricts less rather than not at all.
	rightsHandled = ll.AccessFSResolveUnix<<1 - 1
)

// restrictPaths applies the Landlock restriction to the calling thread.
func restrictPaths(fs *Filesystem) error {
	if landlockABI() < 1 {
		if fs.Require {
			return ErrLandlockUnavailable
		}
		return nil // said at start-up (New)
	}
	var rules []landlock.Rule
	add := func(rights landlock.AccessFSSet, paths []string) error {
		for _, p := range paths {
			fi, err := os.Stat(p)
			if err != nil {
				return err
			}
			r := rights
			if !fi.IsDir() {
				r &= rightsFile
			}
			rules = append(rules, landlock.PathAccess(r, p))
		}
		return nil
	}
	for _, g := range []struct {
		rights landlock.AccessFSSet
		paths  []string
	}{{rightsRead, fs.Read}, {rightsExec, fs.Exec}, {rightsWrite, fs.Write}} {
		if err := add(g.rights, g.paths); err != nil {
			return err
		}
	}
	rules = append(rules, landlock.PathAccess(ll.AccessFSReadFile|ll.AccessFSWriteFile|ll.AccessFSTruncate, "/dev/null").IgnoreIfMissing())
	fd, flags, err := landlock.Config{HandledAccessFS: rightsHandled}.BestEffort().NewRulesetFD(rules...)
	if err != nil {
		return err
	}
	if fd < 0 {
		return nil
	}
	defer unix.Close(fd)
	return ll.LandlockRestrictSelf(fd, flags)
}

// landlockABI is the kernel's Landlock ABI version, 0 without Landlock.
func landlockABI() int {
	v, err := ll.LandlockGetABIVersion()
	if err != nil {
		return 0
	}
	return v
}
