// Package e2e runs real MCP peers through a real mcpgate: go-sdk clients and
// servers pinned to every protocol revision, the npm reference server and
// TypeScript client, and the official conformance suite. Nothing is mocked.
//
// Tests run in parallel (six at a time unless -parallel says otherwise; see
// raiseParallel), each with its own gateway, upstream, ports and Redis key
// prefix. The few that measure the test process itself (descriptors,
// goroutines, call latency) are not parallel, and so run before the others.
package e2e
