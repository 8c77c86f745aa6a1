//go:build unix

package stdio

import (
	"os"
	"syscall"
)

// sysProcAttr puts the child in a process group of its own, so the whole
// group (a wrapper such as npx and the server it starts) can be signalled,
// and a terminal's Ctrl-C does not reach it before mcpgate shuts it down.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// signalGroup signals the process group led by p. The caller guarantees
// that p has not been reaped, so its pid (and group id) cannot have been
// reused.
func signalGroup(p *os.Process, sig syscall.Signal) error {
	return syscall.Kill(-p.Pid, sig)
}
