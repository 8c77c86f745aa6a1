package bolt

import "github.com/mcpgate/mcpgate/internal/store"

var _ store.ErrorReporter = (*Store)(nil)

// ReportErrors makes the flusher tell fn of each failed flush of buffered
// touches, as op "touch".
func (s *Store) ReportErrors(fn func(op string)) { s.reportErr.Store(&fn) }
