// Package stdio is the upstream for local MCP servers that speak the stdio
// transport: one child process per gateway session, newline-delimited
// JSON-RPC on its stdin and stdout, its stderr logged line by line (lines
// of at most 4 KiB, 100 at once and then 20 a second per process; the rest
// is read, counted and reported as stdio_stderr_dropped, so a process that
// floods stderr neither blocks on a full pipe nor floods the log).
//
// It owns the process's whole life: spawning it in its own process group
// with a filtered environment, framing (lines bounded by MaxMessageBytes,
// pretty-printed client JSON compacted before it is written), correlating
// responses with requests, routing what the server sends on its own to the
// request it belongs to or to the session's Sink, cancellation with
// notifications/cancelled, and the shutdown the spec asks for: close stdin,
// then SIGTERM to the group, then SIGKILL, always reaping the process.
//
//	up := stdio.New(stdio.Options{Command: "my-server"}, route.Name, logger)
//	info, err := up.Probe(ctx)          // server/discover once, cached
//	conn, err := up.Open(ctx, upstream.OpenParams{Session: s, Era: info.Era}, sink)
//	resp, err := conn.RoundTrip(ctx, req, related)
//	defer conn.Close(ctx)
//
// # Routing
//
// A response completes the pending request with its id. A
// notifications/progress whose progressToken equals (byte for byte) the
// _meta.progressToken of an in-flight request goes to that request's
// Related. A notification tagged with _meta
// "io.modelcontextprotocol/subscriptionId" goes to the in-flight
// subscriptions/listen request with that id, and so does a
// notifications/cancelled naming it (modern era). Any other
// notification or server request (sampling, elicitation, roots/list, ping,
// log messages) goes to the Related of the only client request in flight
// (not counting subscriptions/listen), if exactly one is. Everything else
// goes to Sink.Deliver: unmatched progress and subscription notifications,
// messages while zero or several requests are in flight, and messages for
// a request that has no Related or has already returned.
//
// Requests the gateway makes itself (the probe's server/discover, Ping) use
// string ids "mcpgate-<random>-<n>" and never reach the Sink.
//
// The package relies on process groups and a non-reaping wait (Linux) to
// signal a process safely; on other systems it falls back to signalling the
// process alone.
//
// # Crashes
//
// On Linux a child gets SIGKILL when mcpgate dies, however it dies (a
// parent-death signal, forked from threads that live as long as mcpgate:
// see startCmd). What the child started is not reached by that signal; a
// Recorder (UseRecorder) is told the identity of every process spawned
// and of its end, so that the gateway started next can end what is left
// of the groups a crashed one recorded (Reap).
//
// # Memory and CPU caps
//
// Sandbox.Memory and Sandbox.CPU are enforced by the gateway (caps.go):
// a cgroup v2 cgroup per process (memory.max, cpu.max; clone3 into it,
// removed at exit, memory.events oom_kill telling a cap's kill) where the
// gateway's cgroup can delegate the memory and cpu controllers, otherwise
// a sampler of /proc that sums the resident memory and CPU time of the
// process group every 250ms and kills the group over a cap (CPU: on
// average over 5s). Sampling can overshoot the memory cap by what the
// process allocates within one interval. A kill for a cap fails the
// Conn's requests, and tells its Sink, with an ExitError whose Cause
// wraps upstream.ErrResourceLimit (upstream.ResourceLimit names the cap).
//
// # The probe's process
//
// Probe's server/discover goes to a process that then serves the next
// Open, modern or (for a legacy server) legacy, so probing spawns nothing
// extra; see spare.go.
package stdio
