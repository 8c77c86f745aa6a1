package frontend

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/mcpgate/mcpgate/internal/catalog"
	"github.com/mcpgate/mcpgate/internal/core"
)

// The 2026-07-28 request rules the gateway enforces itself, whatever the
// upstream is: a modern stdio server, or one bridged from the legacy era,
// may not check them (or answer them as a legacy server would), and a
// client must get the same answer through mcpgate from every route.

func invalidParams(msg string) *core.Error {
	return core.NewError(core.CodeInvalidParams, "invalid params: "+msg).WithStatus(http.StatusBadRequest)
}

// checkModernRequest applies the per-request _meta rules: every request
// carries params._meta with the protocol version and the client's
// capabilities (clientInfo is a SHOULD and is not required). A violation
// is 400 with -32602.
func checkModernRequest(m *core.Message) *core.Error {
	switch {
	case m.Kind != core.KindRequest:
		return nil
	case m.Meta&core.MetaObject == 0:
		return invalidParams("params._meta is required in protocol version 2026-07-28")
	case m.MetaVersion == "":
		return invalidParams(`_meta["` + core.MetaProtocolVersion + `"] is required`)
	case m.Meta&core.MetaCapabilities == 0:
		return invalidParams(`_meta["` + core.MetaClientCapabilities + `"] is required and must be an object`)
	}
	return nil
}

// checkParamHeaders verifies the Mcp-Param-* headers of a tools/call
// against its arguments, for a tool whose top-level x-mcp-header bindings
// the session's catalog knows: every bound
// argument present in the body has its header, with the same value
// (decoded from =?base64?…?= when so wrapped), and no bound header comes
// without its argument. A mismatch is 400 with -32020. A tool the
// session's catalog does not know is looked up in route, what any session
// of the route last listed (nil: none).
func checkParamHeaders(cat, route *catalog.Catalog, h http.Header, m *core.Message) *core.Error {
	if m.Method != "tools/call" || m.Name == "" {
		return nil
	}
	t := cat.Tool(m.Name)
	if t == nil && route != nil {
		t = route.Tool(m.Name)
	}
	if t == nil || len(t.Headers) == 0 {
		return nil
	}
	var params struct {
		Arguments map[string]json.RawMessage `json:"arguments"`
	}
	_ = json.Unmarshal(m.Params, &params)
	for _, b := range t.Headers {
		if len(b.Path) != 1 {
			continue // only top-level arguments are checked here
		}
		arg := b.Path[0]
		name := "Mcp-Param-" + b.Header
		vals := h.Values(name)
		raw, present := params.Arguments[arg]
		switch {
		case !present && len(vals) == 0:
			continue
		case !present:
			return headerMismatch(name + " header is present but the body has no argument " + strconv.Quote(arg))
		case len(vals) == 0:
			return headerMismatch(name + " header is required: the body has argument " + strconv.Quote(arg))
		case len(vals) > 1:
			return headerMismatch(name + " header must appear exactly once")
		}
		want, ok := headerForm(raw)
		if !ok {
			continue // not a primitive: nothing a header can mirror
		}
		got, ok := decodeHeaderValue(vals[0])
		if !ok {
			return headerMismatch(name + " header has an invalid base64 value")
		}
		if got != want {
			return headerMismatch(name + " header value " + strconv.Quote(vals[0]) + " does not match argument " + strconv.Quote(arg))
		}
	}
	return nil
}

// headerForm is the header text of a primitive argument: a string as
// itself, a number or boolean as its JSON text.
func headerForm(raw json.RawMessage) (string, bool) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return "", false
	}
	switch v.(type) {
	case float64, bool:
		return strings.TrimSpace(string(raw)), true
	}
	return "", false
}
