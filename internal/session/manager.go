package session

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
)

// Policy says what a full cap does with one more session.
type Policy string

const (
	// Reject refuses the new session (HTTP 503 with Retry-After).
	Reject Policy = "reject"
	// EvictOldest ends the session created first within the cap's scope,
	// among the sessions of its largest holder (see Admission.Holder).
	EvictOldest Policy = "evict-oldest"
	// EvictIdlest ends the least recently active session within the scope,
	// preferring sessions with no request or stream open, among the
	// sessions of its largest holder.
	EvictIdlest Policy = "evict-idlest"
)

// Cap bounds the live sessions of one scope. Max zero means no cap.
type Cap struct {
	Max    int
	Policy Policy
}

// Scope names what a cap counts.
type Scope string

const (
	ScopeGlobal    Scope = "global"
	ScopeRoute     Scope = "route"
	ScopePrincipal Scope = "principal"
	ScopeTenant    Scope = "tenant"
	// ScopeAddress counts the sessions of anonymous clients by client
	// address.
	ScopeAddress Scope = "address"
)

// CapError reports a session refused because a cap is full.
type CapError struct {
	Scope Scope
	Key   string // the route, principal, tenant or address; empty for global
	Max   int
	// RetryAfter is a hint for the client: when the oldest idle session of
	// the scope would expire, bounded to [1s, 5m].
	RetryAfter time.Duration
}

func (e *CapError) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("session cap reached: %s limit of %d sessions", e.Scope, e.Max)
	}
	return fmt.Sprintf("session cap reached: %s %q limit of %d sessions", e.Scope, e.Key, e.Max)
}

// Admission describes a session asking to be created.
type Admission struct {
	// ID is the session's id, if the caller mints its own (signed ids);
	// if empty, Reserve mints one. An Admitter needs it before the
	// session exists: it is what the shared counts hold.
	ID        string
	Route     string
	RouteCap  Cap
	Principal string
	Tenant    string
	// Address is the client's address (host, no port). It is the holder
	// of an anonymous client's sessions and puts them under the
	// per-address cap.
	Address string
	// IdleTimeout is the session's idle timeout, for an Admitter; if
	// zero, the manager's default.
	IdleTimeout time.Duration
	// Adopt admits, outside every cap, a session another replica of a
	// cluster created and the cluster already counts: this process only
	// takes a copy of it.
	Adopt bool
	// Restored says how a session that existed before is being brought
	// back ("restart": from the store after a restart; "replica": from a
	// shared store, created by another replica); empty for a new session.
	// It is logged as session_restored, not session_created.
	Restored string
}

// Anonymous is the principal of clients that did not authenticate.
const Anonymous = core.Anonymous

// IsAnonymous reports whether principal stands for no authenticated
// caller.
func IsAnonymous(principal string) bool { return core.IsAnonymous(principal) }

// PrincipalKey is core.PrincipalKey: what a principal's sessions and
// limits are counted under.
func PrincipalKey(tenant, principal string) string { return core.PrincipalKey(tenant, principal) }

// Holder names who holds a session for fair eviction: its principal, or,
// for an anonymous client, its address. A full scope whose policy evicts
// takes its victim from the holder with the most sessions in the scope,
// counting the new session with its own holder (which wins a tie), so a
// client can push out only its own sessions unless others hold more.
func (a Admission) Holder() string {
	if !IsAnonymous(a.Principal) {
		return "principal:" + PrincipalKey(a.Tenant, a.Principal)
	}
	return "address:" + a.Address
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
	// DefaultTTL applies when Limits.TTL is zero. If zero, sessions have no
	// absolute lifetime beyond their idle timeout.
	DefaultTTL time.Duration
	// Global, PerPrincipal and PerTenant are the caps across routes. A zero
	// Max means no cap.
	Global, PerPrincipal, PerTenant Cap
	// PerAddress caps the sessions of anonymous clients per client
	// address (Admission.Address). A zero Max means no cap.
	PerAddress Cap
	// ReapInterval is how often expired sessions are looked for. If zero,
	// a tenth of the default idle timeout, at most 30s and at least 1s.
	ReapInterval time.Duration
	// TeardownTimeout bounds each session's Closer. If zero, 10s.
	TeardownTimeout time.Duration
	// TeardownWorkers bounds concurrent teardowns of expired and evicted
	// sessions. If zero, 16.
	TeardownWorkers int
}

const shardCount = 64

type shard struct {
	mu   sync.RWMutex
	byID map[string]*Session
}

// scope is one capped count with its members in creation order, and
// grouped by holder.
type scope struct {
	kind     Scope
	key      string
	cap      Cap
	count    int // members plus reservations
	head     *Session
	tail     *Session
	slot     int // index of this scope's links in Session.links
	reserved int
	holders  map[string]*holder
	// byCount indexes holders by their count, and top is the largest
	// count, so the largest holders are found without visiting all.
	byCount map[int]map[*holder]struct{}
	top     int
}

// holder is one holder's share of a scope, its members in creation order.
type holder struct {
	key        string
	count      int // members plus reservations
	head, tail *Session
}

// holderLocked returns sc's record of key, creating it.
func (sc *scope) holderLocked(key string) *holder {
	h := sc.holders[key]
	if h == nil {
		if sc.holders == nil {
			sc.holders = map[string]*holder{}
			sc.byCount = map[int]map[*holder]struct{}{}
		}
		h = &holder{key: key}
		sc.holders[key] = h
	}
	return h
}

// addLocked changes h's count by d (+1 or -1), keeping the index, and
// forgets h when it holds nothing.
func (sc *scope) addLocked(h *holder, d int) {
	if h.count > 0 {
		set := sc.byCount[h.count]
		delete(set, h)
		if len(set) == 0 {
			delete(sc.byCount, h.count)
		}
	}
	h.count += d
	if h.count <= 0 {
		delete(sc.holders, h.key)
	} else {
		set := sc.byCount[h.count]
		if set == nil {
			set = map[*holder]struct{}{}
			sc.byCount[h.count] = set
		}
		set[h] = struct{}{}
	}
	if h.count > sc.top {
		sc.top = h.count
	}
	for sc.top > 0 && len(sc.byCount[sc.top]) == 0 {
		sc.top--
	}
}

// Manager is the one owner of live sessions: ids, caps, expiry, teardown.
// It is safe for use by multiple goroutines.
//
// Admission (caps and eviction) is serialised by one mutex, so a cap is
// never exceeded, not even for an instant; lookups go to 64 sharded maps
// and never wait for admission. Activity is an atomic timestamp, so the
// request path takes no lock to record it.
type Manager struct {
	opts Options
	log  *slog.Logger
	seed maphash.Seed

	shards [shardCount]shard

	live atomic.Int64 // sessions in the shards; changed only under admit

	admit      sync.Mutex
	global     *scope
	routes     map[string]*scope
	principals map[string]*scope
	tenants    map[string]*scope
	addresses  map[string]*scope
	seq        uint64 // creation order of committed sessions
	closed     bool
	// admitter, when set (Provision), decides admission instead of the
	// scopes above.
	admitter Admitter
	// provisioned and admitted make Provision a one-time step taken
	// before the first admission.
	provisioned, admitted bool
	// bounds are the caps across routes and the default lifetimes, as of
	// the last SetBounds: stored only under admit, so an admission sees
	// one policy whole; loaded without a lock where no cap is decided.
	bounds atomic.Pointer[Bounds]

	teardowns chan teardownJob
	stop      chan struct{}
	wg        sync.WaitGroup
}

type teardownJob struct {
	s      *Session
	reason Reason
}

// NewManager starts a manager, its reaper and teardown workers; Close
// stops them.
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
	if opts.TeardownWorkers <= 0 {
		opts.TeardownWorkers = 16
	}
	m := &Manager{
		opts: opts, log: opts.Logger, seed: maphash.MakeSeed(),
		routes: map[string]*scope{}, principals: map[string]*scope{}, tenants: map[string]*scope{}, addresses: map[string]*scope{},
		teardowns: make(chan teardownJob, 1024),
		stop:      make(chan struct{}),
	}
	m.global = &scope{kind: ScopeGlobal, cap: opts.Global, slot: 0}
	m.bounds.Store(&Bounds{
		Global: opts.Global, PerPrincipal: opts.PerPrincipal, PerTenant: opts.PerTenant, PerAddress: opts.PerAddress,
		DefaultIdleTimeout: opts.DefaultIdleTimeout, DefaultTTL: opts.DefaultTTL,
	})
	for i := range m.shards {
		m.shards[i].byID = map[string]*Session{}
	}
	m.wg.Add(1 + opts.TeardownWorkers)
	go m.reap()
	for range opts.TeardownWorkers {
		go m.teardownWorker()
	}
	return m
}

func (m *Manager) shardOf(id string) *shard {
	return &m.shards[maphash.String(m.seed, id)%shardCount]
}

// Reservation holds a place under every cap for a session being created.
// Exactly one of Commit and Cancel must be called, on the same variable.
// The zero Reservation (from a failed Reserve) does nothing.
type Reservation struct {
	m       *Manager
	scopes  []*scope
	holders []*holder // the new session's holder in each of scopes
	done    bool
	// restored is Admission.Restored.
	restored string
	// id is the session's id when it was fixed at Reserve; shared is the
	// Admitter that holds its place, if one does.
	id     string
	shared Admitter
}

// ID is the id the session will have, if Reserve fixed it (it does when
// the admission named one or an Admitter decided); otherwise empty, and
// Commit mints one.
func (r *Reservation) ID() string { return r.id }

// Reserve admits a session under every cap that applies, evicting others
// where a cap's policy says so. The place is held until Commit or Cancel,
// so a creation that fails afterwards gives it back. A full cap with the
// reject policy returns a *CapError.
func (m *Manager) Reserve(ctx context.Context, a Admission) (Reservation, error) {
	if a.Adopt {
		return Reservation{m: m, id: a.ID, restored: a.Restored}, nil
	}
	m.admit.Lock()
	if m.closed {
		m.admit.Unlock()
		return Reservation{}, ErrClosed
	}
	m.admitted = true
	if adm := m.admitter; adm != nil {
		m.admit.Unlock()
		return m.reserveShared(ctx, a, adm)
	}
	scopes := m.scopesFor(a)
	owner := a.Holder()
	// Decide first, change nothing until every scope agrees: a scope that
	// rejects must not leave another scope's victim evicted.
	var victims []*Session
	for _, sc := range scopes {
		for sc.count-chosenIn(victims, sc)+1 > sc.cap.Max {
			v := m.victim(sc, owner, victims)
			if v == nil {
				err := m.capError(sc) // reads sc.head: only under m.admit
				m.admit.Unlock()
				return Reservation{}, err
			}
			victims = append(victims, v)
		}
	}
	for _, v := range victims {
		m.unlinkLocked(v)
		m.removeFromShard(v) // lookups answer 404 before the new session counts
	}
	var holders []*holder
	if len(scopes) > 0 {
		holders = make([]*holder, len(scopes))
	}
	for i, sc := range scopes {
		sc.count++
		sc.reserved++
		holders[i] = sc.holderLocked(owner)
		sc.addLocked(holders[i], 1)
	}
	m.admit.Unlock()
	for _, v := range victims {
		m.evict(ctx, v, "cap")
	}
	return Reservation{m: m, scopes: scopes, holders: holders, id: a.ID, restored: a.Restored}, nil
}

// evict runs the Evicted hooks of a session already detached by an
// admission (by: "cap" for this manager's caps, "cluster" for an
// Admitter's) and queues its teardown.
func (m *Manager) evict(ctx context.Context, v *Session, by string) {
	m.log.Info("session_evicted", "session", v.info.LogID(), "route", v.info.Route, "principal", v.info.Principal, "by", by)
	v.hooks.Lock() // after its Created hooks
	v.hooks.Unlock()
	for _, h := range m.opts.Hooks {
		if h.Evicted != nil {
			h.Evicted(v.info)
		}
	}
	m.enqueueTeardown(ctx, v, ReasonEvicted)
}

// scopesFor returns the capped scopes an admission counts in, creating
// their records. Uncapped scopes are not tracked at all, and with no cap
// configured nothing is allocated.
func (m *Manager) scopesFor(a Admission) []*scope {
	b := m.bounds.Load()
	perAddress := b.PerAddress.Max > 0 && IsAnonymous(a.Principal) && a.Address != ""
	if m.global.cap.Max <= 0 && a.RouteCap.Max <= 0 && b.PerPrincipal.Max <= 0 && b.PerTenant.Max <= 0 && !perAddress {
		return nil
	}
	out := make([]*scope, 0, 5)
	if m.global.cap.Max > 0 {
		out = append(out, m.global)
	}
	add := func(set map[string]*scope, kind Scope, key string, c Cap, slot int) {
		if c.Max <= 0 {
			return
		}
		sc := set[key]
		if sc == nil {
			sc = &scope{kind: kind, key: key, cap: c, slot: slot}
			set[key] = sc
		}
		sc.cap = c // a reload may have changed it
		out = append(out, sc)
	}
	add(m.routes, ScopeRoute, a.Route, a.RouteCap, 1)
	add(m.principals, ScopePrincipal, PrincipalKey(a.Tenant, a.Principal), b.PerPrincipal, 2)
	add(m.tenants, ScopeTenant, a.Tenant, b.PerTenant, 3)
	if perAddress {
		add(m.addresses, ScopeAddress, a.Address, b.PerAddress, 4)
	}
	return out
}

// victim picks the session a full scope gives up, or nil if its policy
// rejects or it has nothing to give. The victim comes from the holder with
// the most sessions in the scope (victims already chosen do not count;
// the new session counts with its own holder, owner, which wins a tie);
// the policy picks within that holder, and between tied holders.
func (m *Manager) victim(sc *scope, owner string, chosen []*Session) *Session {
	p := sc.cap.Policy
	if p != EvictOldest && p != EvictIdlest {
		return nil
	}
	if len(chosen) == 0 {
		if v := m.victimFast(sc, owner); v != nil {
			return v
		}
	}
	var best *Session
	bestN, bestOwn := 0, false
	for key, h := range sc.holders {
		n := h.count - chosenInHolder(chosen, sc, h)
		own := key == owner
		if own {
			n++
		}
		if best != nil && (n < bestN || n == bestN && bestOwn) {
			continue
		}
		c := pick(p, sc.slot, h, chosen)
		if c == nil {
			continue // only reservations, or only victims already chosen
		}
		if best == nil || n > bestN || own || before(p, c, best) {
			best, bestN, bestOwn = c, n, own
		}
	}
	return best
}

// victimFast is victim with no victim chosen yet, from the index: the
// own holder if it is among the largest counting the new session, else
// the largest holders, compared one by one when few, or found by walking
// the scope in creation order when many are tied (say, many holders of
// one session each). nil when the largest hold only reservations; victim
// then looks at every holder.
func (m *Manager) victimFast(sc *scope, owner string) *Session {
	p := sc.cap.Policy
	own := sc.holders[owner]
	if own != nil && own.count+1 >= sc.top {
		if v := pick(p, sc.slot, own, nil); v != nil {
			return v
		}
	}
	top := sc.byCount[sc.top]
	var best *Session
	if len(top) <= 16 {
		for h := range top {
			if h == own {
				continue
			}
			if c := pick(p, sc.slot, h, nil); c != nil && (best == nil || before(p, c, best)) {
				best = c
			}
		}
		return best
	}
	for s := sc.head; s != nil; s = s.links[sc.slot].next {
		if h := s.links[sc.slot].holder; h == own || h.count != sc.top {
			continue
		}
		if p == EvictOldest {
			return s
		}
		if best == nil || before(p, s, best) {
			best = s
		}
	}
	return best
}

// pick is the session of h that policy p gives up first, or nil.
func pick(p Policy, slot int, h *holder, chosen []*Session) *Session {
	var best *Session
	for s := h.head; s != nil; s = s.links[slot].hnext {
		if slices.Contains(chosen, s) {
			continue
		}
		if p == EvictOldest {
			return s // the list is in creation order
		}
		if best == nil || before(p, s, best) {
			best = s
		}
	}
	return best
}

// before reports whether policy p gives up a before b: evict-oldest the
// one created first; evict-idlest one with nothing open before a busy
// one, then the least recently active.
func before(p Policy, a, b *Session) bool {
	if p == EvictOldest {
		return a.seq < b.seq
	}
	ab, bb := a.busy.Load() > 0, b.busy.Load() > 0
	if ab != bb {
		return bb
	}
	return a.lastActive.Load() < b.lastActive.Load()
}

// chosenIn counts the victims already chosen that count in sc.
func chosenIn(victims []*Session, sc *scope) int {
	n := 0
	for _, v := range victims {
		if v.links[sc.slot].scope == sc {
			n++
		}
	}
	return n
}

// chosenInHolder counts the victims already chosen that count in sc
// under h.
func chosenInHolder(victims []*Session, sc *scope, h *holder) int {
	n := 0
	for _, v := range victims {
		if l := v.links[sc.slot]; l.scope == sc && l.holder == h {
			n++
		}
	}
	return n
}

func (m *Manager) capError(sc *scope) *CapError {
	retry := 5 * time.Minute
	if s := sc.head; s != nil {
		if idle := time.Until(time.Unix(0, s.lastActive.Load()).Add(time.Duration(s.idle.Load()))); idle < retry {
			retry = idle
		}
	}
	return &CapError{Scope: sc.kind, Key: sc.key, Max: sc.cap.Max, RetryAfter: max(retry, time.Second)}
}

// Cancel gives the reserved place back.
func (r *Reservation) Cancel() {
	if r == nil || r.m == nil || r.done {
		return
	}
	r.done = true
	if r.shared != nil {
		r.releaseShared()
		return
	}
	r.m.admit.Lock()
	for i, sc := range r.scopes {
		sc.count--
		sc.reserved--
		sc.addLocked(r.holders[i], -1)
		r.m.dropIfEmptyLocked(sc)
	}
	r.m.admit.Unlock()
}

// Commit turns the reservation into a live session. info.ID is minted when
// empty; info.Created is set when zero (a session restored after a restart
// keeps its original creation time, so its TTL continues). The manager keeps info, which the caller
// must not modify afterwards. The Created hooks run before it returns.
func (r *Reservation) Commit(info *core.SessionInfo, lim Limits, closer Closer, value any) (*Session, error) {
	if r.m == nil || r.done {
		return nil, errors.New("session: reservation already used")
	}
	m := r.m
	switch {
	case r.id != "" && info.ID == "":
		info.ID = r.id
	case r.id != "" && info.ID != r.id:
		r.Cancel()
		return nil, errors.New("session: id differs from the reserved one")
	case info.ID == "":
		info.ID = NewID()
	}
	if info.Created.IsZero() {
		info.Created = time.Now()
	}
	if b := m.bounds.Load(); lim.IdleTimeout <= 0 || lim.TTL <= 0 {
		if lim.IdleTimeout <= 0 {
			lim.IdleTimeout = b.DefaultIdleTimeout
		}
		if lim.TTL <= 0 {
			lim.TTL = b.DefaultTTL
		}
	}
	s := &Session{info: info, closer: closer, ended: make(chan struct{}), Value: value}
	s.idle.Store(int64(lim.IdleTimeout))
	s.ttl.Store(int64(lim.TTL))
	s.Touch()
	s.hooks.Lock() // held until the Created hooks have run
	defer s.hooks.Unlock()
	if b, ok := value.(Binder); ok {
		b.BindSession(s) // before anyone can look the session up
	}
	sh := m.shardOf(info.ID)
	m.admit.Lock()
	if m.closed {
		m.admit.Unlock()
		r.Cancel()
		return nil, ErrClosed
	}
	sh.mu.Lock()
	if _, dup := sh.byID[info.ID]; dup {
		sh.mu.Unlock()
		m.admit.Unlock()
		r.Cancel()
		return nil, errors.New("session: duplicate id")
	}
	sh.byID[info.ID] = s
	m.live.Add(1)
	sh.mu.Unlock()
	r.done = true
	m.seq++
	s.seq = m.seq
	for i, sc := range r.scopes {
		sc.reserved--
		m.linkLocked(sc, r.holders[i], s)
	}
	m.admit.Unlock()
	if r.restored != "" {
		m.log.Info("session_restored", "session", info.LogID(), "route", info.Route, "era", info.Era.String(), "how", r.restored,
			"principal", info.Principal, "remote_addr", info.RemoteAddr, "idle_timeout", lim.IdleTimeout, "ttl", lim.TTL)
	} else {
		m.log.Info("session_created", "session", info.LogID(), "route", info.Route, "era", info.Era.String(),
			"principal", info.Principal, "remote_addr", info.RemoteAddr, "idle_timeout", lim.IdleTimeout, "ttl", lim.TTL)
	}
	for _, h := range m.opts.Hooks {
		if h.Created != nil {
			h.Created(s.info)
		}
		if h.Admitted != nil {
			h.Admitted(s.info, r.restored)
		}
	}
	if r.restored != "" {
		m.resumedHooks(s, r.restored)
	}
	return s, nil
}

// Binder is implemented by session values that keep a pointer to their
// session: Commit hands it over before the session is published, so a
// concurrent lookup never finds the value without it.
type Binder interface {
	BindSession(s *Session)
}

// Create reserves and commits in one step, for sessions under no route,
// principal or tenant cap.
func (m *Manager) Create(info *core.SessionInfo, lim Limits, closer Closer, value any) (*Session, error) {
	r, err := m.Reserve(context.Background(), Admission{Route: info.Route, Principal: info.Principal, Tenant: info.Tenant})
	if err != nil {
		return nil, err
	}
	return r.Commit(info, lim, closer, value)
}

func (m *Manager) linkLocked(sc *scope, h *holder, s *Session) {
	l := &s.links[sc.slot]
	l.scope, l.holder = sc, h
	l.prev, l.next = sc.tail, nil
	if sc.tail != nil {
		sc.tail.links[sc.slot].next = s
	} else {
		sc.head = s
	}
	sc.tail = s
	l.hprev, l.hnext = h.tail, nil
	if h.tail != nil {
		h.tail.links[sc.slot].hnext = s
	} else {
		h.head = s
	}
	h.tail = s
}

// unlinkLocked removes s from every scope it counts in.
func (m *Manager) unlinkLocked(s *Session) {
	for i := range s.links {
		l := &s.links[i]
		sc, h := l.scope, l.holder
		if sc == nil {
			continue
		}
		if l.prev != nil {
			l.prev.links[i].next = l.next
		} else {
			sc.head = l.next
		}
		if l.next != nil {
			l.next.links[i].prev = l.prev
		} else {
			sc.tail = l.prev
		}
		if l.hprev != nil {
			l.hprev.links[i].hnext = l.hnext
		} else {
			h.head = l.hnext
		}
		if l.hnext != nil {
			l.hnext.links[i].hprev = l.hprev
		} else {
			h.tail = l.hprev
		}
		sc.count--
		sc.addLocked(h, -1)
		*l = link{}
		m.dropIfEmptyLocked(sc)
	}
}

// dropIfEmptyLocked forgets per-key scopes with nothing in them, so keys
// do not accumulate.
func (m *Manager) dropIfEmptyLocked(sc *scope) {
	if sc.count > 0 || sc == m.global {
		return
	}
	switch sc.kind {
	case ScopeRoute:
		delete(m.routes, sc.key)
	case ScopePrincipal:
		delete(m.principals, sc.key)
	case ScopeTenant:
		delete(m.tenants, sc.key)
	case ScopeAddress:
		delete(m.addresses, sc.key)
	}
}

func (m *Manager) removeFromShard(s *Session) bool {
	sh := m.shardOf(s.info.ID)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.byID[s.info.ID] != s {
		return false
	}
	delete(sh.byID, s.info.ID)
	m.live.Add(-1)
	return true
}

// Get returns the live session with id.
func (m *Manager) Get(id string) (*Session, error) {
	sh := m.shardOf(id)
	sh.mu.RLock()
	s, ok := sh.byID[id]
	sh.mu.RUnlock()
	if !ok {
		return nil, ErrNotFound
	}
	return s, nil
}

// Len is the number of live sessions. Every change to it happens under
// the admission lock, so it is exact at every instant (summing the shards
// would not be: a concurrent eviction and creation in shards visited in
// the wrong order would be counted twice).
func (m *Manager) Len() int { return int(m.live.Load()) }

// Count is the number of sessions (live plus reserved) counted in a
// capped scope; zero for an uncapped one. A principal's key is
// PrincipalKey's.
func (m *Manager) Count(kind Scope, key string) int {
	m.admit.Lock()
	defer m.admit.Unlock()
	var sc *scope
	switch kind {
	case ScopeGlobal:
		sc = m.global
	case ScopeRoute:
		sc = m.routes[key]
	case ScopePrincipal:
		sc = m.principals[key]
	case ScopeTenant:
		sc = m.tenants[key]
	case ScopeAddress:
		sc = m.addresses[key]
	}
	if sc == nil {
		return 0
	}
	return sc.count
}

// detach removes s from the registry and its scopes; false if it was
// already gone.
func (m *Manager) detach(s *Session) bool {
	m.admit.Lock()
	if !m.removeFromShard(s) {
		m.admit.Unlock()
		return false
	}
	m.unlinkLocked(s)
	m.admit.Unlock()
	return true
}

// End removes the session and tears it down before returning. Ending an
// unknown or already ended session returns ErrNotFound.
func (m *Manager) End(ctx context.Context, id string, reason Reason) error {
	s, err := m.Get(id)
	if err != nil || !m.detach(s) {
		return ErrNotFound
	}
	m.teardown(ctx, s, reason)
	return nil
}

func (m *Manager) enqueueTeardown(ctx context.Context, s *Session, reason Reason) {
	select {
	case m.teardowns <- teardownJob{s, reason}:
	case <-m.stop:
		m.teardown(ctx, s, reason)
	}
}

func (m *Manager) teardownWorker() {
	defer m.wg.Done()
	for {
		select {
		case j := <-m.teardowns:
			m.teardown(context.Background(), j.s, j.reason)
		case <-m.stop:
			// Drain what is queued, then stop.
			for {
				select {
				case j := <-m.teardowns:
					m.teardown(context.Background(), j.s, j.reason)
				default:
					return
				}
			}
		}
	}
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
		m.log.Info("session_ended", "session", s.info.LogID(), "principal", s.info.Principal, "route", s.info.Route, "reason", string(reason),
			"age", time.Since(s.info.Created).Round(time.Millisecond))
		s.hooks.Lock() // after its Created hooks
		s.hooks.Unlock()
		for _, h := range m.opts.Hooks {
			if h.Ended != nil {
				h.Ended(s.info, reason)
			}
		}
	})
}

// Resumed reports that a session continued after an interruption (a
// stream resumed with Last-Event-ID, an upstream session re-established).
func (m *Manager) Resumed(s *Session, how string) {
	m.log.Info("session_resumed", "session", s.info.LogID(), "principal", s.info.Principal, "route", s.info.Route, "how", how)
	m.resumedHooks(s, how)
}

func (m *Manager) resumedHooks(s *Session, how string) {
	for _, h := range m.opts.Hooks {
		if h.Resumed != nil {
			h.Resumed(s.info, how)
		}
	}
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

// reapOnce ends expired sessions. It holds one shard's read lock at a time
// while it looks, and hands the teardowns to the bounded worker pool, so
// expiring many sessions at once never stalls lookups or admissions.
func (m *Manager) reapOnce(now time.Time) {
	nowNano := now.UnixNano()
	var expired []teardownJob
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.RLock()
		for _, s := range sh.byID {
			switch {
			case s.ttl.Load() > 0 && now.Sub(s.info.Created) > time.Duration(s.ttl.Load()):
				expired = append(expired, teardownJob{s, ReasonTTL})
			case s.busy.Load() == 0 && nowNano-s.lastActive.Load() > s.idle.Load():
				expired = append(expired, teardownJob{s, ReasonIdle})
			}
		}
		sh.mu.RUnlock()
		for _, j := range expired {
			if m.detach(j.s) {
				m.enqueueTeardown(context.Background(), j.s, j.reason)
			}
		}
		expired = expired[:0]
	}
}

// Close ends every session (reason shutdown) and stops the reaper and the
// teardown workers.
func (m *Manager) Close(ctx context.Context) {
	m.admit.Lock()
	if m.closed {
		m.admit.Unlock()
		return
	}
	m.closed = true
	m.admit.Unlock()
	var wg sync.WaitGroup
	for _, s := range m.all() {
		if m.detach(s) {
			wg.Go(func() { m.teardown(ctx, s, ReasonShutdown) })
		}
	}
	wg.Wait()
	close(m.stop)
	m.wg.Wait()
}
