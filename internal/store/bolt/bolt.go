package bolt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/mcpgate/mcpgate/internal/core"
	"hash/maphash"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/mcpgate/mcpgate/internal/store"
)

// Options configure Open.
type Options struct {
	// FlushInterval is how long a Touch may stay in memory before it is
	// written to disk, all pending touches in one transaction. It bounds
	// the activity time a crash can lose. If zero, 1s.
	FlushInterval time.Duration
	// Timeout is how long Open waits for the file lock another process
	// (a second mcpgate on the same data directory) holds before it fails
	// with ErrLocked. If zero, 1s.
	Timeout time.Duration
	// Logger receives warnings: corrupt values skipped, failed background
	// flushes. If nil, nothing is logged.
	Logger *slog.Logger
}

const (
	defaultFlushInterval = time.Second
	defaultTimeout       = time.Second
	// stripes is how many locks order Put and Delete against reads of the
	// same id; see Store.locks.
	stripes = 64
)

// ErrLocked is returned by Open when another process holds the database.
var ErrLocked = errors.New("store/bolt: database is in use by another process")

// errNoID is returned for a record or counter without a name; bbolt keys
// cannot be empty.
var errNoID = errors.New("store/bolt: empty id")

var (
	bucketSessions = []byte("sessions")
	// bucketTouches holds, by session id, the latest Touch flushed since
	// the record was last Put: rewriting a whole record per touched
	// session every second would multiply the writes for no gain.
	bucketTouches  = []byte("last_active")
	bucketCounters = []byte("counters")
)

// Store is a store.Store in a bbolt file. It is safe for use by multiple
// goroutines. Put, Delete and Add are durable when they return; Touch is
// durable within FlushInterval, or at Close.
type Store struct {
	db       *bbolt.DB
	path     string
	interval time.Duration
	log      *slog.Logger

	// locks, chosen by a hash of the id, make a Put or Delete atomic with
	// respect to a Get or List of the same id: the writer drops pending
	// touches and commits under the write lock, and a reader takes the
	// pending touch and its snapshot under the read lock, so it never
	// pairs a new record with a touch the Put superseded, nor an old
	// record with its touch dropped. List takes every read lock.
	seed  maphash.Seed
	locks [stripes]sync.RWMutex

	// mu guards the touch buffers and closing. pending collects Touch
	// calls; flushing is what the flusher is writing (still merged into
	// reads until committed); spare is an emptied map kept for reuse so
	// that steady-state Touch does not allocate.
	mu       sync.Mutex
	pending  map[string]time.Time
	flushing map[string]time.Time
	spare    map[string]time.Time
	closing  bool

	closed    atomic.Bool
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once

	// reportErr, if set, is told of failed background flushes (see
	// ReportErrors).
	reportErr atomic.Pointer[func(op string)]
}

var _ store.Store = (*Store)(nil)

// Open opens the database at path, creating it (mode 0600) and its
// directory (mode 0700) if missing, and starts the background flusher.
// If another process has it open, Open fails after opts.Timeout with an
// error that wraps ErrLocked and names path.
func Open(path string, opts Options) (*Store, error) {
	if opts.FlushInterval < 0 {
		return nil, fmt.Errorf("store/bolt: negative FlushInterval %v", opts.FlushInterval)
	}
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("store/bolt: negative Timeout %v", opts.Timeout)
	}
	if opts.FlushInterval == 0 {
		opts.FlushInterval = defaultFlushInterval
	}
	if opts.Timeout == 0 {
		opts.Timeout = defaultTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store/bolt: create data directory: %w", err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: opts.Timeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s (lock not acquired within %v; is another mcpgate using this data directory?)", ErrLocked, path, opts.Timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("store/bolt: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketSessions, bucketTouches, bucketCounters} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("bucket %s: %w", b, err)
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store/bolt: open %s: %w", path, err)
	}
	s := &Store{
		db:       db,
		path:     path,
		interval: opts.FlushInterval,
		log:      opts.Logger,
		seed:     maphash.MakeSeed(),
		pending:  make(map[string]time.Time),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go s.flushLoop()
	return s, nil
}

// FlushInterval reports how long a Touch may stay buffered (the bound on
// what a crash loses); it implements storetest.TouchBuffer.
func (s *Store) FlushInterval() time.Duration { return s.interval }

// Put stores r, replacing the record with its ID and any touch of it.
func (s *Store) Put(ctx context.Context, r *store.Record) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if r == nil || r.ID == "" {
		return errNoID
	}
	v, err := encodeRecord(r)
	if err != nil {
		return fmt.Errorf("store/bolt: encode record %q: %w", r.ID, err)
	}
	key := []byte(r.ID)
	l := s.lock(r.ID)
	l.Lock()
	defer l.Unlock()
	err = s.db.Update(func(tx *bbolt.Tx) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := tx.Bucket(bucketSessions).Put(key, v); err != nil {
			return err
		}
		if err := tx.Bucket(bucketTouches).Delete(key); err != nil {
			return err
		}
		// Inside the transaction, so ordered against the flusher's.
		s.dropPending(r.ID)
		return nil
	})
	return s.wrap(err, "put", r.ID)
}

// Get returns the record with id, its LastActive including touches not yet
// flushed, or store.ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (*store.Record, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if id == "" {
		return nil, store.ErrNotFound
	}
	key := []byte(id)
	l := s.lock(id)
	l.RLock()
	defer l.RUnlock()
	// Pending first, snapshot second: a touch flushed in between is then
	// in the snapshot.
	pend := s.pendingAt(id)
	var r *store.Record
	err := s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketSessions).Get(key)
		if v == nil {
			return store.ErrNotFound
		}
		var err error
		if r, err = decodeRecord(key, v); err != nil {
			return err
		}
		s.mergeStored(r, tx.Bucket(bucketTouches).Get(key))
		return nil
	})
	if err != nil {
		return nil, s.wrap(err, "get", id)
	}
	if pend.After(r.LastActive) {
		r.LastActive = pend
	}
	return r, nil
}

// Touch moves the record's LastActive forward to at, never back. It only
// updates memory; the flusher writes it within FlushInterval. A Touch of
// a missing record is dropped at the flush.
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

// Delete removes the record with id and its touches, if any.
func (s *Store) Delete(ctx context.Context, id string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if id == "" {
		return nil
	}
	key := []byte(id)
	l := s.lock(id)
	l.Lock()
	defer l.Unlock()
	err := s.db.Update(func(tx *bbolt.Tx) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := tx.Bucket(bucketSessions).Delete(key); err != nil {
			return err
		}
		if err := tx.Bucket(bucketTouches).Delete(key); err != nil {
			return err
		}
		s.dropPending(id)
		return nil
	})
	return s.wrap(err, "delete", id)
}

// List returns every record, in id order, with touches merged. A record
// that cannot be decoded is skipped with a logged warning. List blocks Put
// and Delete while it reads.
func (s *Store) List(ctx context.Context) ([]*store.Record, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	for i := range s.locks {
		s.locks[i].RLock()
	}
	defer func() {
		for i := range s.locks {
			s.locks[i].RUnlock()
		}
	}()
	pend := s.pendingAll()
	var out []*store.Record
	err := s.db.View(func(tx *bbolt.Tx) error {
		sessions := tx.Bucket(bucketSessions)
		touches := tx.Bucket(bucketTouches)
		c := sessions.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(out)%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			r, err := decodeRecord(k, v)
			if err != nil {
				s.log.Warn("store record corrupt, skipped", "path", s.path, "session", core.Fingerprint(string(k)), "error", err)
				continue
			}
			s.mergeStored(r, touches.Get(k))
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, s.wrap(err, "list", "")
	}
	for _, r := range out {
		if at, ok := pend[r.ID]; ok && at.After(r.LastActive) {
			r.LastActive = at
		}
	}
	return out, nil
}

// Add adds delta to the named counter and returns its new value; it is
// durable when it returns.
func (s *Store) Add(ctx context.Context, counter string, delta int64) (int64, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	if counter == "" {
		return 0, errNoID
	}
	key := []byte(counter)
	var n int64
	err := s.db.Update(func(tx *bbolt.Tx) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		b := tx.Bucket(bucketCounters)
		if v := b.Get(key); v != nil {
			if len(v) != 8 {
				return fmt.Errorf("corrupt counter value (%d bytes)", len(v))
			}
			n = int64(binary.BigEndian.Uint64(v))
		}
		n += delta
		return b.Put(key, binary.BigEndian.AppendUint64(make([]byte, 0, 8), uint64(n)))
	})
	if err != nil {
		return 0, s.wrap(err, "add", counter)
	}
	return n, nil
}

// Close stops the flusher, writes pending touches and closes the file.
// Later calls return nil; other methods return store.ErrClosed.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		s.mu.Unlock()
		s.closed.Store(true)
		close(s.stop)
		<-s.done
		err = errors.Join(s.flush(), s.db.Close())
		if err != nil {
			err = fmt.Errorf("store/bolt: close %s: %w", s.path, err)
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
			if err := s.flush(); err != nil {
				s.log.Error("store touch flush failed", "path", s.path, "error", err)
				if fn := s.reportErr.Load(); fn != nil {
					(*fn)("touch")
				}
			}
		}
	}
}

// flush writes the pending touches in one transaction. On failure they go
// back to pending, to be retried by the next flush.
func (s *Store) flush() error {
	s.mu.Lock()
	empty := len(s.pending) == 0
	s.mu.Unlock()
	if empty {
		return nil
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		// Swapped inside the transaction so that a Put or Delete, which
		// drops pending touches inside its own, is wholly before or after.
		s.mu.Lock()
		s.flushing, s.pending = s.pending, s.spare
		if s.pending == nil {
			s.pending = make(map[string]time.Time, len(s.flushing))
		}
		s.spare = nil
		s.mu.Unlock()

		sessions := tx.Bucket(bucketSessions)
		touches := tx.Bucket(bucketTouches)
		// One buffer for every value: bbolt keeps them until commit.
		buf := make([]byte, 0, touchLen*len(s.flushing))
		for id, at := range s.flushing {
			key := []byte(id)
			if sessions.Get(key) == nil {
				continue // missing or deleted: Touch creates nothing
			}
			if cur, err := decodeTouch(touches.Get(key)); err == nil && !at.After(cur) {
				continue
			}
			buf = appendTouch(buf, at)
			if err := touches.Put(key, buf[len(buf)-touchLen:]); err != nil {
				return err
			}
		}
		return nil
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		for id, at := range s.flushing {
			if cur, ok := s.pending[id]; !ok || at.After(cur) {
				s.pending[id] = at
			}
		}
	}
	if s.flushing != nil {
		clear(s.flushing)
		s.spare, s.flushing = s.flushing, nil
	}
	return err
}

func (s *Store) lock(id string) *sync.RWMutex {
	return &s.locks[maphash.String(s.seed, id)%stripes]
}

// dropPending forgets buffered touches of id; the caller is inside a write
// transaction, so no flush is running.
func (s *Store) dropPending(id string) {
	s.mu.Lock()
	delete(s.pending, id)
	delete(s.flushing, id)
	s.mu.Unlock()
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

// mergeStored applies a flushed touch value to r.
func (s *Store) mergeStored(r *store.Record, v []byte) {
	if v == nil {
		return
	}
	at, err := decodeTouch(v)
	if err != nil {
		s.log.Warn("store touch value corrupt, ignored", "path", s.path, "session", core.Fingerprint(r.ID), "error", err)
		return
	}
	if at.After(r.LastActive) {
		r.LastActive = at
	}
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

// wrap maps bbolt's closed error to store.ErrClosed and adds context to
// others, leaving the store's and the context's sentinels as they are.
func (s *Store) wrap(err error, op, id string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, berrors.ErrDatabaseNotOpen):
		return store.ErrClosed
	case errors.Is(err, store.ErrNotFound), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case id != "":
		return fmt.Errorf("store/bolt: %s %q: %w", op, id, err)
	}
	return fmt.Errorf("store/bolt: %s: %w", op, err)
}
