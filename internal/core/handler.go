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
