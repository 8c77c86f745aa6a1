// Package frontend is mcpgate's client-facing Streamable HTTP endpoint.
// One handler serves both protocol eras on every route path:
//
//   - legacy clients (2024-11-05 … 2025-11-25): initialize creates a
//     gateway session whose Mcp-Session-Id maps to an upstream connection;
//     POST carries requests, notifications and responses (batches for
//     2025-03-26), GET opens the session's stream for server-initiated
//     messages, DELETE ends the session; SSE streams are primed and
//     resumable with Last-Event-ID;
//   - modern clients (2026-07-28): every POST is stateless and validated
//     header against body and against the 2026-07-28 _meta and
//     Mcp-Param-* rules; mcpgate still correlates requests into a session
//     of its own, keyed by the Mcpgate-Session header it returns to the
//     request that created it (requests without a key share the session of
//     their client address; see modernsession.go).
//
// Before any of that, every request passes the listener's Host and Origin
// checks (DNS rebinding), method, Accept, Content-Type and body-size checks.
// Decoded messages go through the route's pipeline (interceptors) to the
// upstream; messages from the upstream come back through the same pipeline
// in the other direction and are written to the right client stream.
package frontend
