package conformancefixture_test

import (
	"context"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/testutil/conformancefixture"
	"github.com/mcpgate/mcpgate/internal/testutil/nodetool"
)

// serve runs the fixture's Streamable HTTP handler on 127.0.0.1 until the
// test ends.
func serve(t *testing.T, stateless bool) string {
	t.Helper()
	srv := httptest.NewServer(conformancefixture.Handler(t.Context(), stateless))
	t.Cleanup(srv.Close)
	return srv.URL
}

// requireScenarios fails the test unless every name was run.
func requireScenarios(t *testing.T, res nodetool.ConformanceResult, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, ok := res.Scenarios[n]; !ok {
			t.Errorf("scenario %s was not run; ran %v", n, res.Names())
		}
	}
}

// TestConformanceSessions runs the suite's default (active) server suite,
// at the dated protocol versions with Mcp-Session-Id sessions. Every
// scenario must pass.
func TestConformanceSessions(t *testing.T) {
	t.Parallel()
	res := nodetool.RunConformance(t.Context(), t, serve(t, false))
	passed, failed := res.Totals()
	t.Logf("sessions: %d scenarios, %d checks passed, %d failed", len(res.Scenarios), passed, failed)
	for _, f := range res.Failures() {
		t.Error(f)
	}
	for _, name := range res.Names() {
		if s := res.Scenarios[name]; !s.OK() || s.NotScored != "" {
			t.Errorf("scenario %s: %d passed, %d failed, not scored: %q", name, s.Passed, s.Failed, s.NotScored)
		}
	}
	requireScenarios(t, res, "server-initialize", "server-session-lifecycle", "tools-call-sampling",
		"tools-call-elicitation", "elicitation-sep1330-enums", "resources-subscribe", "dns-rebinding-protection")
	if res.ExitCode != 0 {
		t.Errorf("conformance exit code %d\n%s", res.ExitCode, res.Output)
	}
}

// TestConformanceStateless runs the scenarios the 2026-07-28 revision
// requires, against the stateless handler. Every scored scenario must pass;
// the extension (tasks-*) and pending scenarios run but are not scored.
func TestConformanceStateless(t *testing.T) {
	t.Parallel()
	res := nodetool.RunConformance(t.Context(), t, serve(t, true), "--requirements", "2026-07-28")
	passed, failed := res.Totals()
	t.Logf("stateless: %d scenarios, %d checks passed, %d failed", len(res.Scenarios), passed, failed)
	for _, f := range res.Failures() {
		t.Error(f)
	}
	if nf := res.NotScoredFailures(); len(nf) > 0 {
		t.Logf("not scored, failing: %s", strings.Join(nf, "; "))
	}
	requireScenarios(t, res, "server-stateless", "caching", "sep-2164-resource-not-found", "dns-rebinding-protection",
		"input-required-result-basic-elicitation", "input-required-result-multi-round", "input-required-result-tampered-state",
		"input-required-result-non-tool-request", "input-required-result-capability-check")
	// The pending scenarios are not scored, but the fixture passes them.
	for _, name := range []string{"json-schema-2020-12", "http-header-validation", "http-custom-header-server-validation"} {
		if s, ok := res.Scenarios[name]; !ok || !s.OK() {
			t.Errorf("pending scenario %s: %+v", name, s.Failures)
		}
	}
	if res.ExitCode != 0 {
		t.Errorf("conformance exit code %d\n%s", res.ExitCode, res.Output)
	}
}

// Protocol versions of the two eras.
const (
	legacyVersion = "2025-11-25"
	modernVersion = "2026-07-28"
)

// connect returns a client session with the fixture over in-memory
// transports, at protocol version version. The client answers sampling,
// elicitation and roots.
func connect(t *testing.T, version string) *mcp.ClientSession {
	t.Helper()
	ctx := t.Context()
	ct, st := mcp.NewInMemoryTransports()
	ss, err := conformancefixture.New(ctx).Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ss.Close() })
	client := mcp.NewClient(&mcp.Implementation{Name: "fixture-test", Version: "0"}, &mcp.ClientOptions{
		CreateMessageHandler: func(context.Context, *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
			return &mcp.CreateMessageResult{Role: "assistant", Model: "m", Content: &mcp.TextContent{Text: "Paris"}}, nil
		},
		ElicitationHandler: func(_ context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"username": "ada", "name": "Ada", "ok": true, "color": "green"}}, nil
		},
	})
	client.AddRoots(&mcp.Root{URI: "file:///work", Name: "work"})
	cs, err := client.Connect(ctx, ct, &mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	if got := cs.InitializeResult().ProtocolVersion; got != version {
		t.Fatalf("negotiated protocol version %s, want %s", got, version)
	}
	return cs
}

func callText(t *testing.T, cs *mcp.ClientSession, tool string, args map[string]any) string {
	t.Helper()
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	if res.IsError || len(res.Content) == 0 {
		t.Fatalf("%s: error result %+v", tool, res)
	}
	text, ok := res.Content[0].(*mcp.TextContent)
	if !ok {
		t.Fatalf("%s: first content is %T", tool, res.Content[0])
	}
	return text.Text
}

// TestClientInput checks the tools that need client input in both eras: on
// a legacy session their input requests become server-to-client requests; in
// the 2026-07-28 era they are input_required results that the go-sdk client
// answers and retries.
func TestClientInput(t *testing.T) {
	t.Parallel()
	for _, version := range []string{legacyVersion, modernVersion} {
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			testClientInput(t, connect(t, version))
		})
	}
}

func testClientInput(t *testing.T, cs *mcp.ClientSession) {
	for _, tc := range []struct {
		tool string
		args map[string]any
		want string
	}{
		{"test_sampling", map[string]any{"prompt": "capital?"}, "LLM response: Paris"},
		{"test_elicitation", map[string]any{"message": "who?"}, `"username":"ada"`},
		{"test_input_required_result_elicitation", nil, "Hello, Ada!"},
		{"test_input_required_result_sampling", nil, "Sampling response: Paris"},
		{"test_input_required_result_list_roots", nil, "1 root(s): file:///work"},
		{"test_input_required_result_request_state", nil, "state-ok"},
		{"test_input_required_result_multiple_inputs", nil, "Paris, Ada!"},
		{"test_input_required_result_multi_round", nil, "Multi-round complete: Ada likes green"},
	} {
		if got := callText(t, cs, tc.tool, tc.args); !strings.Contains(got, tc.want) {
			t.Errorf("%s = %q, want it to contain %q", tc.tool, got, tc.want)
		}
	}
}

func TestResourcesPromptsCompletion(t *testing.T) {
	t.Parallel()
	cs := connect(t, legacyVersion)
	ctx := t.Context()

	res, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "test://template/42/data"})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Contents[0].Text; got != `{"id":"42","templateTest":true,"data":"Data for ID: 42"}` {
		t.Errorf("template resource = %s", got)
	}
	if _, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "test://nope"}); err == nil {
		t.Error("reading an unknown resource succeeded")
	}
	if err := cs.Subscribe(ctx, &mcp.SubscribeParams{URI: conformancefixture.WatchedResourceURI}); err != nil {
		t.Errorf("subscribe: %v", err)
	}
	if err := cs.Subscribe(ctx, &mcp.SubscribeParams{URI: "test://nope"}); err == nil {
		t.Error("subscribing to an unknown resource succeeded")
	}

	p, err := cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: "test_prompt_with_arguments", Arguments: map[string]string{"arg1": "hello", "arg2": "world"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Messages[0].Content.(*mcp.TextContent).Text; got != "Prompt with arguments: arg1='hello', arg2='world'" {
		t.Errorf("prompt = %q", got)
	}

	c, err := cs.Complete(ctx, &mcp.CompleteParams{
		Ref:      &mcp.CompleteReference{Type: "ref/prompt", Name: "test_prompt_with_arguments"},
		Argument: mcp.CompleteParamsArgument{Name: "arg1", Value: "te"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Completion.Values; !slices.Equal(got, []string{"test", "testing"}) {
		t.Errorf("completion = %q", got)
	}
}

// TestStdioCommand builds cmd/fixture and talks to it over stdio.
func TestStdioCommand(t *testing.T) {
	t.Parallel()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	bin := filepath.Join(t.TempDir(), "fixture")
	build := exec.CommandContext(t.Context(), goTool, "build", "-o", bin, "./cmd/fixture")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "fixture-test", Version: "0"}, nil)
	cs, err := client.Connect(t.Context(), &mcp.CommandTransport{Command: exec.Command(bin)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if got := cs.InitializeResult().ServerInfo.Name; got != conformancefixture.Implementation.Name {
		t.Errorf("server name = %q", got)
	}
	if got := callText(t, cs, "test_simple_text", nil); got != "This is a simple text response for testing." {
		t.Errorf("test_simple_text = %q", got)
	}
}

// TestWatchedInterval: with Options.WatchedInterval set, a subscriber of
// the watched resource hears of a change at that pace, and reading the
// resource afterwards shows the new revision.
func TestWatchedInterval(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ct, st := mcp.NewInMemoryTransports()
	srv := conformancefixture.NewWithOptions(ctx, &conformancefixture.Options{WatchedInterval: 10 * time.Millisecond})
	ss, err := srv.Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ss.Close() })
	updated := make(chan struct{}, 1)
	client := mcp.NewClient(&mcp.Implementation{Name: "fixture-test", Version: "0"}, &mcp.ClientOptions{
		ResourceUpdatedHandler: func(_ context.Context, r *mcp.ResourceUpdatedNotificationRequest) {
			if r.Params.URI == conformancefixture.WatchedResourceURI {
				select {
				case updated <- struct{}{}:
				default:
				}
			}
		},
	})
	cs, err := client.Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	if err := cs.Subscribe(ctx, &mcp.SubscribeParams{URI: conformancefixture.WatchedResourceURI}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-updated:
	case <-time.After(conformancefixture.WatchedResourceInterval):
		t.Fatalf("no notifications/resources/updated within the default interval (%v) with a 10ms one", conformancefixture.WatchedResourceInterval)
	}
	res, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: conformancefixture.WatchedResourceURI})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Contents[0].Text; got == "Watched resource content, revision 0" {
		t.Errorf("watched resource after an update = %q; want a later revision", got)
	}
}
