// Package resilient is an upstream.Upstream wrapper that repeats requests
// safe to repeat after transient failures and guards a failing upstream
// with a circuit breaker (sony/gobreaker).
//
// Repeats: exponential backoff from Retry.Backoff doubling to MaxBackoff,
// with full jitter, after the failure classes Retry.On names (connect,
// reset, timeout, 502, 503, 504, 429), a Retry-After the upstream names
// honoured, all within Retry.Budget. Only requests the route's
// catalog.Repeat rule calls safe are ever repeated (discovery, initialize,
// lists, reads, prompts, and tools listed in retry_tools or, when trusted,
// annotated readOnlyHint/idempotentHint); any other tools/call is sent
// exactly once, whatever fails. Notifications and responses (Conn.Send)
// pass through untouched.
//
// The breaker counts transport failures, timeouts and 5xx answers as
// failures; a JSON-RPC error, a tool result with isError and a 4xx are the
// server answering. While it is open, every request (and Open, and Probe)
// fails at once with a *core.Error: HTTP 503, core.CodeUpstreamUnavailable,
// Retry-After, naming the route and when the upstream is tried again.
//
//	up := resilient.New(inner, resilient.Options{
//		Route:   "github",
//		Retry:   &resilient.Retry{Attempts: 3, Backoff: 100 * time.Millisecond, MaxBackoff: 2 * time.Second, Jitter: true, Budget: 10 * time.Second, On: resilient.Of(resilient.Class503)},
//		Breaker: &resilient.Breaker{FailureRatio: 0.5, MinRequests: 20, Window: 30 * time.Second, OpenFor: 15 * time.Second, HalfOpenRequests: 3},
//	})
//
// The package knows nothing of the configuration file: the gateway
// translates routes[].upstream.retry and .breaker into Options.
package resilient
