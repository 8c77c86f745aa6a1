// Package quota is the quota half of the pipeline stage limits: the
// budgets of quotas[] (requests, tool calls, calls per tool, result tokens
// and bytes, requests in flight, call_timeout, session_time), counted per
// session, principal or tenant with the meter package.
//
// Where each limit is counted, for a client request of a session:
//
//   - before the upstream is called: session_time (past it the session
//     ends with reason quota), then every quota that applies reserves its
//     charges at once: requests, tool_calls and tools (exact), concurrent
//     (held until the response), and for a request whose result carries
//     content (tools/call, resources/read, prompts/get) an estimate of its
//     bytes and tokens. A refusal takes nothing from any quota;
//   - call_timeout bounds the round trip (the upstream gets
//     notifications/cancelled, as for the route's request_timeout);
//   - on the response: the result's bytes (its result member) and tokens
//     (its text content) replace the estimates; a result that would exceed
//     a budget is withheld and replaced by the refusal.
//
// A refusal tells the agent what it can act on: which quota, which limit,
// the usage and when it resets. A tools/call gets a tool result with
// isError (the model reads it); other requests get JSON-RPC -32013 with
// the same fields in data. At warn_at the client gets one
// notifications/message (level warning) per session and limit. Every such
// decision is logged, counted (mcpgate_quota_*) and reported to the
// route's observers as a pipeline.Decision event.
package quota
