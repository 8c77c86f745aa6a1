package redisstore

import (
	"context"

	"github.com/redis/go-redis/v9"

	"github.com/mcpgate/mcpgate/internal/store"
)

var _ store.Pinger = (*Store)(nil)

// Ping sends PING, and reads the epoch: one round trip, bounded like every call (see
// "Failures" in the package doc) and by ctx's deadline. While Redis is
// unreachable it fails promptly; once Redis is back it succeeds again
// within about a second, without reopening the store.
func (s *Store) Ping(ctx context.Context) error {
	end, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	// The epoch rides along in the same round trip: a Redis that lost its
	// data is noticed within a check (see "Losing the data").
	var ping *redis.StatusCmd
	var epoch *redis.StringCmd
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		ping = p.Ping(ctx)
		epoch = p.Get(ctx, s.prefix+"epoch")
		return nil
	})
	if err := ping.Err(); err != nil {
		return s.wrap(err, "ping", "")
	}
	s.pingEpoch(epoch)
	return nil
}
