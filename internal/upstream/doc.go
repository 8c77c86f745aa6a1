// Package upstream defines how mcpgate talks to the MCP server behind a
// route. An Upstream is the configured server (probed once for its era); a
// Conn is one gateway session's connection to it: an upstream session over
// Streamable HTTP, or a spawned stdio process.
//
// Subpackages implement it: upstream/httpup (remote Streamable HTTP, both
// eras) and upstream/stdio (a child process per session). The gateway only
// sees these interfaces, so it treats both the same way.
package upstream
