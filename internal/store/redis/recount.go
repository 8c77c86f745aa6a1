package redisstore

import (
	"context"
	"time"
)

// Recount counts session id again under the given cluster-wide cap
// scopes, after Redis lost its data (see "Losing the data"): the replica
// holding a live session writes its record back (Put), then its places
// under the caps. Unlike Admit it checks no cap and evicts nothing: the
// session was admitted already, and the replicas together hold no more
// sessions than the caps allowed. A session counts from now for idle
// (its cap deadline, refreshed by touches as after Admit), ordered by
// created among the oldest. A session without a record is not counted
// (one round trip). holder is the session's holder, counted as Admit
// counts it ("" counts none, like a session of an older gateway).
func (s *Store) Recount(ctx context.Context, id, holder string, scopes []string, idle time.Duration, created time.Time) error {
	end, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	if id == "" {
		return errNoID
	}
	if len(scopes) == 0 {
		return nil
	}
	args := make([]any, 0, 5+len(scopes))
	args = append(args, id, idleMillis(idle), s.prefix, created.UnixMilli(), holder)
	for _, sc := range scopes {
		args = append(args, sc)
	}
	return s.wrap(recountScript.Run(ctx, s.rdb, []string{s.keySession + id}, args...).Err(), "recount", id)
}

// recountScript: see Recount. The key layout is Admit's (see capHelpers).
//
// KEYS[1] the session's key. ARGV[1] id, ARGV[2] idle ms, ARGV[3] key
// prefix, ARGV[4] created (Unix ms), ARGV[5] holder, then the scope keys. Reply 1 if
// counted, 0 if the session has no record.
var recountScript = newScript(`redis.replicate_commands()` + luaHelpers + `
if redis.call('HEXISTS', KEYS[1], 'record') == 0 then return 0 end
local id, idle, prefix, created, own = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), ARGV[5]
if idle <= 0 then idle = 86400000 end
local now = nowms()
local sk = {}
for i = 6, #ARGV do
  local s = ARGV[i]
  local dl, c = fmt(now + idle), fmt(math.min(created, now))
  sk[#sk + 1] = s
  redis.call('ZADD', prefix .. 'cap:' .. s, dl, id)
  redis.call('ZADD', prefix .. 'capc:' .. s, 'NX', c, id)
  if own ~= '' then
    redis.call('ZADD', prefix .. 'caph:' .. s .. '\0' .. own, dl, id)
    redis.call('ZADD', prefix .. 'caphc:' .. s .. '\0' .. own, 'NX', c, id)
    if redis.call('HSET', prefix .. 'capw:' .. s, id, own) == 1 then redis.call('ZINCRBY', prefix .. 'capo:' .. s, 1, own) end
  end
end
redis.call('HSET', KEYS[1], 'caps', cjson.encode(sk))
return 1
`)
