//go:build !linux

package stdio

import "os/exec"

// The caps are Linux's, as the sandbox is (CheckSandbox).

type procCaps struct{}

type sampler struct{}

func (u *Upstream) prepareCaps(*exec.Cmd) *procCaps { return nil }

func (*procCaps) startFailed(error) bool { return false }

func (*procCaps) started(*Conn) {}

func (*procCaps) ended(*Conn) error { return nil }

func capState() (how, detail string) { return "none", "resource caps need Linux" }
