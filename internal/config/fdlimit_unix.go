//go:build unix

package config

import (
	"math"
	"syscall"
)

func fdLimit() (int, bool) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, false
	}
	if rl.Cur > math.MaxInt32 {
		return math.MaxInt32, true
	}
	return int(rl.Cur), true
}
