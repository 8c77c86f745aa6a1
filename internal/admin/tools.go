package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"gopkg.in/yaml.v3"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/gateway"
	"github.com/mcpgate/mcpgate/internal/interceptors/quota"
	"github.com/mcpgate/mcpgate/internal/session"
)

// sessionTimeout ends admin MCP sessions left idle.
const sessionTimeout = 30 * time.Minute

// pageMax bounds one page of sessions_list.
const pageMax = 500

// tools are the admin tools as one operator calls them.
type tools struct {
	s  *Server
	op *operator
}

// The tools' names are the control plane's interface.
func (t *tools) register(srv *mcp.Server) {
	ro := &mcp.ToolAnnotations{ReadOnlyHint: true}
	mcp.AddTool(srv, &mcp.Tool{Name: "sessions_list", Annotations: ro,
		Description: "Lists the live sessions of this gateway, filtered by route, tenant, principal, era, age and idle time, a page at a time."}, t.sessionsList)
	mcp.AddTool(srv, &mcp.Tool{Name: "session_get", Annotations: ro,
		Description: "Shows one live session by its session_id."}, t.sessionGet)
	mcp.AddTool(srv, &mcp.Tool{Name: "session_end",
		Description: "Ends one session by its session_id (role operator)."}, t.sessionEnd)
	mcp.AddTool(srv, &mcp.Tool{Name: "sessions_end",
		Description: "Ends every session of a principal, a tenant or a route (at least one filter; role operator)."}, t.sessionsEnd)
	mcp.AddTool(srv, &mcp.Tool{Name: "config_get", Annotations: ro,
		Description: "The configuration in force, secrets redacted, and its version."}, t.configGet)
	mcp.AddTool(srv, &mcp.Tool{Name: "config_validate", Annotations: ro,
		Description: "Checks a whole configuration file (yaml) without applying it, listing every problem with its path and line."}, t.configValidate)
	mcp.AddTool(srv, &mcp.Tool{Name: "config_apply",
		Description: "Applies a whole configuration file (yaml), or a JSON merge patch over the configuration in force (patch), as a new version; dry_run reports what would change and which sessions would end (role admin). REDACTED in place of a secret keeps the secret in force."}, t.configApply)
	mcp.AddTool(srv, &mcp.Tool{Name: "config_history", Annotations: ro,
		Description: "The configuration versions applied, newest last: who, how, when and what changed."}, t.configHistory)
	mcp.AddTool(srv, &mcp.Tool{Name: "config_rollback",
		Description: "Applies an earlier configuration version again, as a new version (role admin)."}, t.configRollback)
	mcp.AddTool(srv, &mcp.Tool{Name: "log_level_set",
		Description: "Sets the gateway's log level: debug, info, warn or error (role operator)."}, t.logLevelSet)
	mcp.AddTool(srv, &mcp.Tool{Name: "health_check", Annotations: ro,
		Description: "Runs every route's upstream health check now and returns the gateway's readiness: listeners, store, routes."}, t.healthCheck)
	mcp.AddTool(srv, &mcp.Tool{Name: "quota_usage", Annotations: ro,
		Description: "The usage of every quota limit that applies to a session (session_id): its own budgets and its principal's and tenant's."}, t.quotaUsage)
	mcp.AddTool(srv, &mcp.Tool{Name: "audit_query", Annotations: ro,
		Description: "Records of the audit trail's file sinks, filtered by session, principal, tool and age; the newest last (at most limit, default 100)."}, t.auditQuery)
}

// need refuses a call when the operator's role is below role; the
// refusal is logged and audited.
func (t *tools) need(role, tool string) error {
	if rank(t.op.role) >= rank(role) {
		return nil
	}
	err := fmt.Errorf("%s needs the role %s or above; this key has the role %s", tool, role, t.op.role)
	t.s.log.Warn("admin_denied", "tool", tool, "principal", t.op.principal, "role", t.op.role)
	t.s.opts.Gateway.AuditAdmin(t.op.principal, tool, "denied", err.Error())
	return err
}

// did logs and audits an action that changed something; attrs are
// key-value pairs, summarised in the audit record.
func (t *tools) did(tool string, attrs ...any) {
	t.s.log.Info("admin_action", append([]any{"tool", tool, "principal", t.op.principal, "role", t.op.role}, attrs...)...)
	var b strings.Builder
	for i := 0; i+1 < len(attrs); i += 2 {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%v=%v", attrs[i], attrs[i+1])
	}
	t.s.opts.Gateway.AuditAdmin(t.op.principal, tool, "ok", b.String())
}

// SessionEntry is one session as the control plane shows it. Never the
// client's credentials.
type SessionEntry struct {
	SessionID     string    `json:"session_id"`
	Route         string    `json:"route"`
	Era           string    `json:"era"`
	Version       string    `json:"protocol_version"`
	Principal     string    `json:"principal"`
	Tenant        string    `json:"tenant,omitempty"`
	RemoteAddr    string    `json:"remote_addr,omitempty"`
	Client        string    `json:"client,omitempty"`
	Created       time.Time `json:"created"`
	LastActive    time.Time `json:"last_active"`
	AgeSeconds    float64   `json:"age_seconds"`
	IdleSeconds   float64   `json:"idle_seconds"`
	RequestActive bool      `json:"busy"`
}

func entryOf(s *session.Session, now time.Time) SessionEntry {
	info := s.Info()
	client := info.ClientName
	if info.ClientVersion != "" {
		client += " " + info.ClientVersion
	}
	last := s.LastActive()
	return SessionEntry{
		SessionID: info.ID, Route: info.Route, Era: info.Era.String(), Version: info.ProtocolVersion,
		Principal: info.Principal, Tenant: info.Tenant, RemoteAddr: info.RemoteAddr, Client: client,
		Created: info.Created.UTC(), LastActive: last.UTC(),
		AgeSeconds: now.Sub(info.Created).Seconds(), IdleSeconds: now.Sub(last).Seconds(), RequestActive: s.Busy(),
	}
}

// SessionsFilter selects sessions; every field set must match.
type SessionsFilter struct {
	Route     string `json:"route,omitempty" jsonschema:"only sessions of this route"`
	Tenant    string `json:"tenant,omitempty" jsonschema:"only sessions of this tenant"`
	Principal string `json:"principal,omitempty" jsonschema:"only sessions of this principal"`
	Era       string `json:"era,omitempty" jsonschema:"legacy or modern"`
	MinAge    string `json:"min_age,omitempty" jsonschema:"only sessions at least this old, a Go duration such as 10m"`
	IdleFor   string `json:"idle_for,omitempty" jsonschema:"only sessions idle for at least this long, a Go duration"`
}

func (f SessionsFilter) match(now time.Time) (func(*session.Session) bool, error) {
	var minAge, idle time.Duration
	var err error
	if f.MinAge != "" {
		if minAge, err = time.ParseDuration(f.MinAge); err != nil {
			return nil, fmt.Errorf("min_age: %v", err)
		}
	}
	if f.IdleFor != "" {
		if idle, err = time.ParseDuration(f.IdleFor); err != nil {
			return nil, fmt.Errorf("idle_for: %v", err)
		}
	}
	if f.Era != "" && f.Era != "legacy" && f.Era != "modern" {
		return nil, fmt.Errorf("era: want legacy or modern, got %q", f.Era)
	}
	return func(s *session.Session) bool {
		info := s.Info()
		return (f.Route == "" || info.Route == f.Route) && (f.Tenant == "" || info.Tenant == f.Tenant) &&
			(f.Principal == "" || info.Principal == f.Principal) && (f.Era == "" || info.Era.String() == f.Era) &&
			(minAge == 0 || now.Sub(info.Created) >= minAge) && (idle == 0 || now.Sub(s.LastActive()) >= idle)
	}, nil
}

type sessionsListIn struct {
	SessionsFilter
	Cursor string `json:"cursor,omitempty" jsonschema:"next_cursor of the previous page"`
	Limit  int    `json:"limit,omitempty" jsonschema:"sessions per page, default and at most 500"`
}

type sessionsListOut struct {
	Sessions   []SessionEntry `json:"sessions"`
	Total      int            `json:"total"`
	NextCursor string         `json:"next_cursor,omitempty"`
}

// sessionsList pages through the matching sessions in creation order
// (then id); the cursor is the position after the last one shown.
func (t *tools) sessionsList(_ context.Context, _ *mcp.CallToolRequest, in sessionsListIn) (*mcp.CallToolResult, sessionsListOut, error) {
	now := time.Now()
	match, err := in.match(now)
	if err != nil {
		return nil, sessionsListOut{}, err
	}
	all := matching(t.s.opts.Gateway.Sessions().List(), match)
	limit := in.Limit
	if limit <= 0 || limit > pageMax {
		limit = pageMax
	}
	start := 0
	if in.Cursor != "" {
		if start, err = strconv.Atoi(in.Cursor); err != nil || start < 0 {
			return nil, sessionsListOut{}, errors.New("cursor: not one this tool returned")
		}
	}
	out := sessionsListOut{Total: len(all), Sessions: []SessionEntry{}}
	for i := start; i < len(all) && len(out.Sessions) < limit; i++ {
		out.Sessions = append(out.Sessions, entryOf(all[i], now))
	}
	if next := start + len(out.Sessions); next < len(all) {
		out.NextCursor = strconv.Itoa(next)
	}
	return nil, out, nil
}

// matching are the sessions match selects, oldest first.
func matching(list []*session.Session, match func(*session.Session) bool) []*session.Session {
	list = slices.DeleteFunc(list, func(s *session.Session) bool { return !match(s) })
	slices.SortFunc(list, func(a, b *session.Session) int {
		if c := a.Info().Created.Compare(b.Info().Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID(), b.ID())
	})
	return list
}

type sessionIn struct {
	SessionID string `json:"session_id" jsonschema:"the session's id, as sessions_list shows it"`
}

func (t *tools) sessionGet(_ context.Context, _ *mcp.CallToolRequest, in sessionIn) (*mcp.CallToolResult, SessionEntry, error) {
	s, err := t.s.opts.Gateway.Sessions().Get(in.SessionID)
	if err != nil {
		return nil, SessionEntry{}, fmt.Errorf("no live session %q on this gateway", in.SessionID)
	}
	return nil, entryOf(s, time.Now()), nil
}

type endedOut struct {
	Ended int `json:"ended"`
}

func (t *tools) sessionEnd(ctx context.Context, _ *mcp.CallToolRequest, in sessionIn) (*mcp.CallToolResult, endedOut, error) {
	if err := t.need(config.RoleOperator, "session_end"); err != nil {
		return nil, endedOut{}, err
	}
	if err := t.s.opts.Gateway.Sessions().End(ctx, in.SessionID, session.ReasonAdmin); err != nil {
		return nil, endedOut{}, fmt.Errorf("no live session %q on this gateway", in.SessionID)
	}
	t.did("session_end", "session", core.Fingerprint(in.SessionID))
	return nil, endedOut{Ended: 1}, nil
}

type sessionsEndIn struct {
	Route     string `json:"route,omitempty" jsonschema:"every session of this route"`
	Tenant    string `json:"tenant,omitempty" jsonschema:"every session of this tenant"`
	Principal string `json:"principal,omitempty" jsonschema:"every session of this principal"`
}

func (t *tools) sessionsEnd(ctx context.Context, _ *mcp.CallToolRequest, in sessionsEndIn) (*mcp.CallToolResult, endedOut, error) {
	if err := t.need(config.RoleOperator, "sessions_end"); err != nil {
		return nil, endedOut{}, err
	}
	if in.Route == "" && in.Tenant == "" && in.Principal == "" {
		return nil, endedOut{}, errors.New("name a route, a tenant or a principal: sessions_end does not end every session")
	}
	match, _ := SessionsFilter{Route: in.Route, Tenant: in.Tenant, Principal: in.Principal}.match(time.Now())
	n := t.s.opts.Gateway.Sessions().EndMatching(ctx, match, session.ReasonAdmin)
	t.did("sessions_end", "route", in.Route, "tenant", in.Tenant, "principal", core.Fingerprint(in.Principal), "ended", n)
	return nil, endedOut{Ended: n}, nil
}

type configOut struct {
	Version int    `json:"version" jsonschema:"the version in force, 0 when none was recorded"`
	YAML    string `json:"yaml" jsonschema:"the configuration, secrets written REDACTED"`
}

func (t *tools) configGet(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, configOut, error) {
	text, v := t.s.opts.Gateway.ConfigText()
	if v == 0 {
		return nil, configOut{}, errors.New("this gateway was built from a configuration in code: there is no text to show")
	}
	return nil, configOut{Version: v, YAML: text}, nil
}

type validateIn struct {
	YAML string `json:"yaml" jsonschema:"a whole configuration file"`
}

type validateOut struct {
	Valid    bool     `json:"valid"`
	Problems []string `json:"problems,omitempty"`
}

func (t *tools) configValidate(_ context.Context, _ *mcp.CallToolRequest, in validateIn) (*mcp.CallToolResult, validateOut, error) {
	problems := t.s.opts.Gateway.ValidateText([]byte(in.YAML))
	return nil, validateOut{Valid: len(problems) == 0, Problems: problems}, nil
}

type applyIn struct {
	YAML   string         `json:"yaml,omitempty" jsonschema:"a whole configuration file"`
	Patch  map[string]any `json:"patch,omitempty" jsonschema:"a JSON merge patch (RFC 7386) over the configuration in force"`
	DryRun bool           `json:"dry_run,omitempty" jsonschema:"report what would change, change nothing"`
}

func (t *tools) configApply(ctx context.Context, _ *mcp.CallToolRequest, in applyIn) (*mcp.CallToolResult, *gateway.ApplyReport, error) {
	if err := t.need(config.RoleAdmin, "config_apply"); err != nil {
		return nil, nil, err
	}
	var text []byte
	switch {
	case in.YAML != "" && in.Patch != nil:
		return nil, nil, errors.New("give yaml or patch, not both")
	case in.YAML != "":
		text = []byte(in.YAML)
	case in.Patch != nil:
		cur, v := t.s.opts.Gateway.ConfigText()
		if v == 0 {
			return nil, nil, errors.New("there is no configuration text to patch: apply a whole file (yaml)")
		}
		var err error
		if text, err = mergePatch([]byte(cur), in.Patch); err != nil {
			return nil, nil, err
		}
	default:
		return nil, nil, errors.New("give yaml (a whole file) or patch (a JSON merge patch)")
	}
	rep, err := t.s.opts.Gateway.Apply(ctx, text, t.op.principal, "admin", in.DryRun)
	return t.report("config_apply", rep, err)
}

// report turns an ApplyReport into the tool's answer: a refusal is a tool
// error whose structured content still says why.
func (t *tools) report(tool string, rep *gateway.ApplyReport, err error) (*mcp.CallToolResult, *gateway.ApplyReport, error) {
	if rep == nil {
		return nil, nil, err
	}
	if err != nil {
		if !rep.DryRun {
			t.s.opts.Gateway.AuditAdmin(t.op.principal, tool, "refused", rep.Outcome)
		}
		body, _ := json.MarshalIndent(rep, "", "  ")
		return &mcp.CallToolResult{IsError: true, StructuredContent: rep,
			Content: []mcp.Content{&mcp.TextContent{Text: "refused (" + rep.Outcome + "): " + err.Error() + "\n" + string(body)}}}, rep, nil
	}
	if !rep.DryRun && rep.Outcome == gateway.ReloadApplied {
		t.did(tool, "version", rep.Version, "changes", strings.Join(rep.Changes, "; "))
		t.s.watch.poke()
	}
	return nil, rep, nil
}

// mergePatch applies an RFC 7386 merge patch to a YAML text: objects
// merge, null removes a member, anything else replaces.
func mergePatch(text []byte, patch map[string]any) ([]byte, error) {
	var doc any
	if err := yaml.Unmarshal(text, &doc); err != nil {
		return nil, fmt.Errorf("the configuration in force does not parse: %v", err)
	}
	out, err := yaml.Marshal(merge(doc, patch))
	if err != nil {
		return nil, err
	}
	return out, nil
}

func merge(target any, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(t, k)
			continue
		}
		t[k] = merge(t[k], v)
	}
	return t
}

type historyOut struct {
	Versions []gateway.ConfigVersion `json:"versions"`
}

func (t *tools) configHistory(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, historyOut, error) {
	return nil, historyOut{Versions: append([]gateway.ConfigVersion{}, t.s.opts.Gateway.History()...)}, nil
}

type rollbackIn struct {
	Version int  `json:"version" jsonschema:"the version to apply again, from config_history"`
	DryRun  bool `json:"dry_run,omitempty" jsonschema:"report what would change, change nothing"`
}

func (t *tools) configRollback(ctx context.Context, _ *mcp.CallToolRequest, in rollbackIn) (*mcp.CallToolResult, *gateway.ApplyReport, error) {
	if err := t.need(config.RoleAdmin, "config_rollback"); err != nil {
		return nil, nil, err
	}
	rep, err := t.s.opts.Gateway.Rollback(ctx, in.Version, t.op.principal, in.DryRun)
	return t.report("config_rollback", rep, err)
}

type levelIn struct {
	Component string `json:"component,omitempty" jsonschema:"whose level: gateway (the default) for the whole gateway, or one component (frontend, upstream, session, ...) for its own"`
	Level     string `json:"level" jsonschema:"debug, info, warn or error; for a component also default (follow the gateway's level again)"`
}

type levelOut struct {
	Component string `json:"component"`
	Level     string `json:"level"`
	Previous  string `json:"previous"`
}

func (t *tools) logLevelSet(_ context.Context, _ *mcp.CallToolRequest, in levelIn) (*mcp.CallToolResult, levelOut, error) {
	if err := t.need(config.RoleOperator, "log_level_set"); err != nil {
		return nil, levelOut{}, err
	}
	lv := t.s.opts.LogLevel
	if lv == nil {
		return nil, levelOut{}, errors.New("this gateway's log level cannot change while it runs")
	}
	lower := func(l slog.Level) string { return strings.ToLower(l.String()) }
	if in.Component != "" && in.Component != "gateway" {
		levels := t.s.opts.LogLevels
		if levels == nil {
			return nil, levelOut{}, fmt.Errorf("component: %q has no level of its own here; set the gateway's (component gateway)", in.Component)
		}
		if !slices.Contains(levels.Components(), in.Component) {
			return nil, levelOut{}, fmt.Errorf("component: unknown %q (known: gateway, %s)", in.Component, strings.Join(levels.Components(), ", "))
		}
		prev, _ := levels.Level(in.Component)
		if in.Level == "default" {
			levels.Reset(in.Component)
			t.did("log_level_set", "component", in.Component, "level", "default", "previous", prev.String())
			return nil, levelOut{Component: in.Component, Level: "default", Previous: lower(prev)}, nil
		}
		var next slog.Level
		if err := next.UnmarshalText([]byte(in.Level)); err != nil {
			return nil, levelOut{}, fmt.Errorf("level: want debug, info, warn, error or default, got %q", in.Level)
		}
		_ = levels.Set(in.Component, next)
		t.did("log_level_set", "component", in.Component, "level", next.String(), "previous", prev.String())
		return nil, levelOut{Component: in.Component, Level: lower(next), Previous: lower(prev)}, nil
	}
	var next slog.Level
	if err := next.UnmarshalText([]byte(in.Level)); err != nil {
		return nil, levelOut{}, fmt.Errorf("level: want debug, info, warn or error, got %q", in.Level)
	}
	prev := lv.Level()
	lv.Set(next)
	t.did("log_level_set", "level", next.String(), "previous", prev.String())
	return nil, levelOut{Component: "gateway", Level: lower(next), Previous: lower(prev)}, nil
}

// healthCheckTimeout bounds health_check's wait for the checks it runs.
const healthCheckTimeout = 15 * time.Second

func (t *tools) healthCheck(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, gateway.Readiness, error) {
	ctx, cancel := context.WithTimeout(ctx, healthCheckTimeout)
	defer cancel()
	return nil, t.s.opts.Gateway.CheckHealth(ctx), nil
}

type usageOut struct {
	Usage []quota.Usage `json:"usage"`
}

func (t *tools) quotaUsage(ctx context.Context, _ *mcp.CallToolRequest, in sessionIn) (*mcp.CallToolResult, usageOut, error) {
	u, err := t.s.opts.Gateway.QuotaUsage(ctx, in.SessionID)
	if err != nil {
		return nil, usageOut{}, fmt.Errorf("no live session %q on this gateway", in.SessionID)
	}
	return nil, usageOut{Usage: append([]quota.Usage{}, u...)}, nil
}

// auditMax bounds one audit_query answer.
const auditMax = 1000

type auditIn struct {
	SessionID string `json:"session_id,omitempty" jsonschema:"the session's id or fingerprint"`
	Principal string `json:"principal,omitempty"`
	Tool      string `json:"tool,omitempty" jsonschema:"a tool, resource or prompt name"`
	Since     string `json:"since,omitempty" jsonschema:"a Go duration (1h) or an RFC 3339 time"`
	Limit     int    `json:"limit,omitempty" jsonschema:"records returned, the newest; default 100, at most 1000"`
}

type auditOut struct {
	Records []map[string]any `json:"records"`
	Matched int              `json:"matched"`
}

func (t *tools) auditQuery(_ context.Context, _ *mcp.CallToolRequest, in auditIn) (*mcp.CallToolResult, auditOut, error) {
	a := t.s.opts.Gateway.Config().Audit
	var files []string
	if a != nil {
		for _, sk := range a.Sinks {
			if sk.File != nil {
				files = append(files, audit.Files(sk.File.Path)...)
			}
		}
	}
	if len(files) == 0 {
		return nil, auditOut{}, errors.New("this gateway keeps no audit trail in a file (audit.sinks[].file)")
	}
	f := audit.Filter{Session: in.SessionID, Principal: in.Principal, Tool: in.Tool}
	if in.Since != "" {
		if d, err := time.ParseDuration(in.Since); err == nil {
			f.Since = time.Now().Add(-d)
		} else if ts, err := time.Parse(time.RFC3339, in.Since); err == nil {
			f.Since = ts
		} else {
			return nil, auditOut{}, fmt.Errorf("since: want a duration (1h) or an RFC 3339 time, got %q", in.Since)
		}
	}
	limit := in.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, auditMax)
	w := &lastLines{max: limit}
	n, err := audit.Query(files, f, w)
	if err != nil {
		return nil, auditOut{}, err
	}
	out := auditOut{Matched: n, Records: []map[string]any{}}
	for _, l := range w.lines {
		var r map[string]any
		if json.Unmarshal([]byte(l), &r) == nil {
			out.Records = append(out.Records, r)
		}
	}
	return nil, out, nil
}

// lastLines keeps the last max lines written to it.
type lastLines struct {
	max     int
	partial []byte
	lines   []string
}

func (l *lastLines) Write(p []byte) (int, error) {
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.lines = append(l.lines, string(l.partial[:i]))
		if len(l.lines) > l.max {
			l.lines = l.lines[1:]
		}
		l.partial = l.partial[i+1:]
	}
	return len(p), nil
}
