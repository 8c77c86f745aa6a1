package bridge

import (
	"encoding/json"
	"errors"
	"slices"

	"github.com/mcpgate/mcpgate/internal/core"
)

// Keys of the modern era's _meta.
const (
	metaProtocolVersion = "io.modelcontextprotocol/protocolVersion"
	metaClientInfo      = "io.modelcontextprotocol/clientInfo"
	metaClientCaps      = "io.modelcontextprotocol/clientCapabilities"
	metaLogLevel        = "io.modelcontextprotocol/logLevel"
	metaServerInfo      = "io.modelcontextprotocol/serverInfo"
	metaSubscriptionID  = "io.modelcontextprotocol/subscriptionId"
)

// modernMetaKeys are the _meta members that only mean something in the
// modern era; a legacy server does not get them.
var modernMetaKeys = []string{metaProtocolVersion, metaClientInfo, metaClientCaps, metaLogLevel}

// Result types of the modern era.
const (
	resultComplete      = "complete"
	resultInputRequired = "input_required"
)

// object is a JSON object with its members kept raw, for rewriting one
// part of a message without touching the rest.
type object map[string]json.RawMessage

// parseObject reads a JSON object; absent or null is an empty object.
func parseObject(b []byte) (object, error) {
	o := object{}
	if len(b) == 0 || string(b) == "null" {
		return o, nil
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return nil, err
	}
	if o == nil {
		o = object{}
	}
	return o, nil
}

// sub returns member key as an object (empty if absent or not an object).
func (o object) sub(key string) object {
	s, err := parseObject(o[key])
	if err != nil {
		return object{}
	}
	return s
}

// set stores v (raw JSON if it is json.RawMessage or object) under key.
func (o object) set(key string, v any) {
	switch v := v.(type) {
	case json.RawMessage:
		o[key] = v
	case object:
		o[key] = v.encode()
	default:
		b, err := json.Marshal(v)
		if err != nil {
			panic(err) // only plain values are passed
		}
		o[key] = b
	}
}

// str returns member key as a string, "" if absent or not a string.
func (o object) str(key string) string {
	var s string
	if json.Unmarshal(o[key], &s) != nil {
		return ""
	}
	return s
}

// encode writes o with sorted keys and its members' values exactly as they
// are held: json.Marshal would re-escape <, > and & inside them (the same
// JSON values, not the same bytes), and the client's arguments and a
// server's requestState travel byte for byte.
func (o object) encode() []byte {
	keys := make([]string, 0, len(o))
	for k := range o {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b := []byte{'{'}
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = core.AppendJSONString(b, k)
		b = append(b, ':')
		b = append(b, o[k]...)
	}
	return append(b, '}')
}

// buildRequest makes a request message from its parts.
func buildRequest(id core.ID, method string, params object) (*core.Message, error) {
	raw := core.AppendJSONString([]byte(`{"jsonrpc":"2.0","id":`+string(id)+`,"method":`), method)
	if params != nil {
		raw = append(append(raw, `,"params":`...), params.encode()...)
	}
	return core.Decode(append(raw, '}'))
}

// buildNotification makes a notification message from its parts.
func buildNotification(method string, params object) (*core.Message, error) {
	var p []byte
	if params != nil {
		p = params.encode()
	}
	return core.Notification(method, p)
}

// withParams returns a copy of request or notification m whose params fn
// changed; routing fields are kept.
func withParams(m *core.Message, fn func(params object) error) (*core.Message, error) {
	params, err := parseObject(m.Params)
	if err != nil {
		return nil, err
	}
	if err := fn(params); err != nil {
		return nil, err
	}
	var out *core.Message
	if m.Kind == core.KindRequest {
		out, err = buildRequest(m.ID, m.Method, params)
	} else {
		out, err = buildNotification(m.Method, params)
	}
	if err != nil {
		return nil, err
	}
	out.Direction, out.Era, out.Session, out.Header, out.Received = m.Direction, m.Era, m.Session, m.Header, m.Received
	return out, nil
}

// withResult returns response m with its result changed by fn.
func withResult(m *core.Message, fn func(result object) error) (*core.Message, error) {
	if m.Kind != core.KindResponse {
		return nil, errors.New("bridge: not a result response")
	}
	res, err := parseObject(m.Result)
	if err != nil {
		return nil, err
	}
	if err := fn(res); err != nil {
		return nil, err
	}
	out := core.ResultResponse(m.ID, res.encode())
	out.Direction, out.Era, out.Session, out.Status = m.Direction, m.Era, m.Session, m.Status
	return out, nil
}

// asResponse gives resp the id of the request it answers (a retry, a
// request the bridge sent under its own id).
func asResponse(resp *core.Message, id core.ID) *core.Message {
	if resp.ID == id {
		return resp
	}
	var out *core.Message
	switch resp.Kind {
	case core.KindResponse:
		out = core.ResultResponse(id, resp.Result)
	case core.KindError:
		raw := []byte(`{"jsonrpc":"2.0","id":` + string(id) + `,"error":` + string(resp.Error) + `}`)
		m, err := core.Decode(raw)
		if err != nil {
			return resp
		}
		out = m
	default:
		return resp
	}
	out.Direction, out.Era, out.Session, out.Status = resp.Direction, resp.Era, resp.Session, resp.Status
	return out
}

// errorResponse answers request id with a JSON-RPC error.
func errorResponse(id core.ID, code int, msg string) *core.Message {
	return core.ErrorResponse(id, core.NewError(code, msg))
}
