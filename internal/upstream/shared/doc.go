// Package shared multiplexes the client sessions of a route over a few
// upstream sessions (HTTP) or processes (stdio): routes[].upstream.share
// above session.
//
// An Upstream wraps the route's real one. Each gateway session gets a
// virtual Conn; the sessions of one scope (the route, a tenant or a
// principal) whose initialize agrees on protocol version and
// capabilities share one real Conn, up to max_shared of them, and more
// real Conns open as needed. The first session's initialize goes
// upstream; the others are answered from its result, and only the first
// notifications/initialized is forwarded.
//
// What crosses the real Conn is rewritten so that no message of one
// client session reaches another: every request gets an id and progress
// token of its own (upstream.Isolate), restored on its response and
// progress; server requests and log messages go to the session whose
// request they belong to (the call they arrive with, the progress token
// their _meta names, or the one session that could have caused them —
// otherwise a request is refused and a message dropped, never guessed);
// a client may answer only the server requests it was sent. Resource
// subscriptions are kept per session (the upstream is subscribed once and
// unsubscribed when the last subscriber leaves; resources/updated goes to
// subscribers only), list_changed notifications go to every sharing
// session, logging/setLevel is answered per session (the upstream runs at
// the most verbose level any sharer asked for, and each session gets the
// messages at or above its own), and notifications/cancelled names the
// upstream's id. The real Conn closes when its last session leaves; when
// it ends on its own, every session on it is told.
//
// Modern-era (2026-07-28) requests carry their own capabilities and
// version, and server requests travel inside results: sharing is then
// id and token rewriting, and listen streams keep their subscription ids.
//
//	up := shared.New(stdioUpstream, shared.Options{Share: "route", MaxShared: 32})
package shared
