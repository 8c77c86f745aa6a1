package session

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
)

// ErrNotFound is returned for an unknown or ended session id.
var ErrNotFound = errors.New("session not found")

// ErrClosed is returned when creating a session on a closed manager.
var ErrClosed = errors.New("session manager closed")

// Reason says why a session ended.
type Reason string

const (
	ReasonDeleted        Reason = "deleted"         // the client sent DELETE
	ReasonIdle           Reason = "idle_timeout"    // no activity for IdleTimeout
	ReasonUpstreamGone   Reason = "upstream_gone"   // the upstream process or session ended
	ReasonInitFailed     Reason = "init_failed"     // initialize did not succeed
	ReasonShutdown       Reason = "shutdown"        // the gateway is stopping
	ReasonTTL            Reason = "ttl"             // the session reached its absolute lifetime
	ReasonEvicted        Reason = "evicted"         // a full cap made room for a newer session
	ReasonEndedElsewhere Reason = "ended_elsewhere" // another replica ended it
	ReasonRouteRemoved   Reason = "route_removed"   // a reload removed the session's route
	ReasonRouteChanged   Reason = "route_changed"   // a reload gave the session's route another upstream
	ReasonAdmin          Reason = "admin"           // an operator ended it through the control plane
	ReasonQuota          Reason = "quota"           // a quota ended it (session_time)
	ReasonSessionTool    Reason = "session_end"     // the session ended itself (mcpgate_session_end)
	ReasonResourceLimit  Reason = "resource_limit"  // a cap killed the upstream process (sandbox.memory, sandbox.cpu)
)

// Hooks are called on lifecycle events. Each may be nil. They run
// synchronously on the goroutine causing the event, so they must be quick,
// and must not end their own session synchronously. For one session,
// Created always runs before Evicted and Ended.
type Hooks struct {
	Created func(info *core.SessionInfo)
	// Admitted runs where Created does, and says how a session that
	// existed before came back ("" for a new session; else as Resumed's
	// how: "restart", "replica", ...), for counters that must not count a
	// restored session as a new one.
	Admitted func(info *core.SessionInfo, restored string)
	// Resumed: the session continued after an interruption; how says which
	// ("stream" for Last-Event-ID, "upstream" for a re-established
	// upstream session).
	Resumed func(info *core.SessionInfo, how string)
	// Evicted: a full cap ended the session; Ended follows with
	// ReasonEvicted once it is torn down.
	Evicted func(info *core.SessionInfo)
	Ended   func(info *core.SessionInfo, reason Reason)
}

// Limits bound one session.
type Limits struct {
	// IdleTimeout ends the session after this long with no request and no
	// open stream. Zero means the manager's default.
	IdleTimeout time.Duration
	// TTL ends the session this long after creation whatever its activity.
	// Zero means the manager's default (none when that is zero too).
	TTL time.Duration
}

// Closer tears down what a session holds (its upstream connection, client
// streams). It is called exactly once, outside the manager's lock.
type Closer func(ctx context.Context, reason Reason)

// Session is one live gateway session.
type Session struct {
	info *core.SessionInfo
	// idle and ttl are the session's limits (time.Duration), which only
	// Shorten changes, lower.
	idle       atomic.Int64
	ttl        atomic.Int64
	lastActive atomic.Int64 // unix nanos
	busy       atomic.Int32 // open streams and in-flight requests
	closer     Closer
	ended      chan struct{}
	endOnce    sync.Once
	reason     Reason
	// links place the session in its capped scopes (global, route,
	// principal, tenant, address), in creation order, in the scope and
	// within its holder.
	// Guarded by Manager.admit, as is seq, its place in creation order.
	links [5]link
	seq   uint64
	// hooks is held while the Created hooks run, so Evicted and Ended
	// hooks never run before them.
	hooks sync.Mutex

	// Value is free for the owner of the session (the transport keeps its
	// per-session state here). Set before the session is published.
	Value any
}

type link struct {
	scope        *scope
	holder       *holder
	prev, next   *Session // in the scope
	hprev, hnext *Session // in the holder
}

// ID returns the session id.
func (s *Session) ID() string { return s.info.ID }

// Info returns the session's fixed identity; callers must not modify it.
func (s *Session) Info() *core.SessionInfo { return s.info }

// Limits are the session's idle timeout and TTL in force (TTL 0: none).
func (s *Session) Limits() Limits {
	return Limits{IdleTimeout: time.Duration(s.idle.Load()), TTL: time.Duration(s.ttl.Load())}
}

// Shorten lowers the session's idle timeout and TTL to l's, where they
// are set (positive) and lower than the ones in force; it never raises
// either. The reaper applies them on its next pass.
func (s *Session) Shorten(l Limits) {
	lower := func(v *atomic.Int64, d time.Duration) {
		for d > 0 {
			cur := v.Load()
			if cur > 0 && cur <= int64(d) { // 0: none (a TTL), any is lower
				return
			}
			if v.CompareAndSwap(cur, int64(d)) {
				return
			}
		}
	}
	lower(&s.idle, l.IdleTimeout)
	lower(&s.ttl, l.TTL)
}

// LastActive is when the session last saw activity.
func (s *Session) LastActive() time.Time { return time.Unix(0, s.lastActive.Load()) }

// Busy reports whether a request or stream of the session is open.
func (s *Session) Busy() bool { return s.busy.Load() > 0 }

// Touch records activity.
func (s *Session) Touch() { s.lastActive.Store(time.Now().UnixNano()) }

// Acquire marks the start of a stream or request that keeps the session
// alive; pass the result to Release when it ends.
func (s *Session) Acquire() struct{} { s.busy.Add(1); s.Touch(); return struct{}{} }

// Release undoes Acquire.
func (s *Session) Release(struct{}) { s.busy.Add(-1); s.Touch() }

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.ended }

// Reason says why the session ended; empty while it is live.
func (s *Session) Reason() Reason {
	select {
	case <-s.ended:
		return s.reason
	default:
		return ""
	}
}

// NewID mints a session id: 192 random bits, base64url (visible ASCII).
func NewID() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ValidID reports whether id could be one mcpgate minted: visible ASCII
// only (0x21–0x7E) and of bounded length. Checked before any lookup.
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}
