// Package sessiontools is the pipeline stage session_tools: the tools and
// resources mcpgate adds inside every session of a route with
// session_tools: true, and the upstream_health stage that tells the
// route's mcpgate://health how its upstream answers.
//
// Tools (names prefixed mcpgate_, so they cannot collide with the
// upstream's; an upstream tool so named is hidden from the client, with a
// warning logged once per route and name):
//
//   - mcpgate_session_status: the session's id fingerprint, age, idle
//     timeout and TTL, the usage of its quotas and when they reset, the
//     tools it denied itself;
//   - mcpgate_session_tighten: lower its own quota limits (the quota
//     stage enforces them, quota.Stage.Tighten), deny upstream tools for
//     itself (globs; the stage hides them from later tools/list pages and
//     answers a call to one with an isError result), shorten its idle
//     timeout or TTL. Never loosen: a request raising anything is refused
//     whole, with an isError result saying what and why;
//   - mcpgate_session_end: ends the session once its response is
//     delivered (core.AfterResponse).
//
// Resources (URIs mcpgate://..., likewise hidden from the upstream's
// lists): mcpgate://session (the status) and mcpgate://health (the
// route's upstream health as this gateway saw it, and the gateway's
// readiness). Both are subscribable: a legacy session subscribes with
// resources/subscribe (answered here) and gets
// notifications/resources/updated on the session's own stream; a modern
// one names them in subscriptions/listen's resourceSubscriptions, which
// the stage takes out of the request before it goes upstream and adds back
// to the acknowledgement, and gets the updates on that listen stream.
//
// The tools are merged into tools/list and the resources into
// resources/list on the last page (the one without nextCursor), so
// pagination is intact; a route whose upstream has neither gets them
// alone (the stage answers a -32601 list itself, and the initialize and
// server/discover results announce tools and resources).
package sessiontools
