package bolt

import (
	"context"

	"go.etcd.io/bbolt"

	"github.com/mcpgate/mcpgate/internal/store"
)

var _ store.Pinger = (*Store)(nil)

// Ping reports whether the database is open and readable: an empty read
// transaction, which touches no page and takes no lock a writer waits for.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	err := s.db.View(func(*bbolt.Tx) error { return nil })
	return s.wrap(err, "ping", "")
}
