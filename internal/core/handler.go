package core

import "context"

// Handler handles one message travelling in either direction. For a request
// it returns the response; for a notification or a response it returns
// (nil, nil) once the message has been passed on. An error is reported to
// the sender of a request as a JSON-RPC error (see AsError).
type Handler func(ctx context.Context, m *Message) (*Message, error)

// Interceptor wraps the next handler: it may inspect or rewrite the message,
// reject it by returning an error without calling next, or observe the
// response on the way back. Interceptors must be safe for concurrent use.
type Interceptor func(next Handler) Handler

// ClientNotifierKey is the context key under which the session a client
// request runs in offers a ClientNotifier to the chain (the frontend's
// target context answers it), so that a stage can tell the client
// something in the course of that request. Use NotifyClient.
type ClientNotifierKey struct{}

// ClientNotifier delivers a message the gateway makes (a notification)
// to the client, on the stream of the request in course, before its
// response.
type ClientNotifier interface {
	NotifyClient(m *Message)
}

// NotifyClient delivers m to the client of the request handled under
// ctx, and reports whether there was one to deliver it to.
func NotifyClient(ctx context.Context, m *Message) bool {
	n, _ := ctx.Value(ClientNotifierKey{}).(ClientNotifier)
	if n == nil {
		return false
	}
	n.NotifyClient(m)
	return true
}

// SessionNotifierKey is the context key under which the session a message
// runs in offers a SessionNotifier (the frontend's contexts answer it), so
// that a stage can send its client a message later, outside any request.
// Use SessionNotifierOf.
type SessionNotifierKey struct{}

// SessionNotifier delivers a message the gateway makes to the session's
// client as the server's messages outside any request go: through the
// server→client chain to the session's stream of its own (the legacy GET
// stream, or its backlog until one opens). A modern-era session has no
// such stream: there the message is dropped.
type SessionNotifier interface {
	Deliver(m *Message)
}

// SessionNotifierOf is the notifier of the session of the message handled
// under ctx; nil when there is none.
func SessionNotifierOf(ctx context.Context) SessionNotifier {
	n, _ := ctx.Value(SessionNotifierKey{}).(SessionNotifier)
	return n
}

// AfterResponseKey is the context key under which a client request's
// exchange offers to run something once its response has been delivered
// (written to the client, or the client gone). Use AfterResponse.
type AfterResponseKey struct{}

// AfterResponder runs fn once the response of the request in course has
// been delivered.
type AfterResponder interface {
	AfterResponse(fn func())
}

// AfterResponse has fn run once the response of the request handled under
// ctx is delivered, and reports whether it will; false when ctx offers no
// such hook (fn is not run).
func AfterResponse(ctx context.Context, fn func()) bool {
	a, _ := ctx.Value(AfterResponseKey{}).(AfterResponder)
	if a == nil {
		return false
	}
	a.AfterResponse(fn)
	return true
}
