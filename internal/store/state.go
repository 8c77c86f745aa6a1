package store

import "context"

// StateStore is implemented by stores that keep small named blobs of
// gateway state across restarts: the rate limiters' snapshots, so that a
// restart does not hand every client a fresh budget. The gateway saves
// each blob periodically (when it changed) and at shutdown, and loads it
// once before serving.
//
// SaveState replaces the blob called name; it is durable when it returns,
// as Put is. LoadState returns a copy of the blob last saved under name,
// or ErrNotFound. Names are short ASCII identifiers; a blob may be
// megabytes (one record per limited key). Both honour ctx and must be
// safe for use by multiple goroutines, concurrently with every other
// method; after Close they return ErrClosed.
//
// Stores shared by replicas do not implement it: their limiters keep
// their state in the shared store itself.
type StateStore interface {
	SaveState(ctx context.Context, name string, data []byte) error
	LoadState(ctx context.Context, name string) ([]byte, error)
}

// SharedState is implemented by stores shared between replicas that keep
// small named blobs for all of them: the configuration history, so that
// a version applied on one replica is known to every replica. The
// contract is StateStore's. It is a separate interface because what a
// single node saves of its own state (StateStore: the limiters' budgets)
// replicas of a shared store keep in the store itself.
type SharedState interface {
	SaveShared(ctx context.Context, name string, data []byte) error
	LoadShared(ctx context.Context, name string) ([]byte, error)
}
