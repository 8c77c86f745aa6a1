package pipeline

import (
	"errors"
	"net/http"
	"time"

	"github.com/mcpgate/mcpgate/internal/core"
)

// EventKind says what an Event reports.
type EventKind uint8

const (
	// Refused: the gateway refused a request before the chain ran (Host or
	// Origin, method, media type, size, parse, authentication, session
	// look-up, caps, creation rate, store). The client got Err.
	Refused EventKind = iota + 1
	// Originated: a message the gateway made itself passed to the server,
	// or its answer came back, outside the chain: the replay of initialize
	// and notifications/initialized when an upstream session is
	// re-established, and what the era bridge and the HTTP upstream send
	// on their own (MRTR retries, the bridge's tools/list refresh, the
	// legacy side's initialize, notifications/cancelled). Origin names who.
	Originated
	// Decision: a stage decided on a message that passed the chain. The
	// policy stage: a request denied, its arguments refused, a list
	// filtered, what came back redacted or withheld (Policy and Rule say
	// what made the decision). The quota stage: a request refused before
	// the upstream was called, a result withheld, a call cut off at
	// call_timeout, a session ended at session_time, a warning at the soft
	// threshold (Quota and Limit say which, Usage and Max how far). Action
	// says what was done; Message is the message decided on, Err the error
	// the client got, if any.
	Decision
)

func (k EventKind) String() string {
	switch k {
	case Refused:
		return "refused"
	case Originated:
		return "originated"
	case Decision:
		return "decision"
	}
	return "unknown"
}

// Event is something a chain's observers see besides the messages that
// pass it. Fields that do not apply are zero.
type Event struct {
	Kind EventKind
	Time time.Time
	// Route is the route's name; "" when the request matched no route.
	Route string
	// Session is the session the event belongs to; nil before one exists
	// (or when the refused request named none, or one that is not known).
	Session *core.SessionInfo
	// Message is the decoded message when there is one: the refused
	// request, or the originated message (its Direction says which way).
	Message *core.Message
	// Err is the error the client was answered with (Refused).
	Err *core.Error
	// Check names the check that refused (Refused): see CheckOf.
	Check string
	// Origin names the part of the gateway that made an Originated
	// message: "reestablish", "bridge", "upstream".
	Origin string
	// Policy and Rule name what made a policy's Decision: the policy,
	// and the rule within it ("tools.deny[0]", "rules[1]",
	// "validate_input", "redact[0]:aws-access-key", "block[0]").
	Policy string
	Rule   string
	// Quota, Limit, Usage and Max describe a quota's Decision: the quota,
	// the limit ("requests", "tool:search", "result_bytes"), its usage and
	// its maximum.
	Quota string
	Limit string
	Usage int64
	Max   int64
	// Action is what a Decision did (see the Action constants).
	Action string
	// Request data of a Refused event: the HTTP method, the path, the
	// client address (as trusted-proxy rules derive it) and principal.
	HTTPMethod string
	Path       string
	RemoteAddr string
	Principal  string
	// Stage names the stage that made a Decision, and Reason says why in
	// words for the operator (a Decision reported through Env.Report).
	Stage  string
	Reason string
}

// Actions a Decision event names (Event.Action).
const (
	// The policy stage's.
	ActionDeny    = "deny"    // a request refused (tool, resource, prompt, rule)
	ActionInvalid = "invalid" // tools/call arguments failed the tool's inputSchema
	ActionFilter  = "filter"  // entries removed from a list result
	ActionRedact  = "redact"  // matches replaced in what came back
	ActionBlock   = "block"   // a result or notification withheld entirely
	// The quota stage's.
	ActionRefused     = "refused"      // a request refused before the upstream was called
	ActionWithheld    = "withheld"     // a result past a byte or token budget withheld
	ActionTimeout     = "timeout"      // a call cut off at call_timeout
	ActionSessionTime = "session_time" // the session ended at session_time
	ActionWarning     = "warning"      // usage reached warn_at
)

// ErrHijack is the cause (core.Error.Err) of the refusal of a request that
// named a session another principal owns: the client is answered as for an
// unknown session, and the event's Check is CheckHijack.
var ErrHijack = errors.New("session belongs to another principal")

// Checks a Refused event names (Event.Check).
const (
	CheckHost      = "host"       // Host not allowed on the listener (403)
	CheckOrigin    = "origin"     // Origin not allowed (403)
	CheckRoute     = "route"      // no MCP endpoint at the path (404)
	CheckMethod    = "method"     // HTTP method not allowed (405)
	CheckMedia     = "media_type" // Content-Type or Accept (415, 406)
	CheckSize      = "size"       // body or headers too large (413, 431)
	CheckParse     = "parse"      // not JSON-RPC (400 -32700/-32600)
	CheckAuth      = "auth"       // authentication failed (401, 403)
	CheckHijack    = "hijack"     // a session of another principal (answered 404)
	CheckSession   = "session"    // unknown, ended or foreign session (404)
	CheckCap       = "cap"        // a session cap is full (503 -32013)
	CheckRate      = "rate"       // a rate limit (429)
	CheckStore     = "store"      // the store could not answer (503)
	CheckProtocol  = "protocol"   // an era or protocol rule (400)
	CheckUpstream  = "upstream"   // the upstream side could not be opened (502)
	CheckInternal  = "internal"   // a gateway failure (500)
	CheckForbidden = "forbidden"  // other 403s
)

// CheckOf classifies an error the gateway refused a request with, by its
// HTTP status and JSON-RPC code, so refusal sites need not name their
// check.
func CheckOf(e *core.Error) string {
	switch status := e.HTTPStatus(); {
	case errors.Is(e.Err, ErrHijack):
		return CheckHijack
	case e.Code == core.CodeRateLimited || status == http.StatusTooManyRequests:
		return CheckRate
	case e.Code == core.CodeSessionCap:
		return CheckCap
	case e.Code == core.CodeSessionNotFound:
		return CheckSession
	case e.Code == core.CodeParseError:
		return CheckParse
	case status == http.StatusUnauthorized:
		return CheckAuth
	case status == http.StatusForbidden:
		return CheckForbidden
	case status == http.StatusNotFound:
		return CheckRoute
	case status == http.StatusMethodNotAllowed:
		return CheckMethod
	case status == http.StatusUnsupportedMediaType || status == http.StatusNotAcceptable:
		return CheckMedia
	case status == http.StatusRequestEntityTooLarge || status == http.StatusRequestHeaderFieldsTooLarge:
		return CheckSize
	case status == http.StatusServiceUnavailable:
		return CheckStore
	case status == http.StatusBadGateway:
		return CheckUpstream
	case status >= 500:
		return CheckInternal
	}
	return CheckProtocol
}
