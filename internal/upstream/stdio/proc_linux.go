package stdio

import (
	"errors"
	"syscall"

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
