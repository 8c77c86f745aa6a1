package sessiontools

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/interceptors/quota"
)

// Status is mcpgate_session_status's structured result and
// mcpgate://session's content.
type Status struct {
	// Session is the session id's fingerprint (core.Fingerprint): the id
	// itself is a bearer handle and never shown.
	Session         string    `json:"session"`
	Route           string    `json:"route"`
	Era             string    `json:"era"`
	ProtocolVersion string    `json:"protocol_version,omitempty"`
	Principal       string    `json:"principal"`
	Tenant          string    `json:"tenant,omitempty"`
	Created         time.Time `json:"created"`
	AgeSeconds      int64     `json:"age_seconds"`
	// IdleTimeout ends the session after this long without a request;
	// TTL this long after it was created (absent: none), at ExpiresAt.
	IdleTimeout string         `json:"idle_timeout,omitempty"`
	TTL         string         `json:"ttl,omitempty"`
	ExpiresAt   *time.Time     `json:"expires_at,omitempty"`
	Quotas      []quota.Usage  `json:"quotas"`
	DeniedTools []string       `json:"denied_tools"`
	Tools       []string       `json:"tools"`
	Resources   []string       `json:"resources"`
	Subscribed  map[string]any `json:"-"`
}

// HealthStatus is mcpgate://health's content.
type HealthStatus struct {
	Route    string         `json:"route"`
	Upstream UpstreamHealth `json:"upstream"`
	Gateway  any            `json:"gateway"`
}

func (s *Stage) status(ctx context.Context, st *state) (Status, error) {
	info := st.info
	now := time.Now()
	out := Status{Session: info.LogID(), Route: info.Route, Era: info.Era.String(), ProtocolVersion: info.ProtocolVersion,
		Principal: info.Principal, Tenant: info.Tenant, Created: info.Created.UTC(), AgeSeconds: int64(now.Sub(info.Created).Seconds()),
		Quotas: []quota.Usage{}, DeniedTools: []string{}, Tools: []string{ToolStatus, ToolTighten, ToolEnd}, Resources: []string{URISession, URIHealth}}
	if s.opts.Limits != nil {
		if idle, ttl, ok := s.opts.Limits(info); ok {
			out.IdleTimeout = idle.String()
			if ttl > 0 {
				out.TTL = ttl.String()
				at := info.Created.Add(ttl).UTC()
				out.ExpiresAt = &at
			}
		}
	}
	if p := st.deny.Load(); p != nil {
		out.DeniedTools = slices.Clone(*p)
	}
	u, err := s.opts.Quota.Usage(ctx, info)
	out.Quotas = append(out.Quotas, u...)
	return out, err
}

// changing is what of a status counts as a change for subscribers: not
// its age, nor when a budget resets (they move with time alone).
func changing(v Status) any {
	type q struct {
		Quota, Limit string
		Max, Used    int64
	}
	qs := make([]q, len(v.Quotas))
	for i, u := range v.Quotas {
		qs[i] = q{u.Quota, u.Limit, u.Max, u.Used}
	}
	return []any{v.IdleTimeout, v.TTL, v.DeniedTools, qs}
}

func (s *Stage) healthStatus() HealthStatus {
	h := HealthStatus{Route: s.opts.Route, Upstream: s.health.Read()}
	if s.opts.Readiness != nil {
		h.Gateway = s.opts.Readiness()
	}
	return h
}

func healthChanging(h HealthStatus) any { return []any{h.Upstream.Status, h.Gateway} }

// call answers a tools/call of one of our tools.
func (s *Stage) call(ctx context.Context, st *state, m *core.Message) *core.Message {
	args, err := argumentsOf(m.Params)
	if err != nil {
		return toolResult(m, "invalid arguments: "+err.Error(), nil, true)
	}
	switch m.Name {
	case ToolStatus:
		if err := noArguments(args); err != nil {
			return toolResult(m, err.Error(), nil, true)
		}
		v, err := s.status(ctx, st)
		if err != nil {
			return toolResult(m, "the session's quota usage cannot be read now: "+err.Error(), nil, true)
		}
		return toolResult(m, statusText(v), v, false)
	case ToolTighten:
		return s.tighten(ctx, st, m, args)
	case ToolEnd:
		if err := noArguments(args); err != nil {
			return toolResult(m, err.Error(), nil, true)
		}
		if s.opts.End == nil {
			return toolResult(m, "this gateway cannot end sessions from inside them", nil, true)
		}
		info := st.info
		// Once the response is delivered the session's requests are
		// refused; its streams close a moment later, so that a client
		// that takes a closed stream for a broken connection has read
		// the response first.
		end := func() {
			st.ended.Store(true)
			time.AfterFunc(endGrace, func() { s.opts.End(info) })
		}
		if !core.AfterResponse(ctx, end) {
			end()
		}
		s.log.Info("session_end_requested", "session", info.LogID())
		v := endResult{Ended: true, Session: info.LogID(),
			Message: "the session ends once this response is delivered; its later requests are refused as for an unknown session"}
		return toolResult(m, v.Message, v, false)
	}
	return toolResult(m, "unknown tool "+quote(m.Name)+": the "+toolPrefix+" tools of this session are "+ToolStatus+", "+ToolTighten+" and "+ToolEnd, nil, true)
}

// endGrace is how long after mcpgate_session_end's response is delivered
// the session's streams close.
const endGrace = 250 * time.Millisecond

type endResult struct {
	Ended   bool   `json:"ended"`
	Session string `json:"session"`
	Message string `json:"message"`
}

// Tighten is mcpgate_session_tighten's arguments.
type Tighten struct {
	Quotas      []quota.Tightening `json:"quotas,omitempty"`
	DenyTools   []string           `json:"deny_tools,omitempty"`
	IdleTimeout string             `json:"idle_timeout,omitempty"`
	TTL         string             `json:"ttl,omitempty"`
}

// tightening is a parsed Tighten.
type tightening struct {
	Tighten
	idle, ttl time.Duration
}

// ParseTighten reads mcpgate_session_tighten's arguments: unknown members,
// wrong types, invalid durations or globs, and a request that asks for
// nothing are errors.
func ParseTighten(args []byte) (*tightening, error) {
	var t tightening
	if len(bytes.TrimSpace(args)) == 0 || string(bytes.TrimSpace(args)) == "null" {
		return nil, errors.New("nothing to tighten: give quotas, deny_tools, idle_timeout or ttl")
	}
	dec := json.NewDecoder(bytes.NewReader(args))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t.Tighten); err != nil {
		return nil, fmt.Errorf("invalid arguments: %v", err)
	}
	if dec.More() {
		return nil, errors.New("invalid arguments: trailing data")
	}
	for _, d := range []struct {
		name string
		in   string
		out  *time.Duration
	}{{"idle_timeout", t.IdleTimeout, &t.idle}, {"ttl", t.TTL, &t.ttl}} {
		if d.in == "" {
			continue
		}
		v, err := time.ParseDuration(d.in)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("%s: %q is not a positive duration (such as 90s, 10m, 1h)", d.name, d.in)
		}
		*d.out = v
	}
	for i, g := range t.DenyTools {
		if g == "" || !doublestar.ValidatePattern(g) {
			return nil, fmt.Errorf("deny_tools[%d]: %q is not a valid glob", i, g)
		}
		if strings.HasPrefix(g, toolPrefix) {
			return nil, fmt.Errorf("deny_tools[%d]: %q names mcpgate's own tools, which cannot be denied (use %s to end the session)", i, g, ToolEnd)
		}
	}
	for i, q := range t.Quotas {
		if q.Limit == "" {
			return nil, fmt.Errorf("quotas[%d]: limit is required", i)
		}
		if q.Max < 1 {
			return nil, fmt.Errorf("quotas[%d]: max %d is below 1 (use %s to end the session)", i, q.Max, ToolEnd)
		}
	}
	if len(t.Quotas) == 0 && len(t.DenyTools) == 0 && t.idle == 0 && t.ttl == 0 {
		return nil, errors.New("nothing to tighten: give quotas, deny_tools, idle_timeout or ttl")
	}
	return &t, nil
}

// tighten applies a mcpgate_session_tighten, all of it or none.
func (s *Stage) tighten(ctx context.Context, st *state, m *core.Message, args []byte) *core.Message {
	t, err := ParseTighten(args)
	if err != nil {
		return toolResult(m, "refused: "+err.Error(), nil, true)
	}
	info := st.info
	refuse := func(msg string) *core.Message {
		s.log.Info("session_tighten_refused", "session", info.LogID(), "reason", msg)
		return toolResult(m, "refused, nothing changed: "+msg, nil, true)
	}
	if t.idle > 0 || t.ttl > 0 {
		if s.opts.Limits == nil || s.opts.Shorten == nil {
			return refuse("this gateway cannot change a session's idle timeout or TTL")
		}
		idle, ttl, ok := s.opts.Limits(info)
		if !ok {
			return refuse("the session's limits cannot be read")
		}
		if t.idle > idle {
			return refuse(fmt.Sprintf("idle_timeout %v would raise the session's idle timeout %v: a session may only shorten its limits", t.idle, idle))
		}
		if t.ttl > 0 && ttl > 0 && t.ttl > ttl {
			return refuse(fmt.Sprintf("ttl %v would raise the session's TTL %v: a session may only shorten its limits", t.ttl, ttl))
		}
		if age := time.Since(info.Created); t.ttl > 0 && t.ttl <= age {
			return refuse(fmt.Sprintf("ttl %v is already past (the session is %v old); use %s to end it now", t.ttl, age.Round(time.Second), ToolEnd))
		}
	}
	if len(t.Quotas) > 0 {
		if s.opts.Quota == nil {
			return refuse("no quota applies to this session, so there is none to lower")
		}
		if err := s.opts.Quota.Tighten(info, t.Quotas); err != nil {
			msg := strings.TrimPrefix(err.Error(), "quota: ")
			if errors.Is(err, quota.ErrLoosen) {
				msg += " (a session may only lower its limits)"
			}
			return refuse(msg)
		}
	}
	if t.idle > 0 || t.ttl > 0 {
		s.opts.Shorten(info, t.idle, t.ttl)
	}
	if len(t.DenyTools) > 0 {
		st.mu.Lock()
		var all []string
		if p := st.deny.Load(); p != nil {
			all = slices.Clone(*p)
		}
		for _, g := range t.DenyTools {
			if !slices.Contains(all, g) {
				all = append(all, g)
			}
		}
		st.deny.Store(&all)
		st.mu.Unlock()
		// The tools the client sees changed.
		s.listChanged(ctx, st, m)
	}
	s.log.Info("session_tightened", "session", info.LogID(), "quotas", len(t.Quotas), "deny_tools", len(t.DenyTools),
		"idle_timeout", t.idle, "ttl", t.ttl)
	v, err := s.status(ctx, st)
	if err != nil {
		return toolResult(m, "tightened; the session's quota usage cannot be read now: "+err.Error(), nil, true)
	}
	if st.subscribed() {
		s.poke()
	}
	return toolResult(m, "tightened.\n"+statusText(v), v, false)
}

// statusText is the status in words.
func statusText(v Status) string {
	var b strings.Builder
	fmt.Fprintf(&b, "session %s on route %s (%s era), principal %s, %ds old", v.Session, v.Route, v.Era, v.Principal, v.AgeSeconds)
	if v.IdleTimeout != "" {
		fmt.Fprintf(&b, "; ends after %s idle", v.IdleTimeout)
	}
	if v.TTL != "" {
		fmt.Fprintf(&b, "; ends at %s (ttl %s)", v.ExpiresAt.Format(time.RFC3339), v.TTL)
	}
	b.WriteString(".\n")
	if len(v.Quotas) == 0 {
		b.WriteString("No quota applies.\n")
	}
	for _, u := range v.Quotas {
		fmt.Fprintf(&b, "quota %s %s: %d of %d used per %s", u.Quota, u.Limit, u.Used, u.Max, u.Per)
		if u.Window != "0s" {
			fmt.Fprintf(&b, " per %s", u.Window)
		}
		if u.Tightened {
			fmt.Fprintf(&b, " (lowered from %d)", u.Configured)
		}
		if u.ResetsInSeconds != nil {
			fmt.Fprintf(&b, ", first drops in %ds", *u.ResetsInSeconds)
		}
		b.WriteString("\n")
	}
	if len(v.DeniedTools) > 0 {
		fmt.Fprintf(&b, "Denied tools: %s\n", strings.Join(v.DeniedTools, ", "))
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// argumentsOf is a tools/call's arguments ({} when absent).
func argumentsOf(params []byte) ([]byte, error) {
	var p struct {
		Arguments json.RawMessage `json:"arguments"`
	}
	if err := json.Unmarshal(params, &p); err != nil {
		return nil, err
	}
	if len(p.Arguments) == 0 || string(p.Arguments) == "null" {
		return []byte(`{}`), nil
	}
	if p.Arguments[0] != '{' {
		return nil, errors.New("arguments must be an object")
	}
	return p.Arguments, nil
}

func noArguments(args []byte) error {
	var m map[string]json.RawMessage
	if json.Unmarshal(args, &m) != nil || len(m) > 0 {
		return errors.New("invalid arguments: this tool takes none")
	}
	return nil
}

// toolResult is a tools/call result: text, structured content (nil for
// none), isError.
func toolResult(m *core.Message, text string, structured any, isError bool) *core.Message {
	r := map[string]any{"content": []map[string]string{{"type": "text", "text": text}}}
	if structured != nil {
		r["structuredContent"] = structured
	}
	if isError {
		r["isError"] = true
	}
	if m.Era == core.EraModern {
		r["resultType"] = "complete"
	}
	b, _ := json.Marshal(r)
	return answer(m, b)
}

// answer is the response to m with result.
func answer(m *core.Message, result []byte) *core.Message {
	resp := core.ResultResponse(m.ID, result)
	resp.Direction, resp.Era, resp.Session = core.ClientToServer, m.Era, m.Session
	return resp
}

// read answers resources/read of one of our URIs.
func (s *Stage) read(ctx context.Context, st *state, m *core.Message) *core.Message {
	var v any
	switch m.Name {
	case URISession:
		sv, err := s.status(ctx, st)
		if err != nil {
			return errorAnswer(m, core.NewError(core.CodeInternalError, "the session's quota usage cannot be read now: "+err.Error()))
		}
		v = sv
		st.remember(URISession, digest(changing(sv)))
	case URIHealth:
		h := s.healthStatus()
		v = h
		st.remember(URIHealth, digest(healthChanging(h)))
	default:
		return notFound(m)
	}
	text, _ := json.MarshalIndent(v, "", "  ")
	r := map[string]any{"contents": []map[string]string{{"uri": m.Name, "mimeType": "application/json", "text": string(text)}}}
	if m.Era == core.EraModern {
		// 2026-07-28 requires cache hints on resources/read: these
		// contents are the session's own and change as it runs.
		r["resultType"], r["ttlMs"], r["cacheScope"] = "complete", 0, "private"
	}
	b, _ := json.Marshal(r)
	return answer(m, b)
}

// remember records what a subscribed URI showed, so that only a later
// change is notified.
func (st *state) remember(uri string, d [32]byte) {
	st.mu.Lock()
	if _, ok := st.last[uri]; ok {
		st.last[uri] = d
	}
	st.mu.Unlock()
}

func notFound(m *core.Message) *core.Message {
	code := core.CodeLegacyResourceNotFound
	if m.Era == core.EraModern {
		code = core.CodeInvalidParams
	}
	return errorAnswer(m, core.NewError(code, "resource not found: "+m.Name+" (mcpgate's resources here are "+URISession+" and "+URIHealth+")").
		WithData(map[string]string{"uri": m.Name}))
}

func errorAnswer(m *core.Message, e *core.Error) *core.Message {
	resp := core.ErrorResponse(m.ID, e)
	resp.Direction, resp.Era, resp.Session = core.ClientToServer, m.Era, m.Session
	return resp
}

// The tools' and resources' definitions, as listed.
var toolDefs, resourceDefs = definitions()

func definitions() (tools, resources []json.RawMessage) {
	status := `{"type":"object","properties":{` +
		`"session":{"type":"string","description":"the session id's fingerprint"},` +
		`"route":{"type":"string"},"era":{"type":"string"},"protocol_version":{"type":"string"},` +
		`"principal":{"type":"string"},"tenant":{"type":"string"},` +
		`"created":{"type":"string","format":"date-time"},"age_seconds":{"type":"integer"},` +
		`"idle_timeout":{"type":"string"},"ttl":{"type":"string"},"expires_at":{"type":"string","format":"date-time"},` +
		`"quotas":{"type":"array","items":{"type":"object","properties":{` +
		`"quota":{"type":"string"},"per":{"type":"string"},"key":{"type":"string"},"limit":{"type":"string"},` +
		`"max":{"type":"integer"},"tightened":{"type":"boolean"},"configured_max":{"type":"integer"},"used":{"type":"integer"},` +
		`"window":{"type":"string"},"resets_in_seconds":{"type":"integer"},"resets_at":{"type":"string","format":"date-time"}},` +
		`"required":["quota","per","limit","max","used","window"]}},` +
		`"denied_tools":{"type":"array","items":{"type":"string"}},` +
		`"tools":{"type":"array","items":{"type":"string"}},"resources":{"type":"array","items":{"type":"string"}}},` +
		`"required":["session","route","era","principal","created","age_seconds","quotas","denied_tools"]}`
	defs := []map[string]any{
		{"name": ToolStatus, "title": "This session's status",
			"description":  "This session's id fingerprint, age, idle timeout and TTL, its quotas' usage and when they reset, and the tools it denied itself. Added by mcpgate.",
			"inputSchema":  json.RawMessage(`{"type":"object","properties":{},"additionalProperties":false}`),
			"outputSchema": json.RawMessage(status),
			"annotations":  map[string]any{"readOnlyHint": true, "idempotentHint": true, "openWorldHint": false}},
		{"name": ToolTighten, "title": "Tighten this session's limits",
			"description": "Lower this session's own quota limits, deny tools for it, shorten its idle timeout or TTL. Only ever tightens: a request raising anything is refused whole. Added by mcpgate.",
			"inputSchema": json.RawMessage(`{"type":"object","properties":{` +
				`"quotas":{"type":"array","description":"limits to lower, as the status lists them","items":{"type":"object","properties":{` +
				`"quota":{"type":"string","description":"the quota's name; omitted: every quota of the session with this limit"},` +
				`"limit":{"type":"string","description":"requests, tool_calls, tool:NAME, result_bytes, result_tokens or concurrent"},` +
				`"max":{"type":"integer","minimum":1,"description":"the new max, at most the one in force"}},"required":["limit","max"],"additionalProperties":false}},` +
				`"deny_tools":{"type":"array","items":{"type":"string"},"description":"globs of upstream tools this session may no longer list or call"},` +
				`"idle_timeout":{"type":"string","description":"a shorter idle timeout, such as 5m"},` +
				`"ttl":{"type":"string","description":"a shorter lifetime from the session's creation, such as 1h"}},"additionalProperties":false}`),
			"outputSchema": json.RawMessage(status),
			"annotations":  map[string]any{"readOnlyHint": false, "destructiveHint": false, "idempotentHint": true, "openWorldHint": false}},
		{"name": ToolEnd, "title": "End this session",
			"description":  "End this session once this response is delivered. Added by mcpgate.",
			"inputSchema":  json.RawMessage(`{"type":"object","properties":{},"additionalProperties":false}`),
			"outputSchema": json.RawMessage(`{"type":"object","properties":{"ended":{"type":"boolean"},"session":{"type":"string"},"message":{"type":"string"}},"required":["ended","session","message"]}`),
			"annotations":  map[string]any{"readOnlyHint": false, "destructiveHint": true, "idempotentHint": true, "openWorldHint": false}},
	}
	for _, d := range defs {
		b, _ := json.Marshal(d)
		tools = append(tools, b)
	}
	for _, r := range []map[string]any{
		{"uri": URISession, "name": "mcpgate-session", "title": "This session", "mimeType": "application/json",
			"description": "This session's status (as mcpgate_session_status), updated as its usage changes; subscribable. Added by mcpgate."},
		{"uri": URIHealth, "name": "mcpgate-health", "title": "Upstream and gateway health", "mimeType": "application/json",
			"description": "The route's upstream health as the gateway sees it and the gateway's readiness; subscribable. Added by mcpgate."},
	} {
		b, _ := json.Marshal(r)
		resources = append(resources, b)
	}
	return tools, resources
}
