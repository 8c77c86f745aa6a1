package core

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
)

// JSON-RPC and MCP error codes.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternalError  = -32603

	// CodeRequestTimeout is what the reference SDKs use for a request that
	// timed out; mcpgate uses it for the same.
	CodeRequestTimeout = -32001
	// CodeUpstreamError marks a failure reaching or talking to the upstream
	// (implementation-defined server error range).
	CodeUpstreamError = -32010
	// CodeSessionNotFound answers an unknown or ended session id (HTTP 404).
	CodeSessionNotFound = -32011
	// CodeRateLimited refuses a request or a session creation over a rate
	// limit (HTTP 429 with Retry-After).
	CodeRateLimited = -32012
	// CodeSessionCap refuses a session because a cap is full (HTTP 503
	// with Retry-After).
	CodeSessionCap = -32013
	// CodeUnauthorized refuses a request without valid credentials where
	// the route requires them (HTTP 401 with a WWW-Authenticate challenge).
	CodeUnauthorized = -32014
	// CodeForbidden refuses a request whose credentials lack a permission
	// it needs, an OAuth scope (HTTP 403, WWW-Authenticate
	// error="insufficient_scope").
	CodeForbidden = -32015
	// CodeNoCredential refuses a request the gateway cannot send upstream
	// for lack of a credential of the caller's own (per-principal
	// upstream credentials: none configured for the principal, no token
	// to exchange, the header to forward missing, or the token service
	// refused the caller's token). HTTP 403: the gateway refuses; the
	// upstream was not asked.
	CodeNoCredential = -32016
	// CodePolicyDenied refuses a request a configured policy does not
	// allow (a resource, a prompt, a rule); the error's data names the
	// policy and the rule. A tools/call refused by a policy gets a tool
	// result with isError instead, which a model can read.
	CodePolicyDenied = -32017
	// CodeUpstreamUnavailable refuses a request without sending it
	// because the route's upstream is failing: its circuit breaker is open
	// (or half-open with its probes taken). HTTP 503 with Retry-After; the
	// data names the route and when the upstream is tried again.
	CodeUpstreamUnavailable = -32018

	// Modern-era codes (2026-07-28).
	CodeHeaderMismatch             = -32020
	CodeMissingRequiredCapability  = -32021
	CodeUnsupportedProtocolVersion = -32022
	CodeLegacyResourceNotFound     = -32002
	CodeURLElicitationRequired     = -32042
)

// Error is a failure with everything needed to report it: the JSON-RPC
// code and message, optional data, and the HTTP status (and headers) the
// client-facing transport uses when the error ends the HTTP exchange.
type Error struct {
	Code    int
	Message string
	// Data is encoded as the error's data member when non-nil.
	Data any
	// Status is the HTTP status; zero means "derive from Code".
	Status int
	// Header is added to the HTTP response (Retry-After, Allow, ...).
	Header http.Header
	// Err is the cause, for errors.Is/As and logs; it never reaches the client.
	Err error
}

// NewError returns an *Error with the given code and message.
func NewError(code int, msg string) *Error { return &Error{Code: code, Message: msg} }

func (e *Error) Error() string {
	s := "jsonrpc " + strconv.Itoa(e.Code) + ": " + e.Message
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// WithStatus returns e with an explicit HTTP status.
func (e *Error) WithStatus(status int) *Error { e.Status = status; return e }

// WithData returns e carrying data.
func (e *Error) WithData(data any) *Error { e.Data = data; return e }

// Wrap returns e with a cause.
func (e *Error) Wrap(err error) *Error { e.Err = err; return e }

// HTTPStatus is the status to answer with when this error ends an HTTP
// exchange before any JSON-RPC response could be streamed.
func (e *Error) HTTPStatus() int {
	if e.Status != 0 {
		return e.Status
	}
	switch e.Code {
	case CodeParseError, CodeInvalidRequest, CodeInvalidParams, CodeHeaderMismatch,
		CodeMissingRequiredCapability, CodeUnsupportedProtocolVersion:
		return http.StatusBadRequest
	case CodeMethodNotFound:
		return http.StatusNotFound
	case CodeSessionNotFound:
		return http.StatusNotFound
	case CodeUpstreamError:
		return http.StatusBadGateway
	case CodeRequestTimeout:
		return http.StatusGatewayTimeout
	case CodeRateLimited:
		return http.StatusTooManyRequests
	case CodeSessionCap, CodeUpstreamUnavailable:
		return http.StatusServiceUnavailable
	case CodeUnauthorized:
		return http.StatusUnauthorized
	case CodeForbidden, CodeNoCredential, CodePolicyDenied:
		return http.StatusForbidden
	}
	return http.StatusInternalServerError
}

// AsError converts any error to an *Error; errors that are not one become
// an internal error whose message does not leak the cause.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeInternalError, Message: "internal error", Err: err}
}

// AppendErrorResponse appends the JSON-RPC error response for id (JSON null
// when id is zero) to dst.
func AppendErrorResponse(dst []byte, id ID, e *Error) []byte {
	dst = append(dst, `{"jsonrpc":"2.0","id":`...)
	if id.IsZero() {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, id...)
	}
	dst = append(dst, `,"error":{"code":`...)
	dst = strconv.AppendInt(dst, int64(e.Code), 10)
	dst = append(dst, `,"message":`...)
	msg, _ := json.Marshal(e.Message)
	dst = append(dst, msg...)
	if e.Data != nil {
		if data, err := json.Marshal(e.Data); err == nil {
			dst = append(dst, `,"data":`...)
			dst = append(dst, data...)
		}
	}
	return append(dst, "}}"...)
}

// ErrorResponse builds the error response message for a request.
func ErrorResponse(id ID, e *Error) *Message {
	raw := AppendErrorResponse(nil, id, e)
	m, err := Decode(raw)
	if err != nil { // unreachable: AppendErrorResponse writes valid JSON-RPC
		return &Message{Raw: raw, Kind: KindError, ID: "null"}
	}
	return m
}

// ResultResponse builds a success response carrying the encoded result.
func ResultResponse(id ID, result []byte) *Message {
	const envelope = len(`{"jsonrpc":"2.0","id":`) + len(`,"result":`) + len(`}`)
	raw := make([]byte, 0, len(result)+len(id)+envelope)
	raw = append(raw, `{"jsonrpc":"2.0","id":`...)
	raw = append(raw, id...)
	raw = append(raw, `,"result":`...)
	raw = append(raw, result...)
	raw = append(raw, '}')
	return &Message{Raw: raw, Kind: KindResponse, ID: id, Result: raw[len(raw)-1-len(result) : len(raw)-1]}
}

// Notification builds a notification with encoded params (nil for none).
// It fails only for params that are not a JSON object or array.
func Notification(method string, params []byte) (*Message, error) {
	raw := make([]byte, 0, len(params)+len(method)+40)
	raw = append(raw, `{"jsonrpc":"2.0","method":`...)
	q, _ := json.Marshal(method)
	raw = append(raw, q...)
	if params != nil {
		raw = append(raw, `,"params":`...)
		raw = append(raw, params...)
	}
	raw = append(raw, '}')
	return Decode(raw)
}

// ErrorCode reads the code of an error response, or 0.
func (m *Message) ErrorCode() int {
	if m.Kind != KindError {
		return 0
	}
	var e struct {
		Code int `json:"code"`
	}
	_ = json.Unmarshal(m.Error, &e)
	return e.Code
}
