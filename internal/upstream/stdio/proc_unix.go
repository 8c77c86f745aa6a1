//go:build unix

package stdio

import (
	"os"
	"syscall"
)

// signalGroup signals the process group led by p. The caller guarantees
// that p has not been reaped, so its pid (and group id) cannot have been
// reused.
func signalGroup(p *os.Process, sig syscall.Signal) error {
	return syscall.Kill(-p.Pid, sig)
}
