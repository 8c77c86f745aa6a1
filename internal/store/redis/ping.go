package redisstore

import (
	"context"

	"github.com/mcpgate/mcpgate/internal/store"
)

var _ store.Pinger = (*Store)(nil)

// Ping sends PING: one round trip, bounded like every call (see
// "Failures" in the package doc) and by ctx's deadline. While Redis is
// unreachable it fails promptly; once Redis is back it succeeds again
// within about a second, without reopening the store.
func (s *Store) Ping(ctx context.Context) error {
	end, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	return s.wrap(s.rdb.Ping(ctx).Err(), "ping", "")
}
