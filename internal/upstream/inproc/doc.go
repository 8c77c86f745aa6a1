// Package inproc is the upstream kind of a go-sdk *mcp.Server that runs
// in the gateway's own process: the library's embedded server.
//
// Each gateway session gets its own server session, connected through an
// in-memory go-sdk Transport (a Connection of two channels, no socket and no
// newline framing): what the frontend sends is decoded once into the
// go-sdk's jsonrpc.Message, and what the server writes is encoded once and
// read by the gateway's one-pass decoder. Server messages are routed to the
// request they belong to as on a stdio channel (one ordered channel per
// session): responses by id, progress by token, modern subscription
// notifications by the listen request's id, anything else to the only
// client request in flight, else to the session's Sink.
//
// The era is probed like a stdio server's: server/discover on a server
// session of its own, so a server built with SupportedProtocolVersions of
// one era only is served to clients of the other through the bridge.
package inproc
