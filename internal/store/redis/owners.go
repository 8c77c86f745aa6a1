package redisstore

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcpgate/mcpgate/internal/store"
)

var _ store.Owners = (*Store)(nil)

// Announce records that replica is alive at addr for ttl (one round trip:
// SET with PX). Key: <prefix>replica:<replica>.
func (s *Store) Announce(ctx context.Context, replica, addr string, ttl time.Duration) error {
	end, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	if replica == "" {
		return errNoID
	}
	return s.wrap(s.rdb.Set(ctx, s.prefix+"replica:"+replica, addr, ttl).Err(), "announce", replica)
}

// Retire removes replica's announcement at once (one round trip).
func (s *Store) Retire(ctx context.Context, replica string) error {
	end, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	return s.wrap(s.rdb.Del(ctx, s.prefix+"replica:"+replica).Err(), "retire", replica)
}

// Replica returns the address replica announced, or store.ErrNotFound when
// its announcement lapsed or it retired (one round trip).
func (s *Store) Replica(ctx context.Context, replica string) (string, error) {
	end, err := s.begin(ctx)
	if err != nil {
		return "", err
	}
	defer end()
	addr, err := s.rdb.Get(ctx, s.prefix+"replica:"+replica).Result()
	if errors.Is(err, redis.Nil) {
		return "", store.ErrNotFound
	}
	return addr, s.wrap(err, "replica", replica)
}

// Claim moves the session id from owner from to owner to, atomically, if
// from owns it now (one round trip). Two replicas racing to take over the
// same session: exactly one wins.
func (s *Store) Claim(ctx context.Context, id, from, to string) (bool, error) {
	end, err := s.begin(ctx)
	if err != nil {
		return false, err
	}
	defer end()
	n, err := claimScript.Run(ctx, s.rdb, []string{s.keySession + id}, from, to).Int()
	if err != nil {
		return false, s.wrap(err, "claim", id)
	}
	if n < 0 {
		return false, store.ErrNotFound
	}
	return n == 1, nil
}

// claimScript: KEYS[1] session key; ARGV[1] from, ARGV[2] to. Reply 1 if
// claimed, 0 if another replica owns it, -1 if there is no such session.
var claimScript = newScript(`
if redis.call('HEXISTS', KEYS[1], 'record') == 0 then return -1 end
local cur = redis.call('HGET', KEYS[1], 'owner') or ''
if cur ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[2])
return 1
`)
