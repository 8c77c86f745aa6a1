package memory

import (
	"context"

	"github.com/mcpgate/mcpgate/internal/store"
)

var _ store.Pinger = (*Store)(nil)

// Ping reports whether the store is open: memory is always reachable.
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.ErrClosed
	}
	return nil
}
