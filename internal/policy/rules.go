package policy

import (
	"errors"
	"strings"
	"sync"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/interpreter"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/policy/expr"
)

// MaxDepth bounds the nesting of tools/call arguments the stage reads
// (rules, validation): deeper arguments are refused before anything
// decodes them.
const MaxDepth = 64

// session is the policy stage's state for one session: what applies to
// it, and its identity as CEL values (made once, not per rule).
type session struct {
	eff                               *Effective
	principal, tenant, groups, claims ref.Val
}

func newSession(e *Effective, info *core.SessionInfo) *session {
	if e == nil {
		return nil
	}
	s := &session{eff: e, principal: types.String(info.Principal), tenant: types.String(info.Tenant)}
	groups := info.Groups
	if groups == nil {
		groups = []string{}
	}
	s.groups = types.NewStringList(types.DefaultTypeAdapter, groups)
	claims := info.Claims
	if claims == nil {
		claims = map[string]any{}
	}
	s.claims = types.NewStringInterfaceMap(types.DefaultTypeAdapter, claims)
	return s
}

// vars is the activation a rule is evaluated with: the request and the
// session's identity; the arguments are read when a rule reads them.
type vars struct {
	m     *core.Message
	sess  *session
	route ref.Val
	args  []byte // params.arguments, checked by checkArgs; nil for none
}

var (
	emptyString = types.String("")
	emptyMap    = types.NewStringInterfaceMap(types.DefaultTypeAdapter, map[string]any{})
	// methods are the request methods as CEL values, made once.
	methods = func() map[string]ref.Val {
		m := map[string]ref.Val{}
		for _, name := range []string{"tools/call", "tools/list", "resources/read", "resources/list", "resources/templates/list",
			"resources/subscribe", "resources/unsubscribe", "prompts/get", "prompts/list", "completion/complete", "ping",
			"logging/setLevel", "initialize", "server/discover", "subscriptions/listen"} {
			m[name] = types.String(name)
		}
		return m
	}()
	varsPool = sync.Pool{New: func() any { return new(vars) }}
)

func (v *vars) ResolveName(name string) (any, bool) {
	switch name {
	case expr.VarTool:
		if v.m.Method == "tools/call" {
			return v.sess.eff.boxed(v.m.Name), true
		}
		return emptyString, true
	case expr.VarArgs:
		if v.args == nil {
			return emptyMap, true
		}
		return &jsonObject{raw: v.args}, true
	case expr.VarMethod:
		if b, ok := methods[v.m.Method]; ok {
			return b, true
		}
		return types.String(v.m.Method), true
	case expr.VarName:
		return v.sess.eff.boxed(v.m.Name), true
	case expr.VarPrincipal:
		return v.sess.principal, true
	case expr.VarTenant:
		return v.sess.tenant, true
	case expr.VarGroups:
		return v.sess.groups, true
	case expr.VarClaims:
		return v.sess.claims, true
	case expr.VarRoute:
		return v.route, true
	}
	return nil, false
}

func (v *vars) Parent() interpreter.Activation { return nil }

// maxBoxed bounds the names an Effective keeps as CEL values.
const maxBoxed = 4096

// boxed is name as a CEL value, kept for the names seen most (tool,
// prompt and resource names repeat), so a rule reading one costs no
// allocation.
func (e *Effective) boxed(name string) ref.Val {
	if v, ok := e.names.Load(name); ok {
		return v.(ref.Val)
	}
	v := ref.Val(types.String(name))
	if e.nNames.Load() < maxBoxed {
		if _, loaded := e.names.LoadOrStore(name, v); !loaded {
			e.nNames.Add(1)
		}
	}
	return v
}

// argumentsOf is params.arguments of a tools/call (nil when absent or
// null). Params holding it twice, or under a key that differs from
// "arguments" only by case (which a case-insensitive server reads as
// the arguments), are refused: the stage would judge other arguments than
// the server runs.
func argumentsOf(params []byte) ([]byte, error) {
	var found []byte
	seen := 0
	i := skipWS(params, 0)
	if i >= len(params) || params[i] != '{' {
		return nil, nil
	}
	for i++; ; {
		i = skipWS(params, i)
		if i >= len(params) || params[i] != '"' {
			break
		}
		end := skipString(params, i)
		k := params[i:end]
		i = skipWS(params, skipWS(params, end)+1)
		vend := skipValue(params, i)
		if len(k) == len(`"arguments"`) && strings.EqualFold(string(k), `"arguments"`) || len(k) > len(`"arguments"`) && strings.EqualFold(jsonString(k), "arguments") {
			seen++
			found = params[i:vend]
		}
		i = skipWS(params, vend)
		if i < len(params) && params[i] == ',' {
			i++
		}
	}
	if seen > 1 {
		return nil, errAmbiguousArguments
	}
	if found == nil || string(found) == "null" {
		return nil, nil
	}
	return found, nil
}

var errAmbiguousArguments = errors.New(`params hold "arguments" more than once (or in another letter case), which servers read differently`)

// evalRules runs every rule of every policy; the first that is true (or
// that cannot be evaluated: a rule fails closed) refuses the request. The
// arguments were checked by checkArgs.
func (e *Effective) evalRules(sess *session, m *core.Message, args []byte) *denied {
	v := varsPool.Get().(*vars)
	*v = vars{m: m, sess: sess, route: e.set.routeVal, args: args}
	defer func() { *v = vars{}; varsPool.Put(v) }()
	for _, c := range e.pols {
		for i := range c.rules {
			r := &c.rules[i]
			out, _, err := r.r.Program.Eval(v)
			if err != nil {
				return &denied{policy: c.name, rule: r.id, msg: r.msg + " (policy " + quote(c.name) + ", " + r.id + ": the rule could not be evaluated: " + oneLine(err.Error()) + ")"}
			}
			if out == types.True {
				return &denied{policy: c.name, rule: r.id, msg: r.msg + " (policy " + quote(c.name) + ", " + r.id + ")"}
			}
		}
	}
	return nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
