package memory

import (
	"context"
	"errors"

	"github.com/mcpgate/mcpgate/internal/store"
)

var _ store.StateStore = (*Store)(nil)

// SaveState keeps a copy of data under name.
func (s *Store) SaveState(ctx context.Context, name string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if name == "" {
		return errors.New("store/memory: empty state name")
	}
	c := append(make([]byte, 0, len(data)), data...)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	if s.state == nil {
		s.state = make(map[string][]byte)
	}
	s.state[name] = c
	return nil
}

// LoadState returns a copy of the blob saved under name, or
// store.ErrNotFound.
func (s *Store) LoadState(ctx context.Context, name string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	v, ok := s.state[name]
	if !ok {
		return nil, store.ErrNotFound
	}
	return append(make([]byte, 0, len(v)), v...), nil
}
