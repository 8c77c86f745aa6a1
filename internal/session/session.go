package session

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
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
	ReasonDeleted      Reason = "deleted"       // the client sent DELETE
	ReasonIdle         Reason = "idle_timeout"  // no activity for IdleTimeout
	ReasonUpstreamGone Reason = "upstream_gone" // the upstream process or session ended
	ReasonInitFailed   Reason = "init_failed"   // initialize did not succeed
	ReasonShutdown     Reason = "shutdown"      // the gateway is stopping
)

// Hooks are called on lifecycle events. Each may be nil. They run
// synchronously on the goroutine causing the event, so they must be quick.
type Hooks struct {
	Created func(info *core.SessionInfo)
	Ended   func(info *core.SessionInfo, reason Reason)
}

// Limits bound one session.
type Limits struct {
	// IdleTimeout ends the session after this long with no request and no
	// open stream. Zero means the manager's default.
	IdleTimeout time.Duration
}

// Closer tears down what a session holds (its upstream connection, client
// streams). It is called exactly once, outside the manager's lock.
type Closer func(ctx context.Context, reason Reason)

// Session is one live gateway session.
type Session struct {
	info       *core.SessionInfo
	idle       time.Duration
	lastActive atomic.Int64 // unix nanos
	busy       atomic.Int32 // open streams and in-flight requests
	closer     Closer
	ended      chan struct{}
	endOnce    sync.Once
	reason     Reason

	// Value is free for the owner of the session (the transport keeps its
	// per-session state here). Set before the session is published.
	Value any
}

// ID returns the session id.
func (s *Session) ID() string { return s.info.ID }

// Info returns the session's fixed identity; callers must not modify it.
func (s *Session) Info() *core.SessionInfo { return s.info }

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

// Options configure a Manager.
type Options struct {
	// Logger receives lifecycle logs. If nil, a discard logger is used.
	Logger *slog.Logger
	// Hooks are lifecycle callbacks for subscribers.
	Hooks []Hooks
	// DefaultIdleTimeout applies when Limits.IdleTimeout is zero.
	// If zero, 30 minutes.
	DefaultIdleTimeout time.Duration
	// ReapInterval is how often idle sessions are looked for. If zero,
	// a tenth of the default idle timeout, at most 30s and at least 1s.
	ReapInterval time.Duration
	// TeardownTimeout bounds each session's Closer. If zero, 10s.
	TeardownTimeout time.Duration
}

// Manager is the registry of live sessions. It is safe for use by
// multiple goroutines.
type Manager struct {
	opts   Options
	log    *slog.Logger
	mu     sync.RWMutex
	byID   map[string]*Session
	closed bool
	stop   chan struct{}
	wg     sync.WaitGroup
}

// NewManager starts a manager and its reaper; Close stops both.
func NewManager(opts Options) *Manager {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.DefaultIdleTimeout == 0 {
		opts.DefaultIdleTimeout = 30 * time.Minute
	}
	if opts.ReapInterval == 0 {
		opts.ReapInterval = min(max(opts.DefaultIdleTimeout/10, time.Second), 30*time.Second)
	}
	if opts.TeardownTimeout == 0 {
		opts.TeardownTimeout = 10 * time.Second
	}
	m := &Manager{opts: opts, log: opts.Logger, byID: map[string]*Session{}, stop: make(chan struct{})}
	m.wg.Add(1)
	go m.reap()
	return m
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

// Create admits a session. info.ID is minted when empty; info.Created is
// set. The manager keeps info, which the caller must not modify afterwards.
// The session is published, and the Created hooks run, before it returns.
func (m *Manager) Create(info *core.SessionInfo, lim Limits, closer Closer, value any) (*Session, error) {
	if info.ID == "" {
		info.ID = NewID()
	}
	info.Created = time.Now()
	if lim.IdleTimeout <= 0 {
		lim.IdleTimeout = m.opts.DefaultIdleTimeout
	}
	s := &Session{info: info, idle: lim.IdleTimeout, closer: closer, ended: make(chan struct{}), Value: value}
	s.Touch()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrClosed
	}
	if _, dup := m.byID[info.ID]; dup {
		m.mu.Unlock()
		return nil, errors.New("session: duplicate id")
	}
	m.byID[info.ID] = s
	m.mu.Unlock()
	m.log.Info("session_created", "session_id", info.ID, "route", info.Route, "era", info.Era.String(),
		"principal", info.Principal, "remote_addr", info.RemoteAddr, "idle_timeout", lim.IdleTimeout)
	for _, h := range m.opts.Hooks {
		if h.Created != nil {
			h.Created(s.info)
		}
	}
	return s, nil
}

// Get returns the live session with id.
func (m *Manager) Get(id string) (*Session, error) {
	m.mu.RLock()
	s, ok := m.byID[id]
	m.mu.RUnlock()
	if !ok {
		return nil, ErrNotFound
	}
	return s, nil
}

// Len is the number of live sessions.
func (m *Manager) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.byID)
}

// End removes the session and tears it down. Ending an unknown or already
// ended session returns ErrNotFound.
func (m *Manager) End(ctx context.Context, id string, reason Reason) error {
	m.mu.Lock()
	s, ok := m.byID[id]
	if ok {
		delete(m.byID, id)
	}
	m.mu.Unlock()
	if !ok {
		return ErrNotFound
	}
	m.teardown(ctx, s, reason)
	return nil
}

func (m *Manager) teardown(ctx context.Context, s *Session, reason Reason) {
	s.endOnce.Do(func() {
		s.reason = reason
		close(s.ended)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.opts.TeardownTimeout)
		defer cancel()
		if s.closer != nil {
			s.closer(ctx, reason)
		}
		m.log.Info("session_ended", "session_id", s.info.ID, "route", s.info.Route, "reason", string(reason),
			"age", time.Since(s.info.Created).Round(time.Millisecond))
		for _, h := range m.opts.Hooks {
			if h.Ended != nil {
				h.Ended(s.info, reason)
			}
		}
	})
}

func (m *Manager) reap() {
	defer m.wg.Done()
	t := time.NewTicker(m.opts.ReapInterval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case now := <-t.C:
			m.reapOnce(now)
		}
	}
}

func (m *Manager) reapOnce(now time.Time) {
	var expired []*Session
	m.mu.Lock()
	for id, s := range m.byID {
		if s.busy.Load() > 0 {
			continue
		}
		if now.UnixNano()-s.lastActive.Load() > int64(s.idle) {
			delete(m.byID, id)
			expired = append(expired, s)
		}
	}
	m.mu.Unlock()
	for _, s := range expired {
		m.teardown(context.Background(), s, ReasonIdle)
	}
}

// Close ends every session (reason shutdown) and stops the reaper.
func (m *Manager) Close(ctx context.Context) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	all := make([]*Session, 0, len(m.byID))
	for id, s := range m.byID {
		all = append(all, s)
		delete(m.byID, id)
	}
	m.mu.Unlock()
	close(m.stop)
	var wg sync.WaitGroup
	for _, s := range all {
		wg.Go(func() { m.teardown(ctx, s, ReasonShutdown) })
	}
	wg.Wait()
	m.wg.Wait()
}
