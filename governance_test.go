package mcpgate_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate"
	"github.com/mcpgate/mcpgate/internal/audit"
)

// governedServer has whoami, a tool that reports the session's quota usage
// from inside the handler, and a tool a policy forbids.
func governedServer() *mcp.Server {
	s := newServer()
	mcp.AddTool(s, &mcp.Tool{Name: "usage"}, func(ctx context.Context, _ *mcp.CallToolRequest, _ whoIn) (*mcp.CallToolResult, any, error) {
		us, err := mcpgate.SessionFromContext(ctx).QuotaUsage(ctx)
		if err != nil {
			return nil, nil, err
		}
		var b strings.Builder
		fmt.Fprintln(&b, mcpgate.SessionFromContext(ctx).LogID)
		for _, u := range us {
			fmt.Fprintf(&b, "%s %s %d/%d\n", u.Quota, u.Limit, u.Used, u.Max)
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: b.String()}}}, nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "drop_tables"}, func(context.Context, *mcp.CallToolRequest, whoIn) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "dropped"}}}, nil, nil
	})
	return s
}

// TestGovernedEmbeddedServer: an embedded server gets the governance stages
// of the binary: a quota cuts a tool off with a result the model can read,
// a policy rule denies a call before the handler runs, the handler reads
// its session's quota usage, and every step is in a verifiable audit trail.
func TestGovernedEmbeddedServer(t *testing.T) {
	t.Parallel()
	trail := filepath.Join(t.TempDir(), "audit.jsonl")
	opts := &mcpgate.Options{
		Quotas: []mcpgate.Quota{{Name: "whoami-once", Tools: map[string]int64{"whoami": 1}}},
		Policies: []mcpgate.Policy{{Name: "no-drops", Rules: []mcpgate.PolicyRule{
			{Deny: `tool == "drop_tables"`, Message: "dropping tables is not allowed"}}}},
		Audit: &mcpgate.Audit{Payloads: true, SpoolDir: filepath.Join(filepath.Dir(trail), "spool"),
			Sinks: []mcpgate.AuditSink{{File: &mcpgate.AuditFileSink{Path: trail}}}},
	}
	h, err := mcpgate.NewHandler(func(*http.Request) *mcp.Server { return governedServer() }, opts)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	defer ts.Close()
	closed := false
	defer func() {
		if !closed {
			_ = h.Close(context.Background())
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cs, err := connect(ctx, ts.URL+"/mcp", legacy)
	if err != nil {
		t.Fatal(err)
	}
	var id string

	whoami(t, ctx, cs)
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "whoami", Arguments: map[string]any{}})
	if err != nil {
		t.Fatalf("second whoami: %v", err)
	}
	if text := resultText(res); !res.IsError || !strings.Contains(text, "whoami-once") || !strings.Contains(text, "tool:whoami") {
		t.Fatalf("second whoami past its quota = %+v (%q), want an isError result naming the quota and limit", res, text)
	}

	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "usage", Arguments: map[string]any{}})
	if err != nil {
		t.Fatal(err)
	}
	text := resultText(res)
	id, text, _ = strings.Cut(text, "\n")
	if res.IsError || !strings.Contains(text, "whoami-once tool:whoami 1/1") || id == "" {
		t.Fatalf("usage from the handler = %q, want the whoami-once limit spent (1/1)", text)
	}

	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "drop_tables", Arguments: map[string]any{}})
	denied := err != nil && strings.Contains(err.Error(), "dropping tables is not allowed") ||
		err == nil && res.IsError && strings.Contains(resultText(res), "dropping tables is not allowed")
	if !denied || err == nil && strings.Contains(resultText(res), "dropped") {
		t.Fatalf("drop_tables = %+v, %v: want the policy's denial, and the handler never run", res, err)
	}
	if err := cs.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(ctx); err != nil {
		t.Fatal(err)
	}
	closed = true

	sum, err := audit.Verify([]string{trail})
	if err != nil {
		t.Fatalf("audit verify: %v", err)
	}
	var quotaDecision, policyDecision, called, ended bool
	if err := audit.Scan(trail, func(line int, r *audit.Record, err error) error {
		if err != nil {
			return err
		}
		if r.Session != id {
			return nil
		}
		switch {
		case r.Kind == "decision" && r.Quota == "whoami-once":
			quotaDecision = true
		case r.Kind == "decision" && r.Policy == "no-drops":
			policyDecision = true
		case r.Kind == "message" && r.Method == "tools/call" && r.Tool == "whoami" && r.Direction == "client_to_server":
			called = true
		case r.Kind == "session" && r.Event == "ended":
			ended = true
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !quotaDecision || !policyDecision || !called || !ended {
		t.Fatalf("audit trail of %d records: quota decision %v, policy decision %v, whoami call %v, session end %v",
			sum.Records, quotaDecision, policyDecision, called, ended)
	}
}

func resultText(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if t, ok := c.(*mcp.TextContent); ok {
			b.WriteString(t.Text)
		}
	}
	return b.String()
}
