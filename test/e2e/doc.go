// Package e2e runs real MCP peers through a real mcpgate: go-sdk clients and
// servers pinned to every protocol revision, the npm reference server and
// TypeScript client, and the official conformance suite. Nothing is mocked.
package e2e
