package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcpgate/mcpgate/internal/store"
)

// Losing the data. A Redis restarted without persistence (as in the README's
// own cluster example), or one flushed, comes back
// empty while the replicas still hold their sessions: without the records
// other replicas answer 404, without the owners nobody can forward, and
// without the cap counts new sessions are admitted beside the old ones.
//
// The store notices it by an epoch: <prefix>epoch is a random value
// written at the cluster's first start (SET NX) and remembered by every
// replica's store. Ping (every second, by the gateway's store monitor),
// Settle and Exists read it; a store that finds it missing or changed
// starts a recovery, once per process: it writes a new epoch (unless
// another replica already did, which it then adopts) carrying the time it
// was written, and runs the OnDataLoss functions, which write back what
// the replica holds (Put, Recount). While it recovers, the replica is a
// member of <prefix>recovering (a sorted set scored by a lease's expiry,
// renewed every second).
//
// For Options.RecoveryWindow after a new epoch, and while any replica is a member
// of <prefix>recovering, the store's contents are not to be trusted:
// Settle waits (admissions under shared caps, look-ups that found
// nothing), and Exists reports true. The window covers the time the other
// replicas need to notice (their next Ping, a second apart).
const (
	// RecoveryWindow is the default of Options.RecoveryWindow: how long
	// after a loss Settle waits for every replica to notice it and write
	// its sessions back.
	RecoveryWindow = 3 * time.Second
	// recoverLease is how long a recovering replica's membership lasts
	// unless renewed (every recoverRenew), so that a replica that died
	// while recovering holds nobody up for long.
	recoverLease = 3 * time.Second
	recoverRenew = time.Second
	// recoverTimeout bounds one recovery's write-back.
	recoverTimeout = 2 * time.Minute
	// settlePoll is how often Settle looks again while the store settles.
	settlePoll = 50 * time.Millisecond
)

var _ store.Recovering = (*Store)(nil)

// epochState is a store's view of the epoch. mu guards it.
type epochState struct {
	mu sync.Mutex
	// known is the epoch this store last saw; instance names this store
	// in <prefix>recovering.
	known    string
	instance string
	fns      []func(context.Context)
	// running is closed when the recovery under way ends; nil when none.
	running chan struct{}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// initEpoch reads the epoch at Open, writing one if the store has none: a
// first start has nothing to recover, so its epoch carries no time.
func (s *Store) initEpoch(ctx context.Context) error {
	v, err := epochInitScript.Run(ctx, s.rdb, []string{s.prefix + "epoch"}, randomHex(16)+".0").Text()
	if err != nil {
		return err
	}
	s.ep.known, s.ep.instance = v, randomHex(8)
	return nil
}

// OnDataLoss registers fn to run when this store notices that Redis lost
// its data (see the package's "Losing the data"). fn must not call Settle:
// Settle waits for it.
func (s *Store) OnDataLoss(fn func(ctx context.Context)) {
	s.ep.mu.Lock()
	s.ep.fns = append(s.ep.fns, fn)
	s.ep.mu.Unlock()
}

// epochReading is what one epoch check saw.
type epochReading struct {
	epoch  string
	now    int64 // Redis's clock, Unix ms
	active int64 // replicas recovering now
	exists bool  // the session asked about has a record
}

// settling reports whether the store's contents are not to be trusted
// yet: within window (ms) of a new epoch, or while a replica recovers.
func (r epochReading) settling(window int64) bool {
	if r.active > 0 {
		return true
	}
	_, at, _ := strings.Cut(r.epoch, ".")
	ms, err := strconv.ParseInt(at, 10, 64)
	return err == nil && ms > 0 && r.now < ms+window
}

// readEpoch runs the epoch check (one round trip), also asking whether
// session id has a record when id is not empty.
func (s *Store) readEpoch(ctx context.Context, id string) (epochReading, error) {
	keys := []string{s.prefix + "epoch", s.prefix + "recovering"}
	if id != "" {
		keys = append(keys, s.keySession+id)
	}
	res, err := epochCheckScript.Run(ctx, s.rdb, keys).Slice()
	if err != nil {
		return epochReading{}, err
	}
	if len(res) != 4 {
		return epochReading{}, fmt.Errorf("store/redis: epoch check: malformed reply")
	}
	var r epochReading
	r.epoch, _ = res[0].(string)
	now, _ := res[1].(string)
	r.now, _ = strconv.ParseInt(now, 10, 64)
	r.active, _ = res[2].(int64)
	ex, _ := res[3].(int64)
	r.exists = ex == 1
	return r, nil
}

// observe compares an epoch read from Redis with the one this store
// knows and starts a recovery if they differ. It returns the channel of
// the recovery under way, nil if none.
func (s *Store) observe(epoch string) chan struct{} {
	s.ep.mu.Lock()
	defer s.ep.mu.Unlock()
	if epoch != s.ep.known && s.ep.running == nil && !s.closed.Load() {
		s.ep.running = make(chan struct{})
		go s.recover(s.ep.running)
	}
	return s.ep.running
}

// recover writes a new epoch (or adopts the one another replica wrote),
// and runs the OnDataLoss functions while this store is a member of
// <prefix>recovering. On failure the known epoch is left as it was, so
// the next check tries again.
func (s *Store) recover(done chan struct{}) {
	start := time.Now()
	defer func() {
		s.ep.mu.Lock()
		s.ep.running = nil
		s.ep.mu.Unlock()
		close(done)
	}()
	// No begin: the write-back's own calls take it. Close cuts the
	// recovery short instead of waiting for it.
	ctx, cancel := context.WithTimeout(context.Background(), recoverTimeout)
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	s.ep.mu.Lock()
	old, inst, fns := s.ep.known, s.ep.instance, slices.Clone(s.ep.fns)
	s.ep.mu.Unlock()
	keys := []string{s.prefix + "epoch", s.prefix + "recovering"}
	lease := recoverLease.Milliseconds()
	cur, err := epochResetScript.Run(ctx, s.rdb, keys, old, randomHex(16), inst, lease).Text()
	if err != nil {
		s.log.Error("store_recovery_failed", "addr", s.addr, "error", err)
		return
	}
	s.log.Warn("store_data_lost", "addr", s.addr)
	renewed := make(chan struct{})
	stop := make(chan struct{})
	go func() {
		defer close(renewed)
		t := time.NewTicker(recoverRenew)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				_ = epochLeaseScript.Run(ctx, s.rdb, keys[1:], inst, lease).Err()
			}
		}
	}()
	for _, fn := range fns {
		fn(ctx)
	}
	close(stop)
	<-renewed
	if err := s.rdb.ZRem(ctx, keys[1], inst).Err(); err != nil {
		s.log.Warn("store_recovery_unlisted", "addr", s.addr, "error", err)
	}
	s.ep.mu.Lock()
	s.ep.known = cur
	s.ep.mu.Unlock()
	s.log.Info("store_data_recovered", "addr", s.addr, "took", time.Since(start).Round(time.Millisecond))
}

// Settle returns nil once the store's contents can be trusted (see
// store.Recovering): one round trip normally; after a loss, when this
// store's recovery has ended, RecoveryWindow has passed since the new
// epoch, and no replica is still recovering.
func (s *Store) Settle(ctx context.Context) error {
	end, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	for {
		r, err := s.readEpoch(ctx, "")
		if err != nil {
			return s.wrap(err, "settle", "")
		}
		running := s.observe(r.epoch)
		if running == nil && !r.settling(s.window) {
			return nil
		}
		wait := time.NewTimer(settlePoll)
		select {
		case <-running: // nil: never ready; the timer decides
		case <-wait.C:
		case <-ctx.Done():
			wait.Stop()
			return ctx.Err()
		}
		wait.Stop()
	}
}

// Exists reports whether session id has a record: one round trip (a
// script that also reads the epoch). While the store recovers from a
// loss it reports true.
func (s *Store) Exists(ctx context.Context, id string) (bool, error) {
	end, err := s.begin(ctx)
	if err != nil {
		return false, err
	}
	defer end()
	if id == "" {
		return false, nil
	}
	r, err := s.readEpoch(ctx, id)
	if err != nil {
		return false, s.wrap(err, "exists", id)
	}
	if r.exists {
		return true, nil
	}
	if s.observe(r.epoch) != nil || r.settling(s.window) {
		return true, nil
	}
	return false, nil
}

// pingEpoch is the epoch part of Ping: the reply of a GET pipelined with
// the PING.
func (s *Store) pingEpoch(cmd *redis.StringCmd) {
	v, err := cmd.Result()
	if errors.Is(err, redis.Nil) {
		v, err = "", nil
	}
	if err == nil {
		s.observe(v)
	}
}

// epochInitScript: KEYS[1] epoch; ARGV[1] the value to write if none.
// Reply: the epoch.
var epochInitScript = newScript(`
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
`)

// epochCheckScript: KEYS[1] epoch, KEYS[2] recovering, KEYS[3] (optional)
// a session key. Reply: {epoch or ”, Redis now ms, replicas recovering,
// 1 if the session has a record}.
var epochCheckScript = newScript(`redis.replicate_commands()` + luaHelpers + `
local now = nowms()
local e = redis.call('GET', KEYS[1]) or ''
local active = redis.call('ZCOUNT', KEYS[2], '(' .. fmt(now), '+inf')
local ex = 0
if #KEYS >= 3 then ex = redis.call('HEXISTS', KEYS[3], 'record') end
return {e, fmt(now), active, ex}
`)

// epochResetScript: KEYS[1] epoch, KEYS[2] recovering; ARGV[1] the epoch
// the caller knew, ARGV[2] a random value, ARGV[3] the caller's instance,
// ARGV[4] lease ms. A missing epoch is replaced by ARGV[2] stamped with
// now, and so is an unstamped one (a replica that started on the emptied
// Redis wrote it, knowing of no loss): the window must run. A stamped one
// another replica wrote is kept. The caller joins the recovering set.
// Reply: the epoch now.
var epochResetScript = newScript(`redis.replicate_commands()` + luaHelpers + `
local now = nowms()
local e = redis.call('GET', KEYS[1])
if not e or string.sub(e, -2) == '.0' then
  e = ARGV[2] .. '.' .. fmt(now)
  redis.call('SET', KEYS[1], e)
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', fmt(now))
redis.call('ZADD', KEYS[2], fmt(now + tonumber(ARGV[4])), ARGV[3])
return e
`)

// epochLeaseScript renews a recovering replica's membership.
// KEYS[1] recovering; ARGV[1] instance, ARGV[2] lease ms.
var epochLeaseScript = newScript(`redis.replicate_commands()` + luaHelpers + `
redis.call('ZADD', KEYS[1], 'XX', fmt(nowms() + tonumber(ARGV[2])), ARGV[1])
return 1
`)
