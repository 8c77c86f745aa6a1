//go:build !unix

package stdio

import (
	"os"
	"syscall"
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

// signalGroup has no process groups to work with here: SIGTERM has no
// equivalent, so both steps of the escalation kill the process.
func signalGroup(p *os.Process, _ syscall.Signal) error { return p.Kill() }
