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
