package admin_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/admin"
	"github.com/mcpgate/mcpgate/internal/auth"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/gateway"
	"github.com/mcpgate/mcpgate/internal/logs"
	"github.com/mcpgate/mcpgate/internal/testutil/conformancefixture"
)

// bed is a gateway in front of the conformance fixture, with the admin
// MCP server on its admin listener and one key per role.
type bed struct {
	g                       *gateway.Gateway
	level                   *slog.LevelVar
	levels                  *logs.Levels
	url, adminURL           string
	viewer, operator, admin string
}

func start(t *testing.T) *bed { return startWith(t, "") }

// startWith is start with more top-level configuration (YAML) in the file.
func startWith(t *testing.T, extra string) *bed {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	up := httptest.NewServer(conformancefixture.Handler(ctx, false))
	t.Cleanup(up.Close)
	b := &bed{level: new(slog.LevelVar)}
	b.levels = logs.NewLevels(b.level, config.Components...)
	b.viewer, _ = auth.NewKey()
	b.operator, _ = auth.NewKey()
	b.admin, _ = auth.NewKey()
	text := `listeners: [{address: "127.0.0.1:0"}]
store: {kind: memory}
server: {shutdown_timeout: 2s}
admin:
  listen: 127.0.0.1:0
  mcp:
    enabled: true
    api_keys:
      - {key_sha256: ` + auth.HashKey(b.viewer) + `, role: viewer, principal: val}
      - {key_sha256: ` + auth.HashKey(b.operator) + `, role: operator, principal: otto}
      - {key_sha256: ` + auth.HashKey(b.admin) + `, role: admin, principal: ada}
` + extra + `
routes:
  - {name: fixture, path: /mcp, upstream: {http: {url: "` + up.URL + `", headers: {X-Upstream-Key: "upstream-secret-value"}}}}
`
	cfg, err := config.LoadBytes([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(cfg, gateway.Options{Source: gateway.ConfigSource{Text: []byte(text)}})
	if err != nil {
		t.Fatal(err)
	}
	ctl := admin.New(admin.Options{Gateway: g, LogLevel: b.level, LogLevels: b.levels})
	t.Cleanup(ctl.Close)
	g.HandleAdmin("/mcp", ctl)
	ran := make(chan error, 1)
	go func() { ran <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-ran; err != nil {
			t.Error(err)
		}
	})
	b.g = g
	b.url = "http://" + g.Addrs()[0].String() + "/mcp"
	b.adminURL = "http://" + g.AdminAddr().String() + "/mcp"
	return b
}

type bearer struct{ key string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.key)
	return http.DefaultTransport.RoundTrip(r)
}

// connect opens an MCP client session at url, with key as bearer when
// set, at protocol version v.
func connect(t *testing.T, url, key, v string, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	hc := http.DefaultClient
	if key != "" {
		hc = &http.Client{Transport: bearer{key}}
	}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "admin-test", Version: "1"}, opts).Connect(t.Context(),
		&mcp.StreamableClientTransport{Endpoint: url, HTTPClient: hc, MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: v})
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

// call calls a tool and decodes its structured content into out; it
// returns the result (IsError says whether the tool refused).
func call(t *testing.T, cs *mcp.ClientSession, tool string, args map[string]any, out any) *mcp.CallToolResult {
	t.Helper()
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	if out != nil && res.StructuredContent != nil {
		b, _ := json.Marshal(res.StructuredContent)
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
	}
	return res
}

func text(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

type listed struct {
	Sessions []admin.SessionEntry `json:"sessions"`
	Total    int                  `json:"total"`
	Next     string               `json:"next_cursor"`
}

// TestSessionTools: the sessions of the data plane are listed, paged,
// shown and ended through the admin server, and the roles decide who may
// end them.
func TestSessionTools(t *testing.T) {
	t.Parallel()
	b := start(t)
	for range 3 {
		connect(t, b.url, "", "2025-11-25", nil)
	}
	viewer := connect(t, b.adminURL, b.viewer, "2025-11-25", nil)
	var page listed
	call(t, viewer, "sessions_list", map[string]any{"limit": 2}, &page)
	if page.Total != 3 || len(page.Sessions) != 2 || page.Next == "" || page.Sessions[0].Route != "fixture" || page.Sessions[0].Era != "legacy" {
		t.Fatalf("first page: %+v", page)
	}
	var rest listed
	call(t, viewer, "sessions_list", map[string]any{"limit": 2, "cursor": page.Next}, &rest)
	if len(rest.Sessions) != 1 || rest.Next != "" || rest.Sessions[0].SessionID == page.Sessions[0].SessionID {
		t.Fatalf("second page: %+v", rest)
	}
	id := page.Sessions[0].SessionID
	var one admin.SessionEntry
	call(t, viewer, "session_get", map[string]any{"session_id": id}, &one)
	if one.SessionID != id || one.Principal != "anonymous" {
		t.Fatalf("session_get: %+v", one)
	}
	if res := call(t, viewer, "session_end", map[string]any{"session_id": id}, nil); !res.IsError || !strings.Contains(text(res), "needs the role operator") {
		t.Fatalf("a viewer's session_end: %v %q", res.IsError, text(res))
	}
	operator := connect(t, b.adminURL, b.operator, "2025-11-25", nil)
	var ended struct{ Ended int }
	if res := call(t, operator, "session_end", map[string]any{"session_id": id}, &ended); res.IsError || ended.Ended != 1 {
		t.Fatalf("the operator's session_end: %q", text(res))
	}
	if _, err := b.g.Sessions().Get(id); err == nil {
		t.Fatal("the session is still live")
	}
	if res := call(t, operator, "sessions_end", map[string]any{}, nil); !res.IsError {
		t.Fatal("sessions_end without a filter ended sessions")
	}
	call(t, operator, "sessions_end", map[string]any{"route": "fixture"}, &ended)
	if ended.Ended != 2 || b.g.Sessions().Len() != 0 {
		t.Fatalf("sessions_end by route: %d ended, %d left", ended.Ended, b.g.Sessions().Len())
	}
	var lv struct{ Level, Previous string }
	if res := call(t, operator, "log_level_set", map[string]any{"level": "debug"}, &lv); res.IsError || lv.Level != "debug" || b.level.Level() != slog.LevelDebug {
		t.Fatalf("log_level_set: %q %+v", text(res), lv)
	}
	if res := call(t, operator, "log_level_set", map[string]any{"component": "upstream", "level": "error"}, &lv); res.IsError || lv.Level != "error" || lv.Previous != "debug" {
		t.Fatalf("log_level_set of a component: %q %+v", text(res), lv)
	}
	if l, own := b.levels.Level("upstream"); l != slog.LevelError || !own || b.level.Level() != slog.LevelDebug {
		t.Fatalf("upstream's level %v (own %v), the gateway's %v", l, own, b.level.Level())
	}
	if res := call(t, operator, "log_level_set", map[string]any{"component": "upstream", "level": "default"}, &lv); res.IsError {
		t.Fatalf("log_level_set default: %q", text(res))
	}
	if _, own := b.levels.Level("upstream"); own {
		t.Fatal("upstream kept its own level after default")
	}
	if res := call(t, operator, "log_level_set", map[string]any{"component": "nonsense", "level": "debug"}, &lv); !res.IsError {
		t.Fatal("an unknown component got a level")
	}
}

// TestConfigTools: the configuration is shown with its secrets redacted,
// validated, patched with a dry run first, applied and rolled back, each
// version in the history; only an admin may change it.
func TestConfigTools(t *testing.T) {
	t.Parallel()
	b := start(t)
	ada := connect(t, b.adminURL, b.admin, "2025-11-25", nil)
	var got struct {
		Version int
		YAML    string
	}
	call(t, ada, "config_get", nil, &got)
	if got.Version != 1 || strings.Contains(got.YAML, "upstream-secret-value") || !strings.Contains(got.YAML, config.Redacted) {
		t.Fatalf("config_get: %+v", got)
	}
	var valid struct {
		Valid    bool
		Problems []string
	}
	call(t, ada, "config_validate", map[string]any{"yaml": "routes: [{path: /x}]\n"}, &valid)
	if valid.Valid || len(valid.Problems) == 0 || !strings.Contains(valid.Problems[0], "routes[0]") {
		t.Fatalf("config_validate of a bad file: %+v", valid)
	}
	patch := map[string]any{"sessions": map[string]any{"max": 7}}
	var rep gateway.ApplyReport
	call(t, ada, "config_apply", map[string]any{"patch": patch, "dry_run": true}, &rep)
	if !rep.DryRun || len(rep.Changes) != 1 || rep.Changes[0] != "sessions: changed" || b.g.Config().Sessions.Max == 7 {
		t.Fatalf("dry run: %+v", rep)
	}
	otto := connect(t, b.adminURL, b.operator, "2025-11-25", nil)
	if res := call(t, otto, "config_apply", map[string]any{"patch": patch}, nil); !res.IsError || !strings.Contains(text(res), "needs the role admin") {
		t.Fatalf("an operator's config_apply: %q", text(res))
	}
	call(t, ada, "config_apply", map[string]any{"patch": patch}, &rep)
	if rep.Version != 2 || b.g.Config().Sessions.Max != 7 {
		t.Fatalf("apply: %+v", rep)
	}
	// The patch went over the redacted text: the secret is the one in force.
	if h := b.g.Config().Routes[0].Upstream.HTTP.Headers["X-Upstream-Key"].Reveal(); h != "upstream-secret-value" {
		t.Fatalf("the upstream header after a patch: %q", h)
	}
	if res := call(t, ada, "config_apply", map[string]any{"patch": map[string]any{"listeners": []any{map[string]any{"address": "127.0.0.1:1"}}}}, &rep); !res.IsError || rep.Outcome != gateway.ReloadRestartRequired {
		t.Fatalf("a listener change: %q", text(res))
	}
	call(t, ada, "config_rollback", map[string]any{"version": 1}, &rep)
	if rep.Version != 3 || b.g.Config().Sessions.Max == 7 {
		t.Fatalf("rollback: %+v", rep)
	}
	var hist struct{ Versions []gateway.ConfigVersion }
	call(t, ada, "config_history", nil, &hist)
	if len(hist.Versions) != 3 || hist.Versions[1].Who != "ada" || hist.Versions[2].Source != "rollback" || hist.Versions[2].RollbackOf != 1 {
		t.Fatalf("history: %+v", hist.Versions)
	}
}

// TestAdminAccess: no key, an unknown key and another key's session are
// refused as for anyone without access; a modern client uses the same
// tools; a subscribed client hears of a new session within a second.
func TestAdminAccess(t *testing.T) {
	t.Parallel()
	b := start(t)
	post := func(key, sessionID string) int {
		req, _ := http.NewRequest(http.MethodPost, b.adminURL, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		if sessionID != "" {
			req.Header.Set("Mcp-Session-Id", sessionID)
			req.Header.Set("MCP-Protocol-Version", "2025-11-25")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized && resp.Header.Get("Www-Authenticate") == "" {
			t.Fatal("401 without a challenge")
		}
		return resp.StatusCode
	}
	if s := post("", ""); s != http.StatusUnauthorized {
		t.Fatalf("no key: %d", s)
	}
	if s := post("mcpg_not-a-key", ""); s != http.StatusUnauthorized {
		t.Fatalf("unknown key: %d", s)
	}
	var updated atomic.Int32
	viewer := connect(t, b.adminURL, b.viewer, "2025-11-25", &mcp.ClientOptions{
		ResourceUpdatedHandler: func(_ context.Context, r *mcp.ResourceUpdatedNotificationRequest) {
			if r.Params.URI == "mcpgate://sessions" {
				updated.Add(1)
			}
		},
	})
	if s := post(b.admin, viewer.ID()); s != http.StatusNotFound {
		t.Fatalf("the admin key on the viewer's session: %d", s)
	}
	if s := post(b.viewer, viewer.ID()); s != http.StatusOK {
		t.Fatalf("the viewer's own session: %d", s)
	}

	if err := viewer.Subscribe(t.Context(), &mcp.SubscribeParams{URI: "mcpgate://sessions"}); err != nil {
		t.Fatal(err)
	}
	connect(t, b.url, "", "2025-11-25", nil)
	deadline := time.Now().Add(3 * time.Second)
	for updated.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no notifications/resources/updated for mcpgate://sessions after a new session")
		}
		time.Sleep(20 * time.Millisecond)
	}
	res, err := viewer.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: "mcpgate://sessions"})
	if err != nil || !strings.Contains(res.Contents[0].Text, `"total": 1`) {
		t.Fatalf("mcpgate://sessions: %v %+v", err, res)
	}

	modern := connect(t, b.adminURL, b.viewer, "2026-07-28", nil)
	var page listed
	call(t, modern, "sessions_list", nil, &page)
	if page.Total != 1 {
		t.Fatalf("a modern client's sessions_list: %+v", page)
	}
	var health gateway.Readiness
	call(t, modern, "health_check", nil, &health)
	if health.Status != "ready" || health.Routes["fixture"] != "up" {
		t.Fatalf("health_check: %+v", health)
	}
	rh, err := viewer.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: "mcpgate://health/fixture"})
	if err != nil || !strings.Contains(rh.Contents[0].Text, `"status": "up"`) {
		t.Fatalf("mcpgate://health/fixture: %v %+v", err, rh)
	}
	if _, err := viewer.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: "mcpgate://health/nope"}); err == nil {
		t.Fatal("mcpgate://health/nope was read")
	}
}

// TestUsageAndAuditTools: quota_usage shows a session's budget as it is
// spent; audit_query finds the session's records in the trail's file.
func TestUsageAndAuditTools(t *testing.T) {
	t.Parallel()
	trail := filepath.Join(t.TempDir(), "audit.jsonl")
	b := startWith(t, `quotas: [{name: per-session, per: session, requests: 50}]
audit: {payloads: true, sinks: [{file: {path: "`+trail+`"}}], fsync: always}`)
	cs := connect(t, b.url, "", "2025-11-25", nil)
	for range 3 {
		if _, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "test_simple_text"}); err != nil {
			t.Fatal(err)
		}
	}
	op := connect(t, b.adminURL, b.viewer, "2025-11-25", nil)
	var usage struct {
		Usage []struct {
			Quota, Limit string
			Used, Max    int64
		}
	}
	call(t, op, "quota_usage", map[string]any{"session_id": cs.ID()}, &usage)
	found := false
	for _, u := range usage.Usage {
		if u.Quota == "per-session" && u.Limit == "requests" {
			found = u.Used >= 3 && u.Max == 50
		}
	}
	if !found {
		t.Fatalf("quota_usage: %+v", usage)
	}
	var recs struct {
		Records []map[string]any
		Matched int
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		call(t, op, "audit_query", map[string]any{"session_id": cs.ID(), "tool": "test_simple_text", "limit": 2}, &recs)
		if recs.Matched >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if recs.Matched < 3 || len(recs.Records) != 2 || recs.Records[1]["tool"] != "test_simple_text" {
		t.Fatalf("audit_query: %d matched, %+v", recs.Matched, recs.Records)
	}
	// An operator's action, and one the role does not allow, are records
	// with the operator's principal.
	call(t, op, "sessions_end", map[string]any{"route": "fixture"}, nil)
	otto := connect(t, b.adminURL, b.operator, "2025-11-25", nil)
	call(t, otto, "log_level_set", map[string]any{"level": "warn"}, nil)
	want := map[string]string{"val": "denied", "otto": "ok"}
	for principal, outcome := range want {
		deadline := time.Now().Add(5 * time.Second)
		for {
			call(t, op, "audit_query", map[string]any{"principal": principal}, &recs)
			if len(recs.Records) > 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if len(recs.Records) == 0 || recs.Records[len(recs.Records)-1]["kind"] != "admin" || recs.Records[len(recs.Records)-1]["outcome"] != outcome {
			t.Fatalf("audit records of %s: %+v", principal, recs.Records)
		}
	}
}

// TestModernSubscription: a 2026-07-28 client of the admin server
// subscribes to mcpgate://sessions and hears of a new session.
func TestModernSubscription(t *testing.T) {
	t.Parallel()
	b := start(t)
	var updated atomic.Int32
	viewer := connect(t, b.adminURL, b.viewer, "2026-07-28", &mcp.ClientOptions{
		ResourceUpdatedHandler: func(_ context.Context, r *mcp.ResourceUpdatedNotificationRequest) {
			if r.Params.URI == "mcpgate://sessions" {
				updated.Add(1)
			}
		},
	})
	if err := viewer.Subscribe(t.Context(), &mcp.SubscribeParams{URI: "mcpgate://sessions"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for updated.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no notifications/resources/updated for mcpgate://sessions after new sessions")
		}
		connect(t, b.url, "", "2025-11-25", nil) // a change the watcher sees within a second
		time.Sleep(300 * time.Millisecond)
	}
}

// TestHealthResourceBothEras: clients of both eras subscribed to
// mcpgate://health hear when the route's upstream goes down and when it
// comes back.
func TestHealthResourceBothEras(t *testing.T) {
	t.Parallel()
	hb := startHealthBed(t, "{interval: 100ms, timeout: 1s, failure_threshold: 1, success_threshold: 1}")
	adminURL, key, g := hb.adminURL, hb.key, hb.g
	var heard [2]atomic.Int32
	for i, v := range []string{"2025-11-25", "2026-07-28"} {
		cs := connect(t, adminURL, key, v, &mcp.ClientOptions{
			ResourceUpdatedHandler: func(_ context.Context, r *mcp.ResourceUpdatedNotificationRequest) {
				if r.Params.URI == "mcpgate://health" {
					heard[i].Add(1)
				}
			},
		})
		if err := cs.Subscribe(t.Context(), &mcp.SubscribeParams{URI: "mcpgate://health"}); err != nil {
			t.Fatal(err)
		}
	}
	wait := func(what string, n int32) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for heard[0].Load() < n || heard[1].Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%s: legacy heard %d, modern %d updates; want %d each", what, heard[0].Load(), heard[1].Load(), n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	hb.down.Store(true)
	wait("upstream down", 1)
	if r := g.Readiness(); r.Routes["fixture"] != "down" {
		t.Fatalf("readiness while down: %+v", r)
	}
	hb.down.Store(false)
	wait("upstream back", 2)
}

// TestHealthCheckRunsChecksNow: health_check runs the checks at once: an
// upstream that went down is reported down by the call that follows,
// without waiting for the next interval.
func TestHealthCheckRunsChecksNow(t *testing.T) {
	t.Parallel()
	hb := startHealthBed(t, "{interval: 1h, timeout: 1s, failure_threshold: 1}")
	cs := connect(t, hb.adminURL, hb.key, "2025-11-25", nil)
	var r gateway.Readiness
	call(t, cs, "health_check", nil, &r)
	if r.Routes["fixture"] != "up" {
		t.Fatalf("health_check with the upstream up: %+v", r)
	}
	hb.down.Store(true) // the next check would be an hour away
	call(t, cs, "health_check", nil, &r)
	if r.Routes["fixture"] != "down" {
		t.Fatalf("health_check right after the upstream went down: %+v", r)
	}
}

// healthBed is a gateway whose route's upstream (the conformance fixture)
// can be made to fail (down), with health checks as health says and the
// admin server for a viewer key.
type healthBed struct {
	g        *gateway.Gateway
	adminURL string
	key      string
	down     atomic.Bool
}

func startHealthBed(t *testing.T, health string) *healthBed {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	fixture := conformancefixture.Handler(ctx, false)
	hb := &healthBed{}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hb.down.Load() {
			http.Error(w, "down for the test", http.StatusServiceUnavailable)
			return
		}
		fixture.ServeHTTP(w, r)
	}))
	t.Cleanup(up.Close)
	hb.key, _ = auth.NewKey()
	text := `listeners: [{address: "127.0.0.1:0"}]
store: {kind: memory}
server: {shutdown_timeout: 2s}
admin: {listen: 127.0.0.1:0, mcp: {enabled: true, api_keys: [{key_sha256: ` + auth.HashKey(hb.key) + `, role: viewer}]}}
routes:
  - {name: fixture, path: /mcp, upstream: {http: {url: "` + up.URL + `"}}, health: ` + health + `}
`
	cfg, err := config.LoadBytes([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(cfg, gateway.Options{Source: gateway.ConfigSource{Text: []byte(text)}})
	if err != nil {
		t.Fatal(err)
	}
	ctl := admin.New(admin.Options{Gateway: g})
	t.Cleanup(ctl.Close)
	g.HandleAdmin("/mcp", ctl)
	ran := make(chan error, 1)
	go func() { ran <- g.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-ran })
	hb.g, hb.adminURL = g, "http://"+g.AdminAddr().String()+"/mcp"
	return hb
}
