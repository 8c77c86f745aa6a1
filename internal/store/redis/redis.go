package redisstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/mcpgate/mcpgate/internal/core"
	"hash/maphash"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcpgate/mcpgate/internal/store"
)

// Options configure Open. The zero value connects to 127.0.0.1:6379,
// database 0, without authentication or TLS.
type Options struct {
	// Addr is the server's host:port. If empty, "127.0.0.1:6379".
	Addr string
	// Username selects an ACL user; if empty, the default user.
	Username string
	// Password authenticates; if empty, no AUTH is sent. It is a secret:
	// it appears in no log, error, or formatted Options (see LogValue and
	// Format).
	Password string
	// DB is the database to SELECT. If zero, 0.
	DB int
	// Prefix starts every key and the channel name, so that unrelated
	// data, or several mcpgate deployments, can share a server. If empty,
	// "mcpgate:".
	Prefix string
	// TLS, if not nil, is used to connect over TLS.
	TLS *tls.Config
	// DialTimeout bounds opening a connection. If zero, 2s.
	DialTimeout time.Duration
	// ReadTimeout and WriteTimeout bound each reply and each request on
	// the wire, so that a server that stops answering fails calls instead
	// of hanging them. If zero, 1s each.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// FlushInterval is how long a Touch may stay in memory before it is
	// written to Redis, all pending touches in one round trip. It bounds
	// the activity time a gateway crash can lose. If zero, 1s.
	FlushInterval time.Duration
	// ExpiryMargin is how long Redis keeps a session's key beyond the
	// point where the session may have expired (see the package doc,
	// "Expiry"). If zero, 1h.
	ExpiryMargin time.Duration
	// RecoveryWindow is how long, after Redis lost its data, Settle waits
	// for every replica to notice and write back what it holds (see
	// "Losing the data" in epoch.go). Replicas notice at their next Ping,
	// which the gateway sends every second. If zero, 3s.
	RecoveryWindow time.Duration
	// Logger receives failed background flushes, subscription errors and
	// undecodable data. If nil, nothing is logged.
	Logger *slog.Logger
}

const (
	defaultAddr          = "127.0.0.1:6379"
	defaultPrefix        = "mcpgate:"
	defaultDialTimeout   = 2 * time.Second
	defaultReadTimeout   = time.Second
	defaultWriteTimeout  = time.Second
	defaultFlushInterval = time.Second
	defaultExpiryMargin  = time.Hour
	// stripes is how many locks order Put and Delete against reads of the
	// same id; see Store.locks.
	stripes = 64
	// flushChunk is how many touches one script call applies; a flush
	// pipelines all its chunks in one round trip. A script holds Redis
	// while it runs, about 5µs per touch: 100 keep each call near half a
	// millisecond.
	flushChunk = 100
	// listChunk is how many records one List round trip fetches.
	listChunk = 1000
)

// LogValue implements slog.LogValuer, hiding the password.
func (o Options) LogValue() slog.Value {
	pw := ""
	if o.Password != "" {
		pw = "REDACTED"
	}
	return slog.GroupValue(
		slog.String("addr", o.Addr), slog.String("username", o.Username), slog.String("password", pw),
		slog.Int("db", o.DB), slog.String("prefix", o.Prefix), slog.Bool("tls", o.TLS != nil),
	)
}

// Format prints the connection settings and hides the password, whatever
// the verb, so Options in a %v, %+v or %#v never leak it.
func (o Options) Format(f fmt.State, _ rune) {
	pw := ""
	if o.Password != "" {
		pw = "REDACTED"
	}
	fmt.Fprintf(f, "redisstore.Options{Addr:%q, Username:%q, Password:%s, DB:%d, Prefix:%q, TLS:%t}",
		o.Addr, o.Username, pw, o.DB, o.Prefix, o.TLS != nil)
}

// quietClient silences go-redis's logger, which is process-wide and
// writes to stderr: every failure it would print reaches the store's
// caller as an error, or Options.Logger (flushes, subscriptions).
var quietClient sync.Once

type discardLog struct{}

func (discardLog) Printf(context.Context, string, ...any) {}

// errNoID is returned for a record or counter without a name.
var errNoID = errors.New("store/redis: empty id")

// Store is a store.Store and store.Broadcaster on a Redis server, for
// gateway replicas that share sessions. It is safe for use by multiple
// goroutines. See the package doc for what each method costs in round
// trips and what survives what.
type Store struct {
	rdb      *redis.Client
	addr     string
	interval time.Duration
	margin   int64 // ExpiryMargin in ms
	window   int64 // RecoveryWindow in ms
	timeout  time.Duration
	log      *slog.Logger

	prefix     string // Options.Prefix
	keySession string // + id: a session's hash
	keyCounter string // + name: a counter
	keyIndex   string // sorted set of session ids, scored by key expiry
	channel    string // pub/sub channel of store.Event

	// locks, chosen by a hash of the id, make a Put or Delete atomic with
	// respect to a Get or List of the same id in this process: the writer
	// drops pending touches and writes under the write lock, and a reader
	// takes the pending touch and reads Redis under the read lock, so it
	// never pairs a new record with a touch the Put superseded. List takes
	// every read lock.
	seed  maphash.Seed
	locks [stripes]sync.RWMutex

	// mu guards the touch buffers and closing. pending collects Touch
	// calls; flushing is what a flush is writing (still merged into reads
	// until written), and flushDone is closed when that flush ends; spare
	// is an emptied map kept for reuse.
	mu        sync.Mutex
	pending   map[string]time.Time
	flushing  map[string]time.Time
	flushDone chan struct{}
	spare     map[string]time.Time
	closing   bool

	// flushMu serializes flushes (the loop's and Close's); flushFailures
	// counts consecutive failed flushes, so that an outage is logged once.
	flushMu       sync.Mutex
	flushFailures int
	// reportErr, if set, is told of every failed background flush (see
	// ReportErrors); only the first of a run is logged.
	reportErr atomic.Pointer[func(op string)]

	// ep follows the epoch, to notice a Redis that lost its data (see
	// epoch.go).
	ep epochState

	// life is held shared by each call in flight (see begin) and
	// exclusively by Close while it closes the connections.
	life      sync.RWMutex
	closed    atomic.Bool
	stop      chan struct{}
	done      chan struct{}
	subs      sync.WaitGroup
	closeOnce sync.Once
}

var (
	_ store.Store       = (*Store)(nil)
	_ store.Broadcaster = (*Store)(nil)
)

// Open connects to Redis, checks that it answers (one round trip: PING
// and loading the scripts, pipelined) and starts the background flusher.
// If Redis cannot be reached within the timeouts (and ctx), Open fails
// with an error naming the address.
func Open(ctx context.Context, opts Options) (*Store, error) {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"DialTimeout", opts.DialTimeout}, {"ReadTimeout", opts.ReadTimeout}, {"WriteTimeout", opts.WriteTimeout},
		{"FlushInterval", opts.FlushInterval}, {"ExpiryMargin", opts.ExpiryMargin}, {"RecoveryWindow", opts.RecoveryWindow},
	} {
		if d.v < 0 {
			return nil, fmt.Errorf("store/redis: negative %s %v", d.name, d.v)
		}
	}
	if opts.DB < 0 {
		return nil, fmt.Errorf("store/redis: negative DB %d", opts.DB)
	}
	def := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	def(&opts.DialTimeout, defaultDialTimeout)
	def(&opts.ReadTimeout, defaultReadTimeout)
	def(&opts.WriteTimeout, defaultWriteTimeout)
	def(&opts.FlushInterval, defaultFlushInterval)
	def(&opts.ExpiryMargin, defaultExpiryMargin)
	def(&opts.RecoveryWindow, RecoveryWindow)
	if opts.Addr == "" {
		opts.Addr = defaultAddr
	}
	if opts.Prefix == "" {
		opts.Prefix = defaultPrefix
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	quietClient.Do(func() { redis.SetLogger(discardLog{}) })
	rdb := redis.NewClient(&redis.Options{
		Addr:      opts.Addr,
		Username:  opts.Username,
		Password:  opts.Password,
		DB:        opts.DB,
		TLSConfig: opts.TLS,
		// RESP2: no HELLO on connect, no push-notification machinery.
		Protocol:     2,
		DialTimeout:  opts.DialTimeout,
		ReadTimeout:  opts.ReadTimeout,
		WriteTimeout: opts.WriteTimeout,
		// A caller's deadline shortens the socket deadlines too.
		ContextTimeoutEnabled: true,
		// One dial attempt per connection: a dead server must fail calls
		// within DialTimeout, not five times that.
		DialerRetries: 1,
		// No automatic retries: a retried INCRBY whose reply was lost
		// would count twice. A failed call returns its error; the next
		// one gets a fresh connection.
		MaxRetries:      -1,
		DisableIdentity: true,
	})
	s := &Store{
		rdb:        rdb,
		addr:       opts.Addr,
		interval:   opts.FlushInterval,
		margin:     opts.ExpiryMargin.Milliseconds(),
		window:     opts.RecoveryWindow.Milliseconds(),
		timeout:    opts.DialTimeout + opts.WriteTimeout + opts.ReadTimeout,
		log:        opts.Logger,
		prefix:     opts.Prefix,
		keySession: opts.Prefix + "session:",
		keyCounter: opts.Prefix + "counter:",
		keyIndex:   opts.Prefix + "sessions",
		channel:    opts.Prefix + "events",
		seed:       maphash.MakeSeed(),
		pending:    make(map[string]time.Time),
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Ping(ctx)
		for _, sc := range scripts {
			p.ScriptLoad(ctx, sc.src)
		}
		return nil
	})
	if err == nil {
		err = s.initEpoch(ctx)
	}
	if err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("store/redis: connect to %s: %w", opts.Addr, err)
	}
	go s.flushLoop()
	return s, nil
}

// FlushInterval reports how long a Touch may stay buffered (the bound on
// what a gateway crash loses); it implements storetest.TouchBuffer.
func (s *Store) FlushInterval() time.Duration { return s.interval }

// Put stores r, replacing the record with its ID and any touch of it, in
// one round trip (one script).
func (s *Store) Put(ctx context.Context, r *store.Record) error {
	end, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	if r == nil || r.ID == "" {
		return errNoID
	}
	v, err := encodeRecord(r)
	if err != nil {
		return fmt.Errorf("store/redis: encode record %q: %w", r.ID, err)
	}
	l := s.lock(r.ID)
	l.Lock()
	defer l.Unlock()
	if err := s.settle(ctx, r.ID); err != nil {
		return err
	}
	err = putScript.Run(ctx, s.rdb, []string{s.keySession + r.ID, s.keyIndex},
		r.ID, v, idleMillis(r.IdleTimeout), deadlineMillis(r), time.Now().UnixMilli(), s.margin, r.Owner).Err()
	return s.wrap(err, "put", r.ID)
}

// Get returns the record with id, its LastActive including touches not yet
// flushed, or store.ErrNotFound. One round trip (HMGET).
func (s *Store) Get(ctx context.Context, id string) (*store.Record, error) {
	end, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer end()
	if id == "" {
		return nil, store.ErrNotFound
	}
	l := s.lock(id)
	l.RLock()
	defer l.RUnlock()
	// Pending first, Redis second: a touch flushed in between is then in
	// what Redis returns.
	pend := s.pendingAt(id)
	vals, err := s.rdb.HMGet(ctx, s.keySession+id, fieldRecord, fieldTouchSec, fieldTouchNs, fieldOwner).Result()
	if err != nil {
		return nil, s.wrap(err, "get", id)
	}
	r, err := s.decode(id, vals)
	if err != nil {
		return nil, s.wrap(err, "get", id)
	}
	if pend.After(r.LastActive) {
		r.LastActive = pend
	}
	return r, nil
}

// decode makes a record of the HMGET record, ts, tn, owner reply for id.
func (s *Store) decode(id string, vals []any) (*store.Record, error) {
	if len(vals) != 4 || vals[0] == nil {
		return nil, store.ErrNotFound
	}
	v, _ := vals[0].(string)
	r, err := decodeRecord(id, []byte(v))
	if err != nil {
		return nil, err
	}
	ts, ok1 := vals[1].(string)
	tn, ok2 := vals[2].(string)
	if ok1 && ok2 {
		at, err := decodeTouch(ts, tn)
		if err != nil {
			s.log.Warn("store_touch_corrupt", "addr", s.addr, "session", core.Fingerprint(id), "error", err)
		} else if at.After(r.LastActive) {
			r.LastActive = at
		}
	}
	if o, ok := vals[3].(string); ok {
		r.Owner = o
	}
	return r, nil
}

// Touch moves the record's LastActive forward to at, never back. It only
// updates memory (no round trip); the flusher writes every pending touch
// within FlushInterval, in one round trip. A Touch of a missing record is
// dropped at the flush.
func (s *Store) Touch(ctx context.Context, id string, at time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return store.ErrClosed
	}
	if cur, ok := s.pending[id]; id != "" && (!ok || at.After(cur)) {
		s.pending[id] = at
	}
	return nil
}

// Delete removes the record with id, its index entry and its place under
// cluster caps, atomically, in one round trip (one script).
func (s *Store) Delete(ctx context.Context, id string) error {
	end, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	if id == "" {
		return nil
	}
	l := s.lock(id)
	l.Lock()
	defer l.Unlock()
	if err := s.settle(ctx, id); err != nil {
		return err
	}
	err = deleteScript.Run(ctx, s.rdb, []string{s.keySession + id, s.keyIndex}, id, s.prefix).Err()
	return s.wrap(err, "delete", id)
}

// List returns every record, with touches merged. It costs one round trip
// for the index (dropping entries of keys Redis expired), one per 1000
// records, and one more if it finds index entries without a key (which it
// removes). A record that cannot be decoded is skipped with a logged
// warning. In this process, List blocks Put and Delete while it reads; it
// is not a snapshot of what other replicas write meanwhile.
func (s *Store) List(ctx context.Context) ([]*store.Record, error) {
	end, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer end()
	for i := range s.locks {
		s.locks[i].RLock()
	}
	defer func() {
		for i := range s.locks {
			s.locks[i].RUnlock()
		}
	}()
	pend := s.pendingAll()
	ids, err := listScript.Run(ctx, s.rdb, []string{s.keyIndex}).StringSlice()
	if err != nil {
		return nil, s.wrap(err, "list", "")
	}
	out := make([]*store.Record, 0, len(ids))
	var orphans []string
	for chunk := range slices.Chunk(ids, listChunk) {
		cmds, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, id := range chunk {
				p.HMGet(ctx, s.keySession+id, fieldRecord, fieldTouchSec, fieldTouchNs, fieldOwner)
			}
			return nil
		})
		if err != nil && !isReplyError(err) {
			return nil, s.wrap(err, "list", "")
		}
		for i, c := range cmds {
			id := chunk[i]
			vals, err := c.(*redis.SliceCmd).Result()
			if err == nil {
				var r *store.Record
				if r, err = s.decode(id, vals); err == nil {
					if at, ok := pend[id]; ok && at.After(r.LastActive) {
						r.LastActive = at
					}
					out = append(out, r)
					continue
				}
			}
			if errors.Is(err, store.ErrNotFound) {
				orphans = append(orphans, id)
			} else {
				s.log.Warn("store_record_corrupt", "addr", s.addr, "session", core.Fingerprint(id), "error", err)
			}
		}
	}
	if len(orphans) > 0 {
		keys := make([]string, 1, len(orphans)+1)
		keys[0] = s.keyIndex
		args := make([]any, len(orphans))
		for i, id := range orphans {
			keys = append(keys, s.keySession+id)
			args[i] = id
		}
		// Best effort: the records are not listed either way.
		if err := pruneScript.Run(ctx, s.rdb, keys, args...).Err(); err != nil {
			s.log.Warn("store_index_prune_failed", "addr", s.addr, "error", err)
		}
	}
	return out, nil
}

// Add adds delta to the named counter and returns its new value: one
// round trip (INCRBY), never retried.
func (s *Store) Add(ctx context.Context, counter string, delta int64) (int64, error) {
	end, err := s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer end()
	if counter == "" {
		return 0, errNoID
	}
	n, err := s.rdb.IncrBy(ctx, s.keyCounter+counter, delta).Result()
	if err != nil {
		return 0, s.wrap(err, "add", counter)
	}
	return n, nil
}

// Close stops the flusher and the subscriptions, writes pending touches
// (one round trip) and closes the connections. Later calls return nil;
// other methods return store.ErrClosed.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		s.mu.Unlock()
		s.closed.Store(true)
		close(s.stop)
		<-s.done
		s.subs.Wait()
		s.life.Lock()
		defer s.life.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		defer cancel()
		err = s.flush(ctx)
		if err != nil {
			s.mu.Lock()
			n := len(s.pending)
			s.mu.Unlock()
			err = fmt.Errorf("store/redis: close: %d touches not written: %w", n, err)
		}
		if cerr := s.rdb.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("store/redis: close: %w", cerr))
		}
	})
	return err
}

func (s *Store) flushLoop() {
	defer close(s.done)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
			_ = s.flush(ctx)
			cancel()
		}
	}
}

// flush writes the pending touches: one pipeline of script calls, one
// round trip. On failure they go back to pending, to be retried by the
// next flush; the first failure of a run is logged, and the recovery.
func (s *Store) flush(ctx context.Context) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	if len(s.pending) == 0 {
		s.mu.Unlock()
		return nil
	}
	batch := s.pending
	s.flushing, s.pending = batch, s.spare
	if s.pending == nil {
		s.pending = make(map[string]time.Time, len(batch))
	}
	s.spare = nil
	s.flushDone = make(chan struct{})
	s.mu.Unlock()

	// batch is read without mu: until flushing is reset below, only
	// readers use it.
	err := s.writeTouches(ctx, batch)

	s.mu.Lock()
	if err != nil {
		for id, at := range batch {
			if cur, ok := s.pending[id]; !ok || at.After(cur) {
				s.pending[id] = at
			}
		}
	}
	n := len(batch)
	clear(batch)
	s.spare, s.flushing = batch, nil
	close(s.flushDone)
	s.flushDone = nil
	s.mu.Unlock()

	if err != nil {
		s.flushFailures++
		if fn := s.reportErr.Load(); fn != nil {
			(*fn)("touch")
		}
		if s.flushFailures == 1 {
			s.log.Error("store_touch_flush_failed", "addr", s.addr, "touches", n, "error", err)
		}
		return fmt.Errorf("store/redis: flush %d touches: %w", n, err)
	}
	if s.flushFailures > 0 {
		s.log.Info("store_touch_flush_recovered", "addr", s.addr, "failed_flushes", s.flushFailures)
		s.flushFailures = 0
	}
	return nil
}

// writeTouches runs the touch script over batch, in chunks, pipelined. If
// Redis lost its script cache (a restart), it loads the scripts and tries
// once more: touches are idempotent.
func (s *Store) writeTouches(ctx context.Context, batch map[string]time.Time) error {
	now := time.Now().UnixMilli()
	run := func() error {
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			var keys []string
			var args []any
			send := func() {
				touchScript.EvalSha(ctx, p, keys, args...)
				keys, args = nil, nil
			}
			for id, at := range batch {
				if keys == nil {
					keys = make([]string, 1, flushChunk+1)
					keys[0] = s.keyIndex
					args = make([]any, 3, 3+3*flushChunk)
					args[0], args[1], args[2] = now, s.margin, s.prefix
				}
				sec, nsec := touchArgs(at)
				keys = append(keys, s.keySession+id)
				args = append(args, id, sec, nsec)
				if len(keys) == flushChunk+1 {
					send()
				}
			}
			if keys != nil {
				send()
			}
			return nil
		})
		return err
	}
	err := run()
	if redis.HasErrorPrefix(err, "NOSCRIPT") {
		if err = s.loadScripts(ctx); err == nil {
			err = run()
		}
	}
	return err
}

func (s *Store) loadScripts(ctx context.Context) error {
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, sc := range scripts {
			p.ScriptLoad(ctx, sc.src)
		}
		return nil
	})
	return err
}

func (s *Store) lock(id string) *sync.RWMutex {
	return &s.locks[maphash.String(s.seed, id)%stripes]
}

// settle makes the buffered touches of id irrelevant to a Put or Delete
// about to replace or remove its record: it waits out a flush that is
// writing one (so that it lands before the write, not after) and drops the
// rest. The caller holds id's write lock.
func (s *Store) settle(ctx context.Context, id string) error {
	for {
		s.mu.Lock()
		if _, ok := s.flushing[id]; !ok {
			delete(s.pending, id)
			s.mu.Unlock()
			return nil
		}
		done := s.flushDone
		s.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// pendingAt returns the latest buffered touch of id, or the zero time.
func (s *Store) pendingAt(id string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	at := s.pending[id]
	if f, ok := s.flushing[id]; ok && f.After(at) {
		at = f
	}
	return at
}

// pendingAll returns a copy of every buffered touch.
func (s *Store) pendingAll() map[string]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]time.Time, len(s.pending)+len(s.flushing))
	for id, at := range s.flushing {
		m[id] = at
	}
	for id, at := range s.pending {
		if cur, ok := m[id]; !ok || at.After(cur) {
			m[id] = at
		}
	}
	return m
}

// begin admits a call that uses the connections: Close waits for the
// calls in flight before it closes them, so a call either completes or
// fails with store.ErrClosed, never with a connection closed under it.
// The caller runs end when done.
func (s *Store) begin(ctx context.Context) (end func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.life.RLock()
	if s.closed.Load() {
		s.life.RUnlock()
		return nil, store.ErrClosed
	}
	return s.life.RUnlock, nil
}

func (s *Store) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return store.ErrClosed
	}
	return nil
}

// wrap maps the client's closed error to store.ErrClosed and adds context
// to others (the store's and the context's sentinels stay visible to
// errors.Is).
func (s *Store) wrap(err error, op, id string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, redis.ErrClosed):
		return store.ErrClosed
	case errors.Is(err, store.ErrNotFound):
		return err
	case id != "":
		return fmt.Errorf("store/redis: %s %q: %w", op, id, err)
	}
	return fmt.Errorf("store/redis: %s: %w", op, err)
}

// isReplyError reports whether err is an error reply from the server (as
// opposed to a network or protocol failure): the connection is fine and
// the other commands of a pipeline have their replies.
func isReplyError(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr)
}
