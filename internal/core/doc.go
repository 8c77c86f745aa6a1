// Package core is mcpgate's vocabulary: the one message type every other
// package speaks, its decoder, the handler and interceptor shapes of the
// pipeline, protocol versions and eras, and the typed error that carries a
// JSON-RPC code together with the HTTP status a client should see.
//
// Core imports nothing else from mcpgate; every other package may import it.
//
//	m, err := core.Decode(body)        // one pass, case-sensitive keys
//	if err != nil { ... }              // *core.Error: -32700 or -32600, HTTP 400
//	m.Direction = core.ClientToServer
//	resp, err := handler(ctx, m)       // a pipeline built from interceptors
package core
