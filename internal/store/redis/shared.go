package redisstore

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"

	"github.com/mcpgate/mcpgate/internal/store"
)

var _ store.SharedState = (*Store)(nil)

// SaveShared replaces the blob name, for every replica (one SET).
func (s *Store) SaveShared(ctx context.Context, name string, data []byte) error {
	end, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	return s.wrap(s.rdb.Set(ctx, s.prefix+"shared:"+name, data, 0).Err(), "put", name)
}

// LoadShared returns the blob name, or store.ErrNotFound.
func (s *Store) LoadShared(ctx context.Context, name string) ([]byte, error) {
	end, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer end()
	b, err := s.rdb.Get(ctx, s.prefix+"shared:"+name).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, s.wrap(err, "get", name)
	}
	return b, nil
}
