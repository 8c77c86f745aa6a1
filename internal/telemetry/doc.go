// Package telemetry makes OpenTelemetry spans of the traffic mcpgate
// proxies and exports them over OTLP (telemetry.otlp.endpoint).
//
// A route's chain gets two stages when tracing is on, none when it is off
// (so that an off gateway does no tracer work at all):
//
//   - "tracing", outermost: a server span per client request, from the
//     moment the request enters the chain to the moment its response leaves
//     it. Its parent is the client's W3C trace context, read from
//     params._meta (traceparent, tracestate, baggage) or, without one
//     there, from the request's HTTP headers. Policy and quota decisions
//     on the request (pipeline.Decision events) become events of the span.
//   - "tracing_upstream", innermost: a client span per request sent to the
//     upstream, child of the server span. Its context replaces whatever
//     trace context the client sent, in params._meta and in the trace
//     headers that travel with the request (Traceparent, Tracestate,
//     Baggage), so the upstream — HTTP, stdio, or through the era bridge,
//     which carries both across — sees the gateway's span as its parent.
//
// Spans carry the route, method, tool or prompt name, the session's log id
// (a fingerprint, never the session id itself), the principal, tenant and
// era; never arguments, results, tokens or configured secrets.
package telemetry
