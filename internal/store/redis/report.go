package redisstore

import "github.com/mcpgate/mcpgate/internal/store"

var _ store.ErrorReporter = (*Store)(nil)

// ReportErrors makes the flusher tell fn of each failed flush of buffered
// touches, as op "touch": every failed flush counts, though only the first
// of a run is logged (store_touch_flush_failed).
func (s *Store) ReportErrors(fn func(op string)) { s.reportErr.Store(&fn) }
