package session

import "time"

// ReapOnce exposes one reaper pass to benchmarks.
func ReapOnce(m *Manager, now time.Time) { m.reapOnce(now) }

// IdleTimeoutOf is the idle timeout s was committed with.
func IdleTimeoutOf(s *Session) time.Duration { return time.Duration(s.idle.Load()) }
