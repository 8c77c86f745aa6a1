package redisstore

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/mcpgate/mcpgate/internal/store"
)

var _ store.Procs = (*Store)(nil)

// procsKey is the hash of one host's spawned processes, by store.Proc.Key.
func (s *Store) procsKey(host string) string { return s.prefix + "procs:" + host }

// PutProc records p (one round trip: HSET).
func (s *Store) PutProc(ctx context.Context, host string, p store.Proc) error {
	end, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	if host == "" {
		return errNoID
	}
	v, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return s.wrap(s.rdb.HSet(ctx, s.procsKey(host), p.Key(), v).Err(), "put proc", p.Key())
}

// DeleteProc removes the record key of host (one round trip: HDEL).
func (s *Store) DeleteProc(ctx context.Context, host, key string) error {
	end, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	if host == "" || key == "" {
		return nil
	}
	return s.wrap(s.rdb.HDel(ctx, s.procsKey(host), key).Err(), "delete proc", key)
}

// ListProcs returns the records of host (one round trip: HGETALL).
func (s *Store) ListProcs(ctx context.Context, host string) ([]store.Proc, error) {
	end, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer end()
	if host == "" {
		return nil, nil
	}
	m, err := s.rdb.HGetAll(ctx, s.procsKey(host)).Result()
	if err != nil {
		return nil, s.wrap(err, "list procs", host)
	}
	out := make([]store.Proc, 0, len(m))
	for k, v := range m {
		var p store.Proc
		if err := json.Unmarshal([]byte(v), &p); err != nil {
			return nil, fmt.Errorf("store/redis: proc %s: %w", k, err)
		}
		out = append(out, p)
	}
	return out, nil
}
