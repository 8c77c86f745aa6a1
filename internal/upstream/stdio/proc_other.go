//go:build !linux

package stdio

// waitNoReap is only available on Linux; elsewhere the process is reaped by
// exec.Cmd.Wait first and not signalled afterwards.
func waitNoReap(int) bool { return false }
