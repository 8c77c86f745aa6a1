// Package limits owns the rate limiters of the session lifecycle: a keyed
// sliding-window limiter for session creation ([Window]), a keyed token
// bucket for requests ([Buckets]) and the Retry-After header value a
// refusal carries ([RetryAfterSeconds]).
//
// Both limiters are keyed by a string the caller chooses — a client
// address, a principal, or "" for one global limit. Keying requests by
// principal rather than by session id matters: a client that re-creates its
// session keeps its (empty) bucket.
//
// Both are safe for concurrent use, take the time as an argument (pass
// time.Now(); its monotonic reading makes them immune to wall-clock steps),
// never start goroutines, and do not allocate on the hot path (a key that is
// already tracked). A limit that is switched off is a nil limiter: its
// methods allow everything and cost nothing.
//
// [Limiter] is what callers hold — the request stage takes one, and the
// session-creation checks take [UndoLimiter]s — so that a limiter whose
// state lives in a store shared by several gateway replicas (Redis: see
// store/redis) can stand in for these in-memory ones. Those take ctx, keep
// their store's clock, and may fail; [Refused] tells a refusal from a
// failure to decide. [Off] reports a switched-off limiter, which callers
// leave out altogether.
//
// Snapshots carry the state of a Window or Buckets across a restart:
// MarshalBinary and UnmarshalBinary (wall-clock times, so that another
// process can read them) and Version, which tells a saver whether anything
// changed since its last save. The gateway saves them in its embedded store.
//
// Memory is bounded twice: keys whose state has decayed to a new key's (no
// admission left in the window; a full bucket, unused for IdleTimeout) are
// dropped by sweeps amortised over Admit calls — or on demand by Sweep —
// and at most MaxKeys keys are tracked. Beyond that a new key is refused
// with [ErrTooManyKeys] rather than evicting a key the limit is meant to
// hold back.
//
//	creations := limits.NewWindow(10, time.Minute, limits.WindowOptions{})
//	if retry, err := creations.Admit(ctx, clientAddr, time.Now()); err != nil {
//		w.Header().Set("Retry-After", limits.RetryAfterSeconds(retry))
//		// 429 for ErrLimited, 503 for ErrTooManyKeys
//	}
//	s, err := sessions.Create(...)
//	if err != nil {
//		creations.Undo(ctx, clientAddr, time.Now()) // a failed creation costs no slot
//	}
//
//	requests := limits.NewBuckets(20, 40, limits.BucketOptions{})
//	if ok, retry := requests.Allow(principal, time.Now()); !ok { ... }
package limits
