//go:build !unix

package stdio

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

func startCmd(cmd *exec.Cmd) error { return cmd.Start() }

// signalGroup has no process groups to work with here: SIGTERM has no
// equivalent, so both steps of the escalation kill the process.
func signalGroup(p *os.Process, _ syscall.Signal) error { return p.Kill() }

func identify(int) (Process, error) { return Process{}, errors.ErrUnsupported }

// Reap kills nothing here (see the Linux implementation).
func Reap(ps []Process) ([]int, error) { return make([]int, len(ps)), errors.ErrUnsupported }

// Alive cannot tell here; nothing is recorded for it to tell about.
func Alive(Process) bool { return false }
