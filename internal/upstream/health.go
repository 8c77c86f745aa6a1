package upstream

import (
	"context"
	"errors"
)

// Checker is implemented by upstreams that can tell whether their server
// answers (the gateway's health checks, routes[].health). Check returns
// nil when the server answered at all — a result, a JSON-RPC error, an
// authentication or authorization refusal (the server is there; the
// gateway's credential is another matter) — and an error when it did not:
// no answer within ctx, a transport failure, a 5xx, a process that would
// not start or exited before answering.
type Checker interface {
	Check(ctx context.Context) error
}

// ErrNoAnswer wraps what a Check that got no answer saw.
var ErrNoAnswer = errors.New("no answer")
