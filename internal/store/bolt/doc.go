// Package bolt is mcpgate's default store.Store: one bbolt file in the
// data directory, no server to run. It owns the file's layout and the
// batching of Touch.
//
//	st, err := bolt.Open(filepath.Join(dataDir, "sessions.db"), bolt.Options{Logger: log})
//	if err != nil {
//		return err // wraps bolt.ErrLocked if another mcpgate has the file
//	}
//	defer st.Close() // flushes buffered touches
//	_ = st.Put(ctx, rec)              // one fsync'd transaction
//	_ = st.Touch(ctx, id, time.Now()) // memory only; flushed every FlushInterval
//
// # Layout
//
// Bucket "sessions" maps a session id to the JSON of its store.Record.
// Bucket "last_active" maps a session id to the latest Touch flushed since
// the record was last Put (12 bytes: Unix seconds and nanoseconds); reads
// take the later of it and the record's LastActive. Bucket "counters" maps
// a counter name to its value (8 bytes, big-endian two's complement).
//
// # Durability
//
// Put, Delete and Add each commit (and fsync) one bbolt transaction before
// they return: a crash after that loses none of them. Touch only updates
// memory — Get and List see it at once — and a background goroutine writes
// every pending touch in one transaction each FlushInterval, and Close
// writes the rest. A crash therefore loses at most the touches of the last
// FlushInterval plus the duration of the flush under way; it never loses
// or resurrects a session, and a lost touch leaves LastActive at an
// earlier, never a wrong-session, value.
package bolt
