// Package ratelimit is the interceptor that limits client requests with a
// token bucket per principal — per client address for anonymous clients —
// so that starting a new session does not refill the bucket. A refused
// request gets HTTP 429 with Retry-After and JSON-RPC error -32012; it
// never reaches the upstream.
//
//	stage := pipeline.Stage{Name: "limits", Interceptor: ratelimit.New(limits.NewBuckets(50, 100, limits.BucketOptions{}))}
//
// The bucket is any [limits.Limiter]: the in-memory one of one gateway,
// or one in the store that several replicas share. A shared limiter that
// cannot reach its store fails the request with 503 and Retry-After
// rather than letting it through unchecked; a gateway configured to fail
// open gives the stage a limiter that falls back to local state instead.
//
// Notifications and responses are not limited: refusing them would break
// the protocol (a lost notifications/cancelled, an unanswered sampling
// request) without protecting anything.
package ratelimit
