package frontend

import (
	"encoding/json"
	"net/http"

	"github.com/mcpgate/mcpgate/internal/core"
)

// The 2026-07-28 request rules the gateway enforces itself, whatever the
// upstream is: a modern stdio server, or one bridged from the legacy era,
// may not check them (or answer them as a legacy server would), and a
// client must get the same answer through mcpgate from every route.

const (
	metaProtocolVersion = "io.modelcontextprotocol/protocolVersion"
	metaClientCaps      = "io.modelcontextprotocol/clientCapabilities"
)

func invalidParams(msg string) *core.Error {
	return core.NewError(core.CodeInvalidParams, "invalid params: "+msg).WithStatus(http.StatusBadRequest)
}

// checkModernRequest applies the per-request _meta rules: every request
// carries params._meta with the protocol version and the client's
// capabilities (clientInfo is a SHOULD and is not required). A violation
// is 400 with -32602.
func checkModernRequest(m *core.Message) *core.Error {
	if m.Kind != core.KindRequest {
		return nil
	}
	if len(m.Params) == 0 || string(m.Params) == "null" {
		return invalidParams("params._meta is required in protocol version 2026-07-28")
	}
	var params map[string]json.RawMessage
	if json.Unmarshal(m.Params, &params) != nil {
		return invalidParams("params must be an object")
	}
	rawMeta, ok := params["_meta"]
	if !ok {
		return invalidParams("params._meta is required in protocol version 2026-07-28")
	}
	var meta map[string]json.RawMessage
	if json.Unmarshal(rawMeta, &meta) != nil || meta == nil {
		return invalidParams("params._meta must be an object")
	}
	if m.MetaVersion == "" {
		return invalidParams(`_meta["` + metaProtocolVersion + `"] is required`)
	}
	var caps map[string]json.RawMessage
	if raw, ok := meta[metaClientCaps]; !ok || json.Unmarshal(raw, &caps) != nil || caps == nil {
		return invalidParams(`_meta["` + metaClientCaps + `"] is required and must be an object`)
	}
	return nil
}
