// Package storetest is the conformance suite every store.Store backend
// runs, so that the session manager can rely on one contract whatever the
// backend. It owns the precise meaning of the store.Store doc comments:
//
//   - Put, Get, List and Delete copy records in and out; a caller never
//     shares memory with the store.
//   - Times round-trip as instants, to the nanosecond: the suite compares
//     them with time.Time.Equal (go-cmp uses the Equal method), so a
//     backend may drop the location and the monotonic reading but nothing
//     finer than a nanosecond. A nil and an empty InitRaw, Usage or
//     Overrides are the same value.
//   - Put replaces the whole record, LastActive included: a Touch that
//     returned before Put was called does not survive it.
//   - Touch(id, at) sets LastActive to at if at is later; it never moves
//     LastActive backwards (activity reported out of order by concurrent
//     requests must not lose the latest). Get and List reflect a Touch as
//     soon as it returns, even when the backend buffers the durable write.
//     A Touch of a missing id is ignored and creates nothing.
//   - Put of a nil record or of one with an empty ID, and Add of a counter
//     with an empty name, are errors. Get of "" is ErrNotFound.
//   - After Close every method returns store.ErrClosed; Close itself is
//     idempotent and returns nil the second time.
//   - A context already done makes every method return ctx.Err() (wrapped
//     or not: the suite uses errors.Is).
//
// A backend's test is one call per suite:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { return memory.New() })
//	}
//
//	func TestDurable(t *testing.T) {
//		storetest.RunDurable(t, func(t *testing.T, path string) store.Store {
//			s, err := bolt.Open(path, bolt.Options{FlushInterval: 50 * time.Millisecond})
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
//
// RunDurable is for backends that persist to a path. Its crash test
// re-executes the test binary (os.Args[0] with -test.run naming the
// running subtest); the child writes and exits (os.Exit) without Close,
// and the parent then reopens the path. A backend that buffers Touch says for how long by
// implementing [TouchBuffer]; without it, Touch must be durable on return.
package storetest
