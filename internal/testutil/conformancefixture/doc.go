// Package conformancefixture owns mcpgate's reference upstream for tests: a
// go-sdk MCP server that implements every tool, resource, resource template,
// prompt, completion, subscription and logging behaviour that the
// @modelcontextprotocol/conformance suite's server scenarios exercise.
//
// The same server answers both protocol eras:
//
//   - legacy dated versions (2025-03-26 … 2025-11-25) with an initialize
//     handshake and Mcp-Session-Id sessions, where sampling, elicitation and
//     roots travel as server-to-client requests on the session;
//   - the stateless 2026-07-28 era, where the same needs are expressed as
//     multi-round-trip (MRTR) input_required results whose requestState is
//     HMAC-protected by this server.
//
// Tools that need client input are written once, in the MRTR style; the
// go-sdk turns their input requests into real server-to-client requests when
// the caller speaks a legacy version, so a gateway in front of the fixture
// sees the native traffic of whichever era its client uses.
//
// Tests usually serve it over Streamable HTTP:
//
//	srv := httptest.NewServer(conformancefixture.Handler(t.Context(), false))
//
// and cmd/fixture runs it as a process, over stdio or HTTP. Options (and
// cmd/fixture's -watch-interval) tune it for tests: a test that waits for a
// change of WatchedResourceURI sets WatchedInterval small instead of waiting
// for the default 3 s tick. The fixture stops when the context it was made
// with is done; so does a test_wait_for_cancellation call still waiting then.
package conformancefixture
