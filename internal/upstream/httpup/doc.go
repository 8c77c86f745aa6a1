// Package httpup is the client side of the Streamable HTTP transport
// towards an upstream MCP server, in both eras.
//
// An [Upstream] owns one connection pool (an *http.Transport) and the
// configured static headers, and finds the server's era once with
// server/discover ([Upstream.Probe]; cached, shared by concurrent callers).
// [Upstream.Open] returns an [upstream.Conn] for one gateway session:
//
//   - Legacy (2025-11-25 and earlier): an upstream session. RoundTrip posts
//     the client's message unchanged; the initialize exchange yields the
//     Mcp-Session-Id and the negotiated MCP-Protocol-Version, sent on every
//     later request. Responses come as JSON or SSE; server messages on a
//     request's stream go to the caller's Related; a stream the server ends
//     early (SSE polling) is resumed with GET and Last-Event-ID after its
//     retry delay. An abandoned request gets notifications/cancelled
//     (never initialize). Listen reads the GET stream into the Sink and
//     reconnects until Close, which sends DELETE. A 404 to the session is
//     upstream.ErrSessionLost (and Sink.Closed, once).
//   - Modern (2026-07-28): every RoundTrip is an independent POST with
//     MCP-Protocol-Version, Mcp-Method, Mcp-Name (=?base64?...?= when not
//     plain ASCII) and the forwarded Mcp-Param-* and trace headers. Closing
//     the response stream (ending ctx) is the cancellation.
//
// Every message handed out is stamped Direction ServerToClient, with the
// Conn's Era, the gateway Session and Received.
//
// The gateway never passes client credentials upstream: requests carry the
// configured headers; legacy requests nothing of the client's headers, and
// modern requests only what [upstream.ForwardHeaders] admits.
//
// # Upstream HTTP status of error responses
//
// When the upstream answers a request with a non-2xx status and a JSON-RPC
// error body (modern 400 -32022 or -32020, 404 -32601; a legacy server's
// own 4xx), RoundTrip returns that error response as the message, not as
// a Go error, with core.Message.Status set to the upstream's HTTP status
// (zero for responses that came with a 2xx), so the client-facing side can
// answer with the same status. An error response without an id (or with
// id null) is readdressed to the request's id. A non-2xx answer without a
// JSON-RPC error becomes a *core.Error with CodeUpstreamError and HTTP 502
// whose cause is an [*HTTPError] holding the upstream's status.
//
//	up, err := httpup.New(httpup.Options{URL: "https://mcp.example.com/mcp"}, "github", logger)
//	info, err := up.Probe(ctx) // EraModern or EraLegacy
//	conn, err := up.Open(ctx, upstream.OpenParams{Session: s, Era: info.Era}, sink)
//	resp, err := conn.RoundTrip(ctx, req, func(m *core.Message) { /* progress, logs */ })
//	if resp.Kind == core.KindError && resp.Status != 0 { /* answer with resp.Status */ }
//	_ = conn.Close(ctx)
package httpup
