package core

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"unicode/utf8"
)

// Well-known method names, interned so decoding them allocates nothing.
var methodNames = func() map[string]string {
	names := []string{
		"initialize", "notifications/initialized", "ping", "server/discover",
		"tools/list", "tools/call", "resources/list", "resources/read",
		"resources/templates/list", "resources/subscribe", "resources/unsubscribe",
		"prompts/list", "prompts/get", "completion/complete", "logging/setLevel",
		"sampling/createMessage", "elicitation/create", "roots/list",
		"subscriptions/listen", "notifications/cancelled", "notifications/progress",
		"notifications/message", "notifications/resources/updated",
		"notifications/resources/list_changed", "notifications/tools/list_changed",
		"notifications/prompts/list_changed", "notifications/roots/list_changed",
		"notifications/subscriptions/acknowledged", "notifications/elicitation/complete",
	}
	m := make(map[string]string, len(names))
	for _, n := range names {
		m[n] = n
	}
	return m
}()

// Meta keys of the modern era.
const (
	MetaProtocolVersion    = "io.modelcontextprotocol/protocolVersion"
	MetaClientCapabilities = "io.modelcontextprotocol/clientCapabilities"
	MetaClientInfo         = "io.modelcontextprotocol/clientInfo"
	MetaLogLevel           = "io.modelcontextprotocol/logLevel"
	MetaSubscriptionID     = "io.modelcontextprotocol/subscriptionId"
)

// IsBatch reports whether b holds a JSON array (a legacy batch) rather than
// a single message. It looks at the first non-space byte only.
func IsBatch(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '[':
			return true
		}
		return false
	}
	return false
}

// Decode parses one JSON-RPC message. It validates the JSON once and reads
// the envelope in a single pass with case-sensitive keys.
//
// Keys that differ from a significant key only by case ("Method",
// "params.Name") and duplicated significant keys are rejected: decoders
// differ on them (Go's encoding/json matches case-insensitively and keeps
// the last duplicate), so a gateway that accepted them could enforce a
// policy on one value while the upstream acts on another.
//
// Errors are *Error with CodeParseError (invalid JSON) or
// CodeInvalidRequest (valid JSON that is not a JSON-RPC 2.0 message).
func Decode(b []byte) (*Message, error) {
	if err := validJSON(b); err != nil {
		return nil, err
	}
	m := new(Message)
	if err := decodeValid(b, m); err != nil {
		return nil, err
	}
	return m, nil
}

// DecodeBatch parses a JSON array of messages (a 2025-03-26 batch).
func DecodeBatch(b []byte) ([]*Message, error) {
	if err := validJSON(b); err != nil {
		return nil, err
	}
	s := scanner{b: b}
	s.ws()
	if s.i >= len(b) || b[s.i] != '[' {
		return nil, NewError(CodeInvalidRequest, "invalid request: expected a JSON array")
	}
	s.i++
	var out []*Message
	for {
		s.ws()
		if b[s.i] == ']' {
			break
		}
		start := s.i
		s.skipValue()
		m := new(Message)
		if err := decodeValid(b[start:s.i], m); err != nil {
			return nil, err
		}
		out = append(out, m)
		s.ws()
		if b[s.i] == ',' {
			s.i++
		}
	}
	if len(out) == 0 {
		return nil, NewError(CodeInvalidRequest, "invalid request: empty batch")
	}
	return out, nil
}

// validJSON accepts only valid JSON in valid UTF-8. encoding/json takes
// invalid UTF-8 and decodes it as U+FFFD, so a gateway reading raw bytes
// and an upstream decoding them would see different strings.
func validJSON(b []byte) error {
	if !utf8.Valid(b) {
		return NewError(CodeParseError, "parse error: body is not valid UTF-8")
	}
	if !json.Valid(b) {
		return NewError(CodeParseError, "parse error: body is not valid JSON")
	}
	return nil
}

const (
	seenJSONRPC = 1 << iota
	seenID
	seenMethod
	seenParams
	seenResult
	seenError
)

var topKeys = [...]string{"jsonrpc", "id", "method", "params", "result", "error"}

func decodeValid(b []byte, m *Message) error {
	s := scanner{b: b}
	s.ws()
	if b[s.i] != '{' {
		return NewError(CodeInvalidRequest, "invalid request: a JSON-RPC message is a JSON object")
	}
	m.Raw = b
	var seen uint8
	var version []byte
	var idRaw []byte
	err := s.object(func(key []byte, vs, ve int) error {
		bit := uint8(0)
		switch string(key) {
		case "jsonrpc":
			bit = seenJSONRPC
			version = b[vs:ve]
		case "id":
			bit = seenID
			idRaw = b[vs:ve]
		case "method":
			bit = seenMethod
			str, ok := stringValue(b[vs:ve])
			if !ok {
				return NewError(CodeInvalidRequest, "invalid request: method must be a string")
			}
			m.Method = str
		case "params":
			bit = seenParams
			m.Params = b[vs:ve]
		case "result":
			bit = seenResult
			m.Result = b[vs:ve]
		case "error":
			bit = seenError
			m.Error = b[vs:ve]
		default:
			for _, k := range topKeys {
				if strings.EqualFold(string(key), k) {
					return NewError(CodeInvalidRequest, "invalid request: member "+quoteKey(key)+" differs from \""+k+"\" only by case")
				}
			}
			return nil
		}
		if seen&bit != 0 {
			return NewError(CodeInvalidRequest, "invalid request: duplicate member \""+topKeys[bitIndex(bit)]+"\"")
		}
		seen |= bit
		return nil
	})
	if err != nil {
		return err
	}
	if string(version) != `"2.0"` {
		return NewError(CodeInvalidRequest, `invalid request: "jsonrpc" must be "2.0"`)
	}
	if idRaw != nil {
		switch idRaw[0] {
		case '"':
		case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			if !integerID(idRaw) {
				return NewError(CodeInvalidRequest, "invalid request: id must be a string or an integer")
			}
		case 'n':
			if seen&seenError == 0 {
				return NewError(CodeInvalidRequest, "invalid request: id must not be null")
			}
		default:
			return NewError(CodeInvalidRequest, "invalid request: id must be a string or a number")
		}
		m.ID = ID(idRaw)
	}
	switch {
	case seen&seenMethod != 0:
		if seen&(seenResult|seenError) != 0 {
			return NewError(CodeInvalidRequest, "invalid request: a message has either a method or a result/error")
		}
		if m.Method == "" {
			return NewError(CodeInvalidRequest, "invalid request: method must not be empty")
		}
		if m.Params != nil && m.Params[0] != '{' && m.Params[0] != '[' {
			return NewError(CodeInvalidRequest, "invalid request: params must be an object or an array")
		}
		if m.ID != "" {
			m.Kind = KindRequest
		} else {
			m.Kind = KindNotification
		}
		if m.Params != nil && m.Params[0] == '{' {
			return decodeParams(m)
		}
	case seen&seenResult != 0:
		if seen&seenError != 0 {
			return NewError(CodeInvalidRequest, "invalid request: a response has either a result or an error")
		}
		if m.ID == "" || m.ID.IsNull() {
			return NewError(CodeInvalidRequest, "invalid request: a response needs the id of its request")
		}
		m.Kind = KindResponse
	case seen&seenError != 0:
		if m.Error[0] != '{' {
			return NewError(CodeInvalidRequest, "invalid request: error must be an object")
		}
		if m.ID == "" {
			return NewError(CodeInvalidRequest, "invalid request: an error response needs an id (null when unknown)")
		}
		m.Kind = KindError
	default:
		return NewError(CodeInvalidRequest, "invalid request: neither method nor result nor error")
	}
	return nil
}

// integerID reports whether a JSON number is an integer a JSON-RPC peer can
// echo exactly: no fraction, no exponent, within int64. MCP ids are strings
// or integers; 1.5 or 1e999 would be read differently (or refused) by the
// upstream, which is the client's error, not the upstream's.
func integerID(v []byte) bool {
	neg := len(v) > 0 && v[0] == '-'
	if neg {
		v = v[1:]
	}
	if len(v) == 0 {
		return false
	}
	// Accumulate negatively: -9223372036854775808 fits, its opposite does not.
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return false
		}
		d := int64(c - '0')
		if n < (math.MinInt64+d)/10 {
			return false
		}
		n = n*10 - d
	}
	return neg || n != math.MinInt64
}

// decodeParams reads the members of params that routing and policy need.
func decodeParams(m *Message) error {
	wantName := ""
	switch m.Method {
	case "tools/call", "prompts/get":
		wantName = "name"
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		wantName = "uri"
	}
	// A progress notification names its request by params.progressToken
	// (not in _meta): routing it needs the token, so it is read here too.
	progress := m.Method == "notifications/progress"
	s := scanner{b: m.Params}
	var seenName, seenMeta, seenToken bool
	return s.object(func(key []byte, vs, ve int) error {
		v := m.Params[vs:ve]
		switch {
		case progress && string(key) == "progressToken":
			if seenToken {
				return NewError(CodeInvalidRequest, "invalid request: duplicate params.progressToken")
			}
			seenToken = true
			m.ProgressToken = v
		case wantName != "" && string(key) == wantName:
			if seenName {
				return NewError(CodeInvalidRequest, "invalid request: duplicate params."+wantName)
			}
			seenName = true
			str, ok := stringValue(v)
			if !ok {
				return NewError(CodeInvalidParams, "invalid params: params."+wantName+" must be a string")
			}
			m.Name = str
		case string(key) == "_meta":
			if seenMeta {
				return NewError(CodeInvalidRequest, "invalid request: duplicate params._meta")
			}
			seenMeta = true
			if v[0] != '{' {
				return NewError(CodeInvalidParams, "invalid params: params._meta must be an object")
			}
			m.Meta |= MetaObject
			return decodeMeta(m, v, progress)
		case wantName != "" && strings.EqualFold(string(key), wantName),
			progress && strings.EqualFold(string(key), "progressToken"),
			strings.EqualFold(string(key), "_meta"):
			return NewError(CodeInvalidRequest, "invalid request: params member "+quoteKey(key)+" differs from a significant member only by case")
		}
		return nil
	})
}

// decodeMeta reads params._meta. In a progress notification (progress)
// the token is params.progressToken, so _meta's is not read.
func decodeMeta(m *Message, meta []byte, progress bool) error {
	s := scanner{b: meta}
	return s.object(func(key []byte, vs, ve int) error {
		v := meta[vs:ve]
		switch string(key) {
		case "progressToken":
			if progress {
				return nil
			}
			if m.ProgressToken != nil {
				return NewError(CodeInvalidRequest, "invalid request: duplicate _meta.progressToken")
			}
			m.ProgressToken = v
		case MetaProtocolVersion:
			if m.MetaVersion != "" {
				return NewError(CodeInvalidRequest, "invalid request: duplicate _meta protocol version")
			}
			str, ok := stringValue(v)
			if !ok || str == "" {
				return NewError(CodeInvalidParams, "invalid params: _meta protocol version must be a non-empty string")
			}
			m.MetaVersion = str
		case MetaClientCapabilities:
			if v[0] == '{' {
				m.Meta |= MetaCapabilities
			}
		}
		return nil
	})
}

func bitIndex(bit uint8) int {
	i := 0
	for bit > 1 {
		bit >>= 1
		i++
	}
	return i
}

func quoteKey(k []byte) string {
	if len(k) > 64 {
		k = k[:64]
	}
	q, _ := json.Marshal(string(k))
	return string(q)
}

// stringValue returns the Go string of a JSON string token. Common method
// names come back interned; strings with escapes are unescaped.
func stringValue(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' {
		return "", false
	}
	inner := v[1 : len(v)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		if s, ok := methodNames[string(inner)]; ok {
			return s, true
		}
		return string(inner), true
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", false
	}
	return s, true
}

// scanner walks JSON that json.Valid has accepted, so it can skip values
// without re-checking their grammar.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

// object calls fn for each member of the object at s.i with the key
// (unescaped when needed) and the value's bounds.
func (s *scanner) object(fn func(key []byte, vs, ve int) error) error {
	s.ws()
	s.i++ // '{'
	for {
		s.ws()
		if s.b[s.i] == '}' {
			s.i++
			return nil
		}
		ks := s.i
		s.skipString()
		key := s.b[ks+1 : s.i-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			var k string
			if err := json.Unmarshal(s.b[ks:s.i], &k); err != nil {
				return NewError(CodeParseError, "parse error: bad member name")
			}
			key = []byte(k)
		}
		s.ws()
		s.i++ // ':'
		s.ws()
		vs := s.i
		s.skipValue()
		if err := fn(key, vs, s.i); err != nil {
			return err
		}
		s.ws()
		if s.b[s.i] == ',' {
			s.i++
		}
	}
}

func (s *scanner) skipString() {
	s.i++ // opening quote
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '\\':
			s.i += 2
		case '"':
			s.i++
			return
		default:
			s.i++
		}
	}
}

func (s *scanner) skipValue() {
	switch s.b[s.i] {
	case '"':
		s.skipString()
	case '{', '[':
		depth := 0
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case '"':
				s.skipString()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					s.i++
					return
				}
			}
			s.i++
		}
	default:
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				return
			}
			s.i++
		}
	}
}
