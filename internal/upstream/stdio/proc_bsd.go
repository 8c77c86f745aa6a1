//go:build unix && !linux

package stdio

import (
	"errors"
	"os/exec"
	"syscall"
)

// sysProcAttr puts the child in a process group of its own, so the whole
// group can be signalled. There is no parent-death signal here: a child
// outlives a gateway that is killed.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

func startCmd(cmd *exec.Cmd) error { return cmd.Start() }

// identify has no portable source of a process's start time here.
func identify(int) (Process, error) { return Process{}, errors.ErrUnsupported }

// Reap cannot verify that a pid still names the recorded process here, so
// it kills nothing.
func Reap(ps []Process) ([]int, error) { return make([]int, len(ps)), errors.ErrUnsupported }

// Alive cannot tell here; nothing is recorded for it to tell about.
func Alive(Process) bool { return false }
