// Package store defines where mcpgate keeps session state that must
// outlive a process: session records, and small counters. Backends live in
// subpackages (store/memory, store/bolt; Redis for clusters) and all pass
// the shared conformance suite in store/storetest.
//
// The session manager stays the owner of live sessions; the store is what
// it writes through so that, after a restart, a client presenting its
// Mcp-Session-Id finds its session again:
//
//	st, _ := bolt.Open(filepath.Join(dataDir, "sessions.db"), bolt.Options{})
//	defer st.Close()
//	_ = st.Put(ctx, rec)               // on create and on change
//	_ = st.Touch(ctx, id, time.Now())  // batched: never a disk sync per message
//	recs, _ := st.List(ctx)            // on start: restore
package store
