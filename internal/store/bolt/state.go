package bolt

import (
	"context"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/mcpgate/mcpgate/internal/store"
)

var _ store.StateStore = (*Store)(nil)

// bucketState holds StateStore blobs by name. It is created by the first
// SaveState, so files written before it existed open unchanged.
var bucketState = []byte("state")

// SaveState replaces the blob name in one transaction: durable when it
// returns, and never half written (a crash leaves the previous blob).
func (s *Store) SaveState(ctx context.Context, name string, data []byte) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if name == "" {
		return errNoID
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		b, err := tx.CreateBucketIfNotExists(bucketState)
		if err != nil {
			return fmt.Errorf("bucket %s: %w", bucketState, err)
		}
		return b.Put([]byte(name), data)
	})
	return s.wrap(err, "save state", name)
}

// LoadState returns a copy of the blob name, or store.ErrNotFound.
func (s *Store) LoadState(ctx context.Context, name string) ([]byte, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	var out []byte
	err := s.db.View(func(tx *bbolt.Tx) error {
		var v []byte
		if b := tx.Bucket(bucketState); b != nil && name != "" {
			v = b.Get([]byte(name))
		}
		if v == nil {
			return store.ErrNotFound
		}
		// bbolt's slices are valid only inside the transaction.
		out = append(make([]byte, 0, len(v)), v...)
		return nil
	})
	if err != nil {
		return nil, s.wrap(err, "load state", name)
	}
	return out, nil
}
