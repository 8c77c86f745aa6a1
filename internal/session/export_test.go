package session

import "time"

// ReapOnce exposes one reaper pass to benchmarks.
func ReapOnce(m *Manager, now time.Time) { m.reapOnce(now) }
