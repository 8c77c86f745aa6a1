package bolt

import (
	"context"
	"encoding/json"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/mcpgate/mcpgate/internal/store"
)

var _ store.Procs = (*Store)(nil)

// bucketProcs holds one bucket per host, and in it the spawned processes
// by store.Proc.Key. It is created by the first PutProc, so files written
// before it existed open unchanged.
var bucketProcs = []byte("procs")

// PutProc records p in one transaction (durable when it returns).
func (s *Store) PutProc(ctx context.Context, host string, p store.Proc) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if host == "" {
		return errNoID
	}
	v, err := json.Marshal(p)
	if err != nil {
		return err
	}
	err = s.db.Update(func(tx *bbolt.Tx) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		root, err := tx.CreateBucketIfNotExists(bucketProcs)
		if err != nil {
			return fmt.Errorf("bucket %s: %w", bucketProcs, err)
		}
		b, err := root.CreateBucketIfNotExists([]byte(host))
		if err != nil {
			return fmt.Errorf("bucket %s/%s: %w", bucketProcs, host, err)
		}
		return b.Put([]byte(p.Key()), v)
	})
	return s.wrap(err, "put proc", p.Key())
}

// DeleteProc removes the record key of host.
func (s *Store) DeleteProc(ctx context.Context, host, key string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		root := tx.Bucket(bucketProcs)
		if root == nil || host == "" {
			return nil
		}
		b := root.Bucket([]byte(host))
		if b == nil || key == "" {
			return nil
		}
		return b.Delete([]byte(key))
	})
	return s.wrap(err, "delete proc", key)
}

// ListProcs returns the records of host.
func (s *Store) ListProcs(ctx context.Context, host string) ([]store.Proc, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	var out []store.Proc
	err := s.db.View(func(tx *bbolt.Tx) error {
		root := tx.Bucket(bucketProcs)
		if root == nil || host == "" {
			return nil
		}
		b := root.Bucket([]byte(host))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var p store.Proc
			if err := json.Unmarshal(v, &p); err != nil {
				return fmt.Errorf("proc %s: %w", k, err)
			}
			out = append(out, p)
			return nil
		})
	})
	if err != nil {
		return nil, s.wrap(err, "list procs", host)
	}
	return out, nil
}
