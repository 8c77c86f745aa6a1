package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/catalog"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/pipeline"
)

// Stage is the route's policy stage; a nil Set has none (the zero Stage,
// which the chain leaves out).
func (s *Set) Stage() pipeline.Stage {
	if s == nil {
		return pipeline.Stage{Name: StageName}
	}
	return pipeline.Stage{
		Name:           StageName,
		ClientToServer: s.clientToServer,
		ServerToClient: s.serverToClient,
		Session: func(info *core.SessionInfo, _ any) any {
			if st := newSession(s.For(info), info); st != nil {
				return st
			}
			return nil
		},
		Bind: func(c *pipeline.Chain) { s.chain.Store(c) },
	}
}

func sessionOf(m *core.Message) *session {
	st, _ := pipeline.StateOf(m, StageName).(*session)
	return st
}

// report hands a decision to the chain's observers and logs refusals.
func (s *Set) report(ctx context.Context, m *core.Message, policy, rule, action string, e *core.Error) {
	if action == pipeline.ActionDeny || action == pipeline.ActionInvalid || action == pipeline.ActionBlock {
		s.log.Info("policy_"+action, "policy", policy, "rule", rule, "method", m.Method, "name", m.Name, "session", m.Session.LogID(), "principal", m.Session.LogPrincipal(), "route", s.route)
	}
	c := s.chain.Load()
	if c == nil || !c.Observing() {
		return
	}
	c.Observe(ctx, &pipeline.Event{Kind: pipeline.Decision, Time: time.Now(), Route: s.route, Session: m.Session,
		Message: m, Err: e, Policy: policy, Rule: rule, Action: action})
}

// clientToServer enforces what a session may ask for, and filters, withholds
// and redacts the responses on their way back.
func (s *Set) clientToServer(next core.Handler) core.Handler {
	return func(ctx context.Context, m *core.Message) (*core.Message, error) {
		st := sessionOf(m)
		if st == nil || m.Kind != core.KindRequest {
			return next(ctx, m)
		}
		e := st.eff
		if resp := e.admit(ctx, next, st, m); resp != nil {
			return resp, nil
		}
		resp, err := next(ctx, m)
		if err != nil || resp == nil || resp.Kind != core.KindResponse {
			return resp, err
		}
		return e.response(ctx, m, resp), nil
	}
}

// serverToClient withholds and redacts what the server sends on its own:
// notifications (progress, logs, resource updates) and its requests.
func (s *Set) serverToClient(next core.Handler) core.Handler {
	return func(ctx context.Context, m *core.Message) (*core.Message, error) {
		st := sessionOf(m)
		if st == nil || (m.Kind != core.KindNotification && m.Kind != core.KindRequest) || len(m.Params) == 0 {
			return next(ctx, m)
		}
		e := st.eff
		if hit := e.blocker.FindJSON(m.Params); hit != "" {
			pol, r := splitName(hit)
			s.report(ctx, m, pol, r, pipeline.ActionBlock, nil)
			if m.Kind == core.KindNotification {
				return nil, nil // withheld
			}
			// A server request is answered upstream by the chain's caller
			// with this error; the client never sees it.
			return nil, core.NewError(CodeDenied, "withheld by policy "+strconv.Quote(pol)+" ("+r+")").WithData(decisionData(pol, r))
		}
		out, hit, changed := e.redactor.JSON(m.Params)
		if !changed {
			return next(ctx, m)
		}
		pol, r := splitName(hit)
		s.report(ctx, m, pol, r, pipeline.ActionRedact, nil)
		var red *core.Message
		var err error
		if m.Kind == core.KindNotification {
			red, err = core.Notification(m.Method, out)
		} else {
			red, err = rebuildRequest(m, out)
		}
		if err != nil {
			return nil, nil // cannot happen for JSON the redactor kept valid; withhold rather than leak
		}
		red.Direction, red.Era, red.Session, red.Header, red.Received = m.Direction, m.Era, m.Session, m.Header, m.Received
		return next(ctx, red)
	}
}

func decisionData(policy, rule string) map[string]string {
	return map[string]string{"policy": policy, "rule": rule}
}

// admit decides on a client request before it goes upstream: nil lets it
// through, else the response the client gets instead.
func (e *Effective) admit(ctx context.Context, next core.Handler, st *session, m *core.Message) *core.Message {
	var d *denied
	switch m.Method {
	case "tools/call":
		d = e.allowed(kindTool, m.Name)
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		d = e.allowed(kindResource, m.Name)
	case "prompts/get":
		d = e.allowed(kindPrompt, m.Name)
	case "completion/complete":
		d = e.completion(m)
	}
	if d != nil {
		return e.refuse(ctx, m, d, pipeline.ActionDeny)
	}
	// Arguments are read only once they are known to read the same to
	// every decoder; they are validated before the rules read them: a
	// model learns what is wrong with its call, and rules see arguments of
	// the types the tool declares.
	var args []byte
	if m.Method == "tools/call" && (e.validate != "" || e.argsUsed) {
		var err error
		if args, err = argumentsOf(m.Params); err == nil && args != nil {
			err = checkArgs(args)
		}
		if err != nil {
			pol, rule := e.validate, "validate_input"
			if pol == "" {
				pol, rule = e.argsPolicy, "rules"
			}
			return e.refuse(ctx, m, &denied{policy: pol, rule: rule, msg: "invalid arguments for tool " + quote(m.Name) + ": " + err.Error() + " (policy " + quote(pol) + ")"}, pipeline.ActionInvalid)
		}
	}
	if m.Method == "tools/call" && e.validate != "" {
		if d := e.validateInput(ctx, next, m, args); d != nil {
			return e.refuse(ctx, m, d, pipeline.ActionInvalid)
		}
	}
	if e.rules {
		if d := e.evalRules(st, m, args); d != nil {
			return e.refuse(ctx, m, d, pipeline.ActionDeny)
		}
	}
	return nil
}

// refuse answers a refused request: a tool result with isError for a
// tools/call (a model reads it and can correct its call), a JSON-RPC error
// otherwise.
func (e *Effective) refuse(ctx context.Context, m *core.Message, d *denied, action string) *core.Message {
	if m.Method == "tools/call" {
		e.set.report(ctx, m, d.policy, d.rule, action, nil)
		return toolError(m, d.msg)
	}
	err := core.NewError(CodeDenied, d.msg).WithData(decisionData(d.policy, d.rule))
	e.set.report(ctx, m, d.policy, d.rule, action, err)
	return core.ErrorResponse(m.ID, err)
}

// toolError is a tools/call result with isError and text.
func toolError(m *core.Message, text string) *core.Message {
	q, _ := json.Marshal(text)
	res := make([]byte, 0, len(q)+80)
	res = append(res, `{"content":[{"type":"text","text":`...)
	res = append(res, q...)
	res = append(res, `}],"isError":true`...)
	if m.Era == core.EraModern {
		res = append(res, `,"resultType":"complete"`...)
	}
	res = append(res, '}')
	return core.ResultResponse(m.ID, res)
}

// completion checks the prompt or resource template a completion/complete
// refers to.
func (e *Effective) completion(m *core.Message) *denied {
	var p struct {
		Ref struct {
			Type string `json:"type"`
			Name string `json:"name"`
			URI  string `json:"uri"`
		} `json:"ref"`
	}
	if json.Unmarshal(m.Params, &p) != nil {
		return nil
	}
	switch p.Ref.Type {
	case "ref/prompt":
		return e.allowed(kindPrompt, p.Ref.Name)
	case "ref/resource":
		return e.allowed(kindResource, p.Ref.URI)
	}
	return nil
}

// response filters, withholds and redacts the response to a request that
// was let through.
func (e *Effective) response(ctx context.Context, req, resp *core.Message) *core.Message {
	result := resp.Result
	changed := false
	if kind, key, field, ok := listOf(req.Method); ok && e.lists[kind] {
		if out, d := e.filterList(result, kind, key, field); out != nil {
			result, changed = out, true
			e.set.report(ctx, req, d.policy, d.rule, pipeline.ActionFilter, nil)
		}
	}
	if hit := e.blocker.FindJSON(result); hit != "" {
		pol, r := splitName(hit)
		msg := "the result was withheld by policy " + strconv.Quote(pol) + " (" + r + "): it matched a blocked pattern"
		if req.Method == "tools/call" {
			e.set.report(ctx, req, pol, r, pipeline.ActionBlock, nil)
			return keep(resp, toolError(req, msg))
		}
		err := core.NewError(CodeDenied, msg).WithData(decisionData(pol, r))
		e.set.report(ctx, req, pol, r, pipeline.ActionBlock, err)
		return keep(resp, core.ErrorResponse(req.ID, err))
	}
	if out, hit, ok := e.redactor.JSON(result); ok {
		pol, r := splitName(hit)
		e.set.report(ctx, req, pol, r, pipeline.ActionRedact, nil)
		result, changed = out, true
	}
	if !changed {
		return resp
	}
	return keep(resp, core.ResultResponse(resp.ID, result))
}

// keep gives a replacement response the routing fields of the original.
func keep(orig, m *core.Message) *core.Message {
	m.Direction, m.Era, m.Session, m.Header, m.Received, m.Status = orig.Direction, orig.Era, orig.Session, orig.Header, orig.Received, 0
	return m
}

// rebuildRequest is a server request m with new params.
func rebuildRequest(m *core.Message, params []byte) (*core.Message, error) {
	var b bytes.Buffer
	b.WriteString(`{"jsonrpc":"2.0","id":`)
	b.WriteString(string(m.ID))
	b.WriteString(`,"method":`)
	q, _ := json.Marshal(m.Method)
	b.Write(q)
	b.WriteString(`,"params":`)
	b.Write(params)
	b.WriteByte('}')
	return core.Decode(b.Bytes())
}

// listOf says which list result a method answers with: the kind of name,
// the result's array member and the field of each entry that names it.
func listOf(method string) (kind int, key, field string, ok bool) {
	switch method {
	case "tools/list":
		return kindTool, "tools", "name", true
	case "resources/list":
		return kindResource, "resources", "uri", true
	case "resources/templates/list":
		return kindResource, "resourceTemplates", "uriTemplate", true
	case "prompts/list":
		return kindPrompt, "prompts", "name", true
	}
	return 0, "", "", false
}

// filterList removes from a list result the entries the session may not
// see, and returns nil when nothing was removed. Every member of the
// result whose key is the list's in any letter case, and every name an
// entry could be read as (its field in any letter case), is judged: an
// upstream cannot slip an entry past the gateway by writing it so that a
// client reads it differently, nor by a second copy of the list. An entry
// that names itself ambiguously is removed. The other members
// (nextCursor, _meta, ...) are kept, so pagination is unchanged: a page
// may only be shorter.
func (e *Effective) filterList(result []byte, kind int, key, field string) ([]byte, *denied) {
	var first *denied
	removed := false
	var entries []json.RawMessage
	var rest []byte
	copies := 0
	err := catalog.Members(result, func(k string, v json.RawMessage) {
		if len(k) == len(key) && strings.EqualFold(k, key) {
			copies++
			var list []json.RawMessage
			if json.Unmarshal(v, &list) != nil {
				removed = true // not a list: dropped
				return
			}
			for _, entry := range list {
				names, clear := catalog.Values(entry, field)
				d := e.judge(kind, names, clear)
				if d != nil {
					removed = true
					if first == nil {
						first = d
					}
					continue
				}
				entries = append(entries, entry)
			}
			return
		}
		if len(rest) > 0 {
			rest = append(rest, ',')
		}
		kq, _ := json.Marshal(k)
		rest = append(rest, kq...)
		rest = append(rest, ':')
		rest = append(rest, v...)
	})
	if err != nil || (!removed && copies <= 1) {
		return nil, nil
	}
	if first == nil {
		first = &denied{policy: e.pols[0].name, rule: kindKeys[kind] + ".duplicate"}
	}
	out := make([]byte, 0, len(result))
	out = append(out, '{')
	out = append(out, rest...)
	if len(rest) > 0 {
		out = append(out, ',')
	}
	out = append(out, '"')
	out = append(out, key...)
	out = append(out, `":[`...)
	for i, entry := range entries {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, entry...)
	}
	out = append(out, "]}"...)
	return out, first
}

// judge decides on one list entry from every name it could be read as.
func (e *Effective) judge(kind int, names []string, clear bool) *denied {
	for _, n := range names {
		if d := e.allowed(kind, n); d != nil {
			return d
		}
	}
	if !clear {
		return &denied{policy: e.pols[0].name, rule: kindKeys[kind] + ".ambiguous", msg: "an entry that names itself ambiguously"}
	}
	return nil
}
