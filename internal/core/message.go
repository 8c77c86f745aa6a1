package core

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Kind classifies a JSON-RPC message.
type Kind uint8

const (
	KindInvalid      Kind = iota
	KindRequest           // method and id
	KindNotification      // method, no id
	KindResponse          // id and result
	KindError             // id (possibly null) and error
)

func (k Kind) String() string {
	switch k {
	case KindRequest:
		return "request"
	case KindNotification:
		return "notification"
	case KindResponse:
		return "response"
	case KindError:
		return "error"
	}
	return "invalid"
}

// IsResponse reports whether k is a result or an error response.
func (k Kind) IsResponse() bool { return k == KindResponse || k == KindError }

// Direction says which way a message travels through the gateway.
type Direction uint8

const (
	// ClientToServer: from the client that called mcpgate towards the upstream.
	ClientToServer Direction = iota
	// ServerToClient: from the upstream towards the client.
	ServerToClient
)

func (d Direction) String() string {
	if d == ServerToClient {
		return "server_to_client"
	}
	return "client_to_server"
}

// ID is a JSON-RPC id in its encoded form (`1`, `"abc"`), or empty when the
// message has none. Keeping the encoding means an id is forwarded byte for
// byte and compared without decoding.
type ID string

// IsZero reports whether the message carried no id.
func (id ID) IsZero() bool { return id == "" }

// IsNull reports whether the id is JSON null (only legal on error responses
// to messages whose id could not be read).
func (id ID) IsNull() bool { return id == "null" }

// Message is one JSON-RPC message passing through mcpgate, decoded once.
//
// Raw holds the exact bytes received; the byte slices (Params, Result,
// Error, ProgressToken) alias it. A Message that no interceptor modifies is
// forwarded as Raw, so the upstream sees what the client sent. An
// interceptor that changes a message builds a new Raw (see Message.Replace)
// instead of writing into the old one.
type Message struct {
	Raw  []byte
	Kind Kind
	ID   ID
	// Method is set for requests and notifications.
	Method string
	// Name is params.name for tools/call and prompts/get, and params.uri for
	// resources/read, resources/subscribe and resources/unsubscribe.
	Name string
	// Params, Result and Error are the raw members, nil when absent.
	Params []byte
	Result []byte
	Error  []byte
	// ProgressToken is params._meta.progressToken of a request (raw, nil
	// when absent), and params.progressToken of a notifications/progress,
	// which names the request it reports on.
	ProgressToken []byte
	// MetaVersion is params._meta["io.modelcontextprotocol/protocolVersion"],
	// which marks a modern-era request.
	MetaVersion string
	// Meta says which of the modern era's per-request members params
	// holds (see MetaObject), so the gateway can enforce them without
	// decoding params again.
	Meta MetaFlags

	Direction Direction
	// Era is the era of the side the message came from.
	Era Era
	// Session is the gateway session the message belongs to; nil before a
	// session exists (the initialize request, a rejected request).
	Session *SessionInfo
	// Header carries transport headers that travel with a modern-era request
	// to the upstream (Mcp-Param-*); nil otherwise.
	Header http.Header
	// Received is when the gateway read the message.
	Received time.Time
	// Status is the HTTP status an upstream answered a modern-era request
	// with when that answer is an error response (400 for -32022, 404 for
	// -32601, ...), so the client sees the same; zero otherwise.
	Status int
	// RetryAfter is the delay the upstream named in a Retry-After header
	// with such an answer (429, 503); zero when it named none.
	RetryAfter time.Duration
}

// Replace swaps in a new encoding of the message, for interceptors that
// rewrite it. The parsed fields are refreshed from the new bytes; the
// routing fields (Direction, Era, Session, Header, Received) are kept.
func (m *Message) Replace(raw []byte) error {
	n, err := Decode(raw)
	if err != nil {
		return err
	}
	n.Direction, n.Era, n.Session, n.Header, n.Received = m.Direction, m.Era, m.Session, m.Header, m.Received
	*m = *n
	return nil
}

// MetaFlags record what a request's params._meta holds.
type MetaFlags uint8

const (
	// MetaObject: params._meta is present (the decoder refuses one that is
	// not an object).
	MetaObject MetaFlags = 1 << iota
	// MetaCapabilities: _meta["io.modelcontextprotocol/clientCapabilities"]
	// is present and an object.
	MetaCapabilities
)

// SessionInfo is what every message knows of its gateway session. The
// session manager owns the session; the fields here are fixed at creation,
// so interceptors may read them without locking.
type SessionInfo struct {
	// ID is the gateway session id the client presents (Mcp-Session-Id for
	// the legacy era, the Mcpgate-Session header for the modern era).
	ID string
	// Route is the name of the route the session was created on.
	Route string
	// Era is the client's era.
	Era Era
	// ProtocolVersion is the negotiated (legacy) or requested (modern) revision.
	ProtocolVersion string
	// Principal identifies the authenticated caller; "anonymous" without auth.
	Principal string
	// Tenant groups principals for quotas; empty when not configured.
	Tenant string
	// Groups and Claims are what the authentication step said of the
	// principal (group memberships; the credential's claims, JSON values),
	// for policies to read. Nil for an anonymous caller. They are fixed at
	// creation like every field here: readers must not modify them.
	Groups []string
	Claims map[string]any
	// RemoteAddr is the client address the session was created from: the
	// direct peer, or the address a trusted proxy forwarded for.
	RemoteAddr string
	// ClientName and ClientVersion come from clientInfo.
	ClientName    string
	ClientVersion string
	// Created is when the session was admitted.
	Created time.Time
	// Stages holds the pipeline stages' state for this session (see
	// pipeline.Stage.Session); nil for a message outside any session. A
	// pointer, so that SessionInfo stays safe to copy.
	Stages *StageHolder
}

// PrincipalKey is what a principal's sessions, caps and rate limits are
// counted under: the principal qualified by its tenant, so that principals
// of one name in two tenants never share a count (and one tenant can never
// exhaust another's). Without a tenant it is the principal itself. The
// tenant is path-escaped, so no two (tenant, principal) pairs share a key.
func PrincipalKey(tenant, principal string) string {
	if tenant == "" {
		return principal
	}
	return url.PathEscape(tenant) + "/" + principal
}

// StageHolder holds one session's pipeline stage state. The pipeline owns
// its contents; Load is lock-free, changes happen under Lock.
type StageHolder struct {
	mu    sync.Mutex
	cur   atomic.Pointer[StageState]
	ended bool
}

// Load returns the current state, nil before the first.
func (h *StageHolder) Load() *StageState { return h.cur.Load() }

// Lock and Unlock serialise changes of the state.
func (h *StageHolder) Lock()   { h.mu.Lock() }
func (h *StageHolder) Unlock() { h.mu.Unlock() }

// Store replaces the state; call it under Lock.
func (h *StageHolder) Store(s *StageState) { h.cur.Store(s) }

// End marks the session ended (under Lock): no state is made after it.
func (h *StageHolder) End() { h.ended = true; h.cur.Store(nil) }

// Ended reports whether End was called (under Lock).
func (h *StageHolder) Ended() bool { return h.ended }

// StageState is an immutable set of per-stage values, made by one chain
// (Owner).
type StageState struct {
	Owner  any
	Names  []string
	Values []any
}

// Get returns the value of the named stage.
func (s *StageState) Get(name string) (any, bool) {
	for i, n := range s.Names {
		if n == name {
			return s.Values[i], true
		}
	}
	return nil, false
}

// LogValue-friendly identity helpers live on the logging interceptor; core
// keeps SessionInfo a plain value.

// Fingerprint is what logs, metrics and error messages carry instead of a
// session id: the id is a bearer handle (anyone holding it can use or end the
// session), a fingerprint only tells sessions apart. It is the first 12 hex
// digits of the id's SHA-256; "" for "".
func Fingerprint(id string) string {
	if id == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:6])
}

// LogPrincipal is the session's principal for a log line; "" for nil.
func (s *SessionInfo) LogPrincipal() string {
	if s == nil {
		return ""
	}
	return s.Principal
}

// LogRoute is the session's route for a log line; "" for nil.
func (s *SessionInfo) LogRoute() string {
	if s == nil {
		return ""
	}
	return s.Route
}

// LogID is the session's fingerprint (see Fingerprint); "" for nil.
func (s *SessionInfo) LogID() string {
	if s == nil {
		return ""
	}
	return Fingerprint(s.ID)
}
