// Package redisstore is the store.Store and store.Broadcaster for gateway
// replicas that share sessions: records, counters and "session ended"
// events live in one Redis server. It owns the key layout, the batching of
// Touch, the expiry of abandoned keys and the pub/sub channel. (The
// directory is store/redis; the package name keeps it apart from the
// client library's.)
//
//	st, err := redisstore.Open(ctx, redisstore.Options{
//		Addr:     "redis.internal:6379",
//		Password: cfg.RedisPassword.Reveal(), // never logged or printed
//		Prefix:   "mcpgate:",
//		Logger:   log,
//	})
//	if err != nil {
//		return err // Redis did not answer PING within the timeouts
//	}
//	defer st.Close()                  // flushes buffered touches
//	_ = st.Put(ctx, rec)              // one round trip
//	_ = st.Touch(ctx, id, time.Now()) // memory only; one round trip per FlushInterval for all
//	go st.Subscribe(ctx, onEvent)     // every replica's events, its own included
//
// # Layout
//
// Every key starts with Options.Prefix (default "mcpgate:"):
//
//	<prefix>session:<id>  hash: record (the JSON of store.Record), idle and
//	                      deadline (copies for the expiry script), ts and tn
//	                      (the latest touch flushed since the last Put)
//	<prefix>sessions      sorted set of session ids, scored by the Unix ms
//	                      (Redis clock) at which their key expires, +inf if never
//	<prefix>counter:<n>   string: the counter's value (INCRBY)
//	<prefix>cap:<scope>   sorted set of the session ids counted under a
//	                      cluster-wide cap, scored by the Unix ms (Redis
//	                      clock) at which each stops counting unless touched
//	<prefix>capc:<scope>  the same ids, scored by when they were admitted
//	<prefix>capw:<scope>  hash: each counted id's holder (principal, or an
//	                      anonymous client's address), for fair eviction
//	<prefix>capo:<scope>  sorted set of holders, scored by how many ids each
//	                      has under the cap
//	<prefix>caph:<scope>\0<holder>, <prefix>caphc:<scope>\0<holder>
//	                      one holder's ids, scored as in cap: and capc:
//	<prefix>replica:<r>   string: the internal address replica r announced
//	                      (with a short TTL, renewed while it lives)
//	<prefix>epoch         string: a random value written at the first start,
//	                      and again (with its time) after Redis lost its data
//	<prefix>recovering    sorted set of the stores writing back their sessions
//	                      after a loss, scored by when their lease ends
//
// A session's hash also holds caps (the JSON array of the scopes it counts
// in) and owner (the replica running its process, for stdio routes).
//
// and events are JSON store.Event messages on the channel <prefix>events.
// Put, Delete and the touch flush are Lua scripts, so a
// session's key and its index entry change together: no reader, on any
// replica, sees one without the other.
//
// # Round trips
//
//	Open       2: PING and SCRIPT LOAD, pipelined (plus connecting); the epoch
//	Put        1: EVALSHA (replace hash, set TTL, index)
//	Get        1: HMGET
//	Touch      0: memory only; Get and List merge it at once
//	Delete     1: EVALSHA (caps, key and index entry together)
//	Admit      1: EVALSHA (expire, check, evict and announce, count)
//	Release    1: EVALSHA
//	Claim      1: EVALSHA (compare-and-set of the owner)
//	Announce   1: SET PX;  Replica 1: GET;  Retire 1: DEL
//	List       2 for up to 1000 records (index script; pipelined HMGETs),
//	           one more per further 1000, and one more when it finds index
//	           entries without a key (which it then removes)
//	Add        1: INCRBY
//	Ping       1: PING and GET of the epoch (the gateway's health check, once a second)
//	Settle     1: EVALSHA (epoch, recovering replicas, Redis's clock); more only
//	           while the store recovers from a loss of its data
//	Exists     1: EVALSHA (the record's presence and the epoch check)
//	Recount    1: EVALSHA
//	Publish    1: PUBLISH
//	Subscribe  a dedicated connection for as long as it runs; 1 round trip
//	           to subscribe, then pushed messages; PING after 15s of silence
//	flush      1 per FlushInterval if any Touch is pending (every pending
//	           touch, 100 per script call, all pipelined), 0 if none
//	Close      1 (the last flush), if touches are pending
//
// After Redis has lost its script cache (a restart), the first Put and
// List cost one more round trip (EVAL after NOSCRIPT), and the first flush
// two more (SCRIPT LOAD, then the flush again).
//
// # Rate limits
//
// NewWindow and NewBuckets make limiters (limits.UndoLimiter and
// limits.Limiter) whose state is here, so that every replica that makes
// one with the same name shares one budget. Each check is one script,
// atomic, so concurrent checks from any number of replicas never admit
// more than the limit; time is Redis's (TIME), never the caller's, so
// replicas with skewed clocks agree. Their keys, one per limited key:
//
//	<prefix>ratelimit:<name>:<key>
//	    Window: sorted set of admissions (members unique per check,
//	    scored by Redis time in µs), expiring a window after the last
//	    Buckets: string, the bucket's theoretical arrival time (GCRA, Redis
//	    time in µs), expiring when the bucket is full again
//
// so an idle key costs nothing; unlike the in-memory limiters there is no
// bound on the number of keys, only on how long an idle one lives. Round
// trips:
//
//	Window.Admit   1: EVALSHA (expire, count, admit or oldest's age)
//	Window.Undo    1: EVALSHA (expire, ZPOPMAX)
//	Buckets.Admit  1: EVALSHA (GET, compare, SET PX)
//
// These scripts are not loaded at Open: the first check of each kind, and
// the first after Redis lost its script cache, costs one more (EVAL after
// NOSCRIPT). A check that cannot reach Redis returns the error: refusing
// (fail closed) or falling back to a local limiter (fail open) is the
// caller's choice. Besides the commands below, an ACL user needs ZCARD,
// ZPOPMAX, GET and SET for them.
//
// # Durability
//
// When Put, Delete or Add returns nil, Redis has applied it: every replica
// sees it from then on, and a crash or restart of any gateway loses
// nothing. Touch is buffered: a gateway crash loses at most the last
// FlushInterval of activity time (plus a flush under way), never a
// session. Whether anything survives a crash or restart of Redis itself is
// Redis's persistence configuration's decision, not this package's:
//
//   - appendonly yes, appendfsync always: nothing acknowledged is lost
//     (and every write waits for a disk sync);
//   - appendonly yes, appendfsync everysec (Redis's default for AOF): up to
//     about a second of writes;
//   - RDB snapshots only (save ...): everything since the last snapshot;
//   - neither (save "" and appendonly no, as CI runs it): a Redis restart
//     loses every session and counter.
//
// Replication to a Redis replica is asynchronous, so a failover can also
// lose acknowledged writes. What the gateway may assume is therefore: a
// record it can Get is whole and was written by some Put (scripts are
// atomic; nothing is half applied); a record can vanish, as if its session
// had ended, if Redis loses data, and a client must then initialize again;
// counters can restart from zero. It must not assume that every
// acknowledged write is still there after Redis restarts.
//
// # Expiry
//
// The gateway decides when a session has expired (store.Record.Expired)
// and deletes it. Keys also expire in Redis, as a safety net for sessions
// nobody deletes (a replica that crashed, a client that left): a session
// key's TTL is max(IdleTimeout, Created+TTL-now) + Options.ExpiryMargin,
// set by Put and refreshed by every flush that carries a touch of the
// session; a record with neither an idle timeout nor a TTL does not
// expire. Its index entry is scored with the same expiry and List drops
// the entries whose time has passed. A Redis outage longer than a
// session's idle timeout plus the margin can let the key of a session that
// is still active on a replica (whose flushes fail) expire; the margin
// (default 1h) is there to make that unlikely.
//
// # Failures
//
// Every call is bounded: a new connection gets one attempt of DialTimeout,
// each request and reply WriteTimeout and ReadTimeout, waiting for a free
// pooled connection ReadTimeout+1s, and a deadline on ctx shortens them.
// Calls are not retried (a retried INCRBY whose reply was lost would count
// twice): while Redis is unreachable every method but Touch returns an
// error, promptly, and Touch keeps buffering (failed flushes keep their
// touches and are retried each interval; the first failure and the
// recovery are logged). After as many failed dials as the pool has
// connections, calls fail at once and the client probes Redis once a
// second, so service resumes within about a second of Redis coming back,
// with no need to reopen the store. Subscribe reconnects with backoff
// (100ms doubling to 5s, jittered) until its ctx ends; events published
// while it is disconnected are lost, which is why the records, not the
// events, are the truth. Close waits for calls in flight, flushes, and
// closes the connections; after it every method returns store.ErrClosed.
//
// go-redis's own logger is process-wide and writes to stderr; Open
// silences it, since every failure it reports reaches the caller as an
// error or is logged to Options.Logger.
//
// # Deployment
//
// One Redis server (5.0 or later), or an endpoint in front of its primary.
// Redis Cluster is not supported: a script touches a session key and the
// index, which would need to share a hash slot. Use maxmemory-policy
// noeviction: an eviction policy would drop sessions (the volatile-*
// policies prefer exactly these keys, which have TTLs). An ACL user needs
// the key pattern <prefix>*, the channel <prefix>events, and the commands
// PING, SCRIPT LOAD, EVAL, EVALSHA, HMGET, MULTI, EXEC, DEL, ZREM, INCRBY,
// PUBLISH, SUBSCRIBE, and those the scripts call (HSET, PEXPIRE, ZADD,
// ZRANGE, ZREMRANGEBYSCORE, EXISTS, TIME).
package redisstore
