// Package ratelimit is the interceptor that limits client requests with a
// token bucket per principal — per client address for anonymous clients —
// so that starting a new session does not refill the bucket. A refused
// request gets HTTP 429 with Retry-After and JSON-RPC error -32012; it
// never reaches the upstream.
//
//	stage := pipeline.Stage{Name: "limits", Interceptor: ratelimit.New(limits.NewBuckets(50, 100, limits.BucketOptions{}))}
//
// Notifications and responses are not limited: refusing them would break
// the protocol (a lost notifications/cancelled, an unanswered sampling
// request) without protecting anything.
package ratelimit
