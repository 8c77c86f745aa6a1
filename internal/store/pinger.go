package store

import "context"

// Pinger is implemented by stores that can tell, cheaply, whether their
// backend answers: one round trip for a server, a no-op read for an
// embedded file. The gateway's store monitor pings on a timer to report
// the store's health (metrics, readiness, one log line per outage);
// a Store that does not implement it is taken to be always available.
//
// Ping returns nil when the store would serve a call made now, an error
// wrapping the cause otherwise (store.ErrClosed once it is closed). It
// honours ctx's deadline, so a slow backend is reported as unavailable
// rather than holding the caller. It must be safe for use by multiple
// goroutines, concurrently with every other method.
type Pinger interface {
	Ping(ctx context.Context) error
}
