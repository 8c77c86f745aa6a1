package frontend

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"

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

// maxParamTools bounds the tools whose x-mcp-header bindings a session
// keeps: an upstream listing more is not validated beyond them.
const maxParamTools = 4096

// paramBinding is one x-mcp-header annotation of a tool: the top-level
// argument arg is mirrored in the Mcp-Param-{header} request header.
type paramBinding struct{ arg, header string }

// paramHeaders is a session's view of its tools' x-mcp-header arguments,
// learned from the tools/list results it was given.
type paramHeaders struct {
	mu    sync.RWMutex
	tools map[string][]paramBinding
}

// learn records the bindings of the tools in a tools/list result.
func (p *paramHeaders) learn(result []byte) {
	var res struct {
		Tools []struct {
			Name        string `json:"name"`
			InputSchema struct {
				Properties map[string]struct {
					Header *string `json:"x-mcp-header"`
				} `json:"properties"`
			} `json:"inputSchema"`
		} `json:"tools"`
	}
	if json.Unmarshal(result, &res) != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tools == nil {
		p.tools = map[string][]paramBinding{}
	}
	for _, t := range res.Tools {
		var bs []paramBinding
		for arg, prop := range t.InputSchema.Properties {
			if prop.Header != nil && *prop.Header != "" {
				bs = append(bs, paramBinding{arg: arg, header: *prop.Header})
			}
		}
		if _, known := p.tools[t.Name]; !known && len(p.tools) >= maxParamTools {
			continue
		}
		p.tools[t.Name] = bs
	}
}

// check verifies the Mcp-Param-* headers of a tools/call against its
// arguments, for a tool whose bindings the session knows: every bound
// argument present in the body has its header, with the same value
// (decoded from =?base64?…?= when so wrapped), and no bound header comes
// without its argument. A mismatch is 400 with -32020.
func (p *paramHeaders) check(h http.Header, m *core.Message) *core.Error {
	if m.Method != "tools/call" || m.Name == "" {
		return nil
	}
	p.mu.RLock()
	bs := p.tools[m.Name]
	p.mu.RUnlock()
	if len(bs) == 0 {
		return nil
	}
	var params struct {
		Arguments map[string]json.RawMessage `json:"arguments"`
	}
	_ = json.Unmarshal(m.Params, &params)
	for _, b := range bs {
		name := "Mcp-Param-" + b.header
		vals := h.Values(name)
		raw, present := params.Arguments[b.arg]
		switch {
		case !present && len(vals) == 0:
			continue
		case !present:
			return headerMismatch(name + " header is present but the body has no argument " + strconv.Quote(b.arg))
		case len(vals) == 0:
			return headerMismatch(name + " header is required: the body has argument " + strconv.Quote(b.arg))
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
			return headerMismatch(name + " header value " + strconv.Quote(vals[0]) + " does not match argument " + strconv.Quote(b.arg))
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
