package telemetry

import (
	"go.opentelemetry.io/otel/propagation"

	"github.com/mcpgate/mcpgate/internal/core"
)

// traceKeys are the members of _meta the gateway sets, in this order.
var traceKeys = [...]string{metaTraceparent, metaTracestate, metaBaggage}

// spliceMeta is withMeta without decoding the message: the new params
// (its _meta's trace members replaced, every other byte kept) is spliced
// into m.Raw in place of the old. ok is false when it cannot be done so
// (params is not an object of m.Raw's, or is not well formed); the
// caller then takes the slow path.
func spliceMeta(m *core.Message, c propagation.MapCarrier) ([]byte, bool) {
	raw, params := m.Raw, m.Params
	if len(params) == 0 {
		return nil, false
	}
	off := cap(raw) - cap(params)
	if off < 0 || off+len(params) > len(raw) || &raw[off] != &params[0] {
		return nil, false
	}
	members, ok := objectMembers(params)
	if !ok {
		return nil, false
	}
	var meta []byte
	for _, mb := range members {
		if string(params[mb.ks:mb.ke]) == `"_meta"` {
			meta = params[mb.vs:mb.ve]
		}
	}
	out := make([]byte, 0, len(raw)+160)
	out = append(out, raw[:off]...)
	if meta == nil {
		out = append(out, `{"_meta":`...)
		out = appendTrace(out, c, nil, nil)
		if len(members) > 0 {
			out = append(out, ',')
			out = append(out, params[1:]...)
		} else {
			out = append(out, '}')
		}
	} else {
		mm, ok := objectMembers(meta)
		if !ok {
			return nil, false
		}
		moff := cap(params) - cap(meta)
		out = append(out, params[:moff]...)
		out = appendTrace(out, c, meta, mm)
		out = append(out, params[moff+len(meta):]...)
	}
	return append(out, raw[off+len(params):]...), true
}

// appendTrace appends a _meta object: c's trace members, then those of
// meta (members mm) that are not trace members.
func appendTrace(out []byte, c propagation.MapCarrier, meta []byte, mm []member) []byte {
	out = append(out, '{')
	n := 0
	for _, k := range traceKeys {
		if v := c[k]; v != "" {
			if n > 0 {
				out = append(out, ',')
			}
			out = append(out, '"')
			out = append(out, k...)
			out = append(out, `":`...)
			out = core.AppendJSONString(out, v)
			n++
		}
	}
	for _, mb := range mm {
		switch string(meta[mb.ks:mb.ke]) {
		case `"traceparent"`, `"tracestate"`, `"baggage"`:
			continue
		}
		if n > 0 {
			out = append(out, ',')
		}
		out = append(out, meta[mb.ks:mb.ve]...)
		n++
	}
	return append(out, '}')
}

// member is one member of a JSON object: its key (quoted) and value.
type member struct{ ks, ke, vs, ve int }

// objectMembers lists the members of the JSON object b (whitespace
// around it allowed), or ok false when b is not one.
func objectMembers(b []byte) (ms []member, ok bool) {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return nil, skipWS(b, i+1) == len(b)
	}
	for {
		var mb member
		if i >= len(b) || b[i] != '"' {
			return nil, false
		}
		mb.ks = i
		if i = skipString(b, i); i < 0 {
			return nil, false
		}
		mb.ke = i
		i = skipWS(b, i)
		if i >= len(b) || b[i] != ':' {
			return nil, false
		}
		i = skipWS(b, i+1)
		mb.vs = i
		if i = skipValue(b, i); i < 0 {
			return nil, false
		}
		mb.ve = i
		ms = append(ms, mb)
		i = skipWS(b, i)
		if i >= len(b) {
			return nil, false
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			return ms, skipWS(b, i+1) == len(b)
		default:
			return nil, false
		}
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] ('"'),
// or -1.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}

// skipValue returns the index after the JSON value starting at b[i], or
// -1. It checks nesting and strings, not the scalars' spelling: m.Raw
// was validated when it was decoded.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				j := skipString(b, i)
				if j < 0 {
					return -1
				}
				i = j - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return -1
	}
	for ; i < len(b); i++ {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
	}
	return i
}
