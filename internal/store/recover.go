package store

import "context"

// Recovering is implemented by shared stores that can lose their data
// behind the gateway's back — a Redis restarted without persistence, or
// flushed — and notice it. The store keeps an epoch, a random value
// written once; finding it missing or changed means what the replicas wrote
// is gone, while the sessions they hold live on. Each replica then writes
// back what it holds (OnDataLoss), and until every replica had the time
// to, absence in the store proves nothing (Settle, Exists).
//
// Implementations must be safe for use by multiple goroutines.
type Recovering interface {
	// OnDataLoss registers fn, run once for each loss this process
	// notices, to write back what it holds: records (with their owners)
	// and places under the shared caps. Register before the store is
	// used. fn should honour ctx.
	OnDataLoss(fn func(ctx context.Context))
	// Settle returns nil once the store's contents can be trusted: at
	// once normally (one round trip, which also notices a loss); after a
	// loss, when every replica has had the time to write back what it
	// holds. Admissions under shared caps, and look-ups that found
	// nothing, wait for it. It fails when the store cannot be reached or
	// ctx ends first.
	Settle(ctx context.Context) error
	// Exists reports whether session id has a record (one round trip,
	// which also notices a loss). While a loss is being recovered from it
	// reports true: the record may not have been written back yet.
	Exists(ctx context.Context, id string) (bool, error)
}
