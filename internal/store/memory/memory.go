package memory

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

// Store is an in-memory store.Store. The zero value is not usable; call
// New.
type Store struct {
	mu       sync.RWMutex
	records  map[string]*store.Record
	counters map[string]int64
	state    map[string][]byte // StateStore blobs; nil until the first
	closed   bool
}

var _ store.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{
		records:  make(map[string]*store.Record),
		counters: make(map[string]int64),
	}
}

// errNoID is returned for a record or counter without a name; the
// interface has no sentinel for it, and callers do not branch on it.
var errNoID = errors.New("store/memory: empty id")

// Put stores a copy of r, replacing any record with its ID.
func (s *Store) Put(ctx context.Context, r *store.Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if r == nil || r.ID == "" {
		return errNoID
	}
	c := r.Clone()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	s.records[c.ID] = c
	return nil
}

// Get returns a copy of the record with id, or store.ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (*store.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	r, ok := s.records[id]
	if !ok {
		return nil, store.ErrNotFound
	}
	return r.Clone(), nil
}

// Touch moves the record's LastActive forward to at; it never moves it
// back, and a missing record is ignored.
func (s *Store) Touch(ctx context.Context, id string, at time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	if r, ok := s.records[id]; ok && at.After(r.LastActive) {
		r.LastActive = at
	}
	return nil
}

// Delete removes the record with id, if any.
func (s *Store) Delete(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	delete(s.records, id)
	return nil
}

// List returns copies of every record, in no particular order.
func (s *Store) List(ctx context.Context) ([]*store.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	out := make([]*store.Record, 0, len(s.records))
	for _, r := range s.records {
		out = append(out, r.Clone())
	}
	return out, nil
}

// Add adds delta to the named counter and returns its new value.
func (s *Store) Add(ctx context.Context, counter string, delta int64) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if counter == "" {
		return 0, errNoID
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, store.ErrClosed
	}
	s.counters[counter] += delta
	return s.counters[counter], nil
}

// Close drops every record; later calls return store.ErrClosed. Closing
// twice is not an error.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.records, s.counters = nil, nil
	return nil
}
