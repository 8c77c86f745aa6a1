// Package meter counts amounts against budgets: reserve an estimate
// before the work, settle the actual amount after it. The quota stage
// meters requests and tool calls (an estimate that is exact: one), the
// bytes and tokens of results (known only when the result is back) and
// requests in flight (held until settled) with it.
//
// A budget (Spec) is a set of counters with limits in one window: 0, for
// ever (the lifetime of what the key stands for, such as a session), or a
// rolling window in which usage leaves the count as it ages. Counts are
// kept in Slots+1 slots of Window/Slots each: an amount is counted for at
// least the window and at most one slot more, never less (the strict side).
//
// Three implementations share the semantics (see Meter):
//
//   - Counters: the state of one key, in memory (a session's own budget);
//   - Local: Counters per key, sharded, for principals and tenants on one
//     replica;
//   - Redis: the state in Redis, one script call per Reserve and per
//     Settle, on Redis's clock, so that every replica shares one budget
//     exactly.
//
// Reserve checks every charge against its counter and takes all or none:
// a count admitted iff used+amount <= limit; with Clamp, an estimate
// admitted iff anything is left, holding at most what is left; a gauge
// admitted iff fewer than limit are held. Settle replaces each held
// estimate by the actual amount (Reservation.Actual), gives gauges back,
// and refuses an actual amount that no longer fits: then nothing of that
// charge stays counted, and the caller withholds what it measured.
package meter
