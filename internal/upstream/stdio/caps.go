package stdio

import (
	"fmt"
	"strconv"
	"time"

	"github.com/mcpgate/mcpgate/internal/upstream"
)

// Sandbox.Memory and Sandbox.CPU are enforced by the gateway, not by the
// helper: with a cgroup v2 cgroup of the process's own where the gateway
// may create one (memory.max, cpu.max; see caps_linux.go), otherwise by a
// sampler that reads the process group's resident memory and CPU time
// from /proc every capInterval and kills the group past a cap.
const (
	// defaultCapInterval is how often the sampler looks.
	defaultCapInterval = 250 * time.Millisecond
	// defaultCPUWindow is how long the sampled CPU rate must stay above
	// Sandbox.CPU, on average, before the process is killed.
	defaultCPUWindow = 5 * time.Second
)

// capError is why a cap ended a process. It wraps upstream.ErrResourceLimit.
type capError struct {
	// key is the configuration key of the cap: "sandbox.memory" or
	// "sandbox.cpu".
	key string
	// limit and used are the cap and what the process used, in words.
	limit, used string
	// how says how it was enforced: "sampled", "cgroup".
	how string
}

func (e *capError) Error() string {
	return upstream.ErrResourceLimit.Error() + ": " + e.ResourceLimit()
}

func (e *capError) Unwrap() error { return upstream.ErrResourceLimit }

// ResourceLimit is the cap, its limit and the usage, for the client.
func (e *capError) ResourceLimit() string {
	switch {
	case e.key == "sandbox.memory" && e.how == "cgroup":
		return "the process ran out of memory under its cap " + e.key + " " + e.limit
	case e.key == "sandbox.memory":
		return "resident memory " + e.used + " over the cap " + e.key + " " + e.limit
	}
	return "CPU " + e.used + " over the cap " + e.key + " " + e.limit
}

// memoryCapError is the error of a process group holding used bytes over
// limit.
func memoryCapError(limit, used int64, how string) *capError {
	return &capError{key: "sandbox.memory", limit: formatBytes(limit), used: formatBytes(used), how: how}
}

// cpuCapError is the error of a process group using cores (on average over
// window) over limit.
func cpuCapError(limit, cores float64, window time.Duration) *capError {
	return &capError{
		key:   "sandbox.cpu",
		limit: formatCores(limit),
		used:  formatCores(cores) + " on average over " + window.String(),
		how:   "sampled",
	}
}

func formatCores(c float64) string {
	s := strconv.FormatFloat(c, 'f', 2, 64)
	if c == 1 {
		return s + " core"
	}
	return s + " cores"
}

// formatBytes writes n in the largest binary unit it reaches.
func formatBytes(n int64) string {
	units := []string{"KiB", "MiB", "GiB", "TiB"}
	if n < 1<<10 {
		return strconv.FormatInt(n, 10) + " B"
	}
	v, u := float64(n)/(1<<10), 0
	for v >= 1<<10 && u < len(units)-1 {
		v /= 1 << 10
		u++
	}
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d %s", int64(v), units[u])
	}
	return fmt.Sprintf("%.1f %s", v, units[u])
}

// capped reports whether s has a memory or CPU cap.
func (s *Sandbox) capped() bool { return s != nil && (s.Memory > 0 || s.CPU > 0) }
