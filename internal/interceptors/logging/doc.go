// Package logging is the interceptor that writes one structured log record
// per exchange: a request with its response and latency, or a
// notification. Records carry session (a fingerprint of the id, never the id), route, era, direction, method and
// tool (or resource) so one session's traffic can be followed. Successful
// exchanges log at debug, failures at warn; nothing is formatted when the
// level is disabled, so the interceptor costs almost nothing in production.
//
// Message bodies are never logged: they may hold secrets.
package logging
