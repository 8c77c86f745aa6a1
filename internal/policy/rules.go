package policy

import (
	"encoding/json"
	"strings"

	"cel.dev/cel-go/interpreter"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/policy/expr"
)

// MaxDepth bounds the nesting of tools/call arguments the stage reads
// (rules, validation): deeper arguments are refused before anything
// decodes them.
const MaxDepth = 64

// vars is the activation a rule is evaluated with: the request and the
// session's identity; the arguments are decoded once, when a rule reads
// them.
type vars struct {
	m       *core.Message
	route   string
	args    map[string]any
	argsErr bool
}

var emptyArgs = map[string]any{}

func (v *vars) ResolveName(name string) (any, bool) {
	info := v.m.Session
	switch name {
	case expr.VarTool:
		if v.m.Method == "tools/call" {
			return v.m.Name, true
		}
		return "", true
	case expr.VarArgs:
		if v.args == nil {
			v.args = emptyArgs
			if v.m.Method == "tools/call" {
				if a, ok := decodeArgs(v.m.Params); ok {
					v.args = a
				} else {
					v.argsErr = true
				}
			}
		}
		return v.args, true
	case expr.VarMethod:
		return v.m.Method, true
	case expr.VarName:
		return v.m.Name, true
	case expr.VarPrincipal:
		return info.Principal, true
	case expr.VarTenant:
		return info.Tenant, true
	case expr.VarGroups:
		if info.Groups == nil {
			return []string{}, true
		}
		return info.Groups, true
	case expr.VarClaims:
		if info.Claims == nil {
			return emptyArgs, true
		}
		return info.Claims, true
	case expr.VarRoute:
		return v.route, true
	}
	return nil, false
}

func (v *vars) Parent() interpreter.Activation { return nil }

// decodeArgs reads params.arguments of a tools/call as a JSON object.
func decodeArgs(params []byte) (map[string]any, bool) {
	raw := argumentsOf(params)
	if raw == nil {
		return emptyArgs, true
	}
	if depth(raw) > MaxDepth {
		return nil, false
	}
	var a map[string]any
	if json.Unmarshal(raw, &a) != nil || a == nil {
		return nil, false
	}
	return a, true
}

// argumentsOf is params.arguments (raw), nil when absent or null.
func argumentsOf(params []byte) json.RawMessage {
	var p struct {
		Arguments json.RawMessage `json:"arguments"`
	}
	if json.Unmarshal(params, &p) != nil || len(p.Arguments) == 0 || string(p.Arguments) == "null" {
		return nil
	}
	return p.Arguments
}

// depth is the deepest nesting of arrays and objects in JSON text.
func depth(b []byte) int {
	d, deepest := 0, 0
	in := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if in {
			switch c {
			case '\\':
				i++
			case '"':
				in = false
			}
			continue
		}
		switch c {
		case '"':
			in = true
		case '{', '[':
			d++
			deepest = max(deepest, d)
		case '}', ']':
			d--
		}
	}
	return deepest
}

// evalRules runs every rule of every policy; the first that is true (or
// that cannot be evaluated: a rule fails closed) refuses the request.
func (e *Effective) evalRules(m *core.Message) *denied {
	v := &vars{m: m, route: e.set.route}
	for _, c := range e.pols {
		for i := range c.rules {
			r := &c.rules[i]
			out, _, err := r.r.Program.Eval(v)
			if v.argsErr {
				return &denied{policy: c.name, rule: r.id, msg: "the arguments of " + m.Name + " are not a JSON object of at most " + itoa(MaxDepth) + " levels, so policy " + quote(c.name) + " cannot check them"}
			}
			if err != nil {
				return &denied{policy: c.name, rule: r.id, msg: r.msg + " (policy " + quote(c.name) + ", " + r.id + ": the rule could not be evaluated: " + oneLine(err.Error()) + ")"}
			}
			if b, ok := out.Value().(bool); ok && b {
				return &denied{policy: c.name, rule: r.id, msg: r.msg + " (policy " + quote(c.name) + ", " + r.id + ")"}
			}
		}
	}
	return nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
