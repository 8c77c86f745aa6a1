package nodetool

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestRoot(t *testing.T) {
	root := Root(t)
	for _, f := range []string{"go.mod", filepath.Join("tools", "node", "package.json")} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("Root() = %s, which lacks %s: %v", root, f, err)
		}
	}
}

func TestWithPathPrefix(t *testing.T) {
	got := withPathPrefix([]string{"A=1", "PATH=/usr/bin:/bin", "B=2"}, "/opt/node/bin")
	want := []string{"A=1", "B=2", "PATH=/opt/node/bin" + string(os.PathListSeparator) + "/usr/bin:/bin"}
	if !slices.Equal(got, want) {
		t.Errorf("withPathPrefix = %q, want %q", got, want)
	}
	if got := withPathPrefix([]string{"A=1"}, "/x"); !slices.Equal(got, []string{"A=1", "PATH=/x"}) {
		t.Errorf("withPathPrefix without PATH = %q", got)
	}
}

func TestCommandRunsPinnedNode(t *testing.T) {
	script := filepath.Join(t.TempDir(), "probe.js")
	const src = `process.stdout.write(process.version + "\n" + process.env.PATH.split(require("path").delimiter)[0] + "\n" + process.argv.slice(2).join(","))`
	if err := os.WriteFile(script, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := Command(t.Context(), t, script, "a", "b")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node %s: %v", script, err)
	}
	lines := strings.Split(string(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("unexpected output %q", out)
	}
	if !strings.HasPrefix(lines[0], "v22.") {
		t.Errorf("node version = %s, want v22.x", lines[0])
	}
	if want := filepath.Dir(Node(t)); lines[1] != want {
		t.Errorf("PATH starts with %s, want %s", lines[1], want)
	}
	if lines[2] != "a,b" {
		t.Errorf("arguments = %q, want a,b", lines[2])
	}
}

func TestBinRejectsEscapes(t *testing.T) {
	ft := &fatalRecorder{TB: t}
	func() {
		defer func() { _ = recover() }()
		Bin(ft, "../../etc", "passwd")
	}()
	if !ft.fatal {
		t.Error("Bin accepted a package path outside node_modules")
	}
}

func TestNeedSkipsOrFails(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "absent", "bin", "node")
	for _, tc := range []struct {
		ci          string
		fatal, skip bool
	}{{"true", true, false}, {"", false, true}, {"false", false, true}} {
		t.Setenv("CI", tc.ci)
		rec := &fatalRecorder{TB: t}
		func() {
			defer func() { _ = recover() }()
			need(rec, missing, "the Node 22 binary")
		}()
		if rec.fatal != tc.fatal || rec.skip != tc.skip {
			t.Errorf("CI=%q: fatal=%v skip=%v, want fatal=%v skip=%v", tc.ci, rec.fatal, rec.skip, tc.fatal, tc.skip)
		}
		if !strings.Contains(rec.msg, InstallHint) {
			t.Errorf("CI=%q: message %q does not name %q", tc.ci, rec.msg, InstallHint)
		}
	}
}

// fatalRecorder records Fatal and Skip calls instead of ending the test;
// the call panics so that the code after it does not run.
type fatalRecorder struct {
	testing.TB
	fatal, skip bool
	msg         string
}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.fatal, f.msg = true, fmt.Sprintf(format, args...)
	panic("fatal")
}
func (f *fatalRecorder) Fatal(args ...any) {
	f.fatal, f.msg = true, fmt.Sprint(args...)
	panic("fatal")
}
func (f *fatalRecorder) Skip(args ...any) { f.skip, f.msg = true, fmt.Sprint(args...); panic("skip") }

func writeChecks(t *testing.T, dir, sub, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, sub, "checks.json"), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestParseConformanceDir(t *testing.T) {
	dir := t.TempDir()
	writeChecks(t, dir, "server-tools-call-simple-text-2026-11-22T03-22-49-765Z", `[
		{"id":"tools-call-simple-text","name":"ToolsCallSimpleText","description":"Tool returns simple text content","status":"SUCCESS","timestamp":"2026-11-22T03:22:49.765Z","specReferences":[{"id":"MCP-Tools"}],"details":{"result":{}}},
		{"id":"wire-schema-valid","name":"WireSchemaValid","description":"d","status":"SUCCESS","timestamp":"t"}
	]`)
	writeChecks(t, dir, "server-input-required-result-tampered-state-2026-11-22T03-22-50-000Z", `[
		{"id":"outgoing-request","name":"OutgoingRequest","description":"Sending POST","status":"INFO","timestamp":"t"},
		{"id":"sep-2322-reject-tampered-state","name":"RejectTamperedState","description":"Server rejects tampered requestState with error","status":"FAILURE","timestamp":"t","errorMessage":"Server accepted tampered requestState"},
		{"id":"server-sse-priming-event","name":"Priming","description":"priming","status":"WARNING","timestamp":"t","errorMessage":"no priming event"},
		{"id":"tasks-status","name":"TasksStatus","description":"skipped","status":"SKIPPED","timestamp":"t"}
	]`)
	if err := os.WriteFile(filepath.Join(dir, "stray.txt"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ParseConformanceDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("parsed %d scenarios, want 2: %v", len(got), got)
	}
	ok := got["tools-call-simple-text"]
	if ok.Passed != 2 || ok.Failed != 0 || !ok.OK() || len(ok.Checks) != 2 {
		t.Errorf("tools-call-simple-text = %+v", ok)
	}
	bad := got["input-required-result-tampered-state"]
	if bad.Passed != 0 || bad.Failed != 1 || bad.Warnings != 1 || bad.Skipped != 1 || len(bad.Checks) != 4 || bad.OK() {
		t.Errorf("input-required-result-tampered-state = %+v", bad)
	}
	if len(bad.Failures) != 1 || bad.Failures[0].ID != "sep-2322-reject-tampered-state" || bad.Failures[0].Message != "Server accepted tampered requestState" {
		t.Errorf("failures = %+v", bad.Failures)
	}
}

const sampleOutput = `=== SUMMARY ===
✓ server-stateless: 30 passed, 0 failed
✗ tasks-lifecycle: 1 passed, 8 failed
✓ json-schema-2020-12: 8 passed, 0 failed

Total: 39 passed, 8 failed

Not scored for 2026-07-28: 2 scenario(s) run, 1 failing. These do not affect conformance.
  ✗ tasks-lifecycle (extension)
  ✓ json-schema-2020-12 (pending)
`

func TestParseNotScored(t *testing.T) {
	got := parseNotScored(sampleOutput)
	if len(got) != 2 || got["tasks-lifecycle"] != "extension" || got["json-schema-2020-12"] != "pending" {
		t.Errorf("parseNotScored = %v", got)
	}
	if got := parseNotScored("Total: 1 passed, 0 failed\n"); len(got) != 0 {
		t.Errorf("parseNotScored without a list = %v", got)
	}
}

func TestFailuresAndDiff(t *testing.T) {
	fail := func(id string) ScenarioResult {
		c := Check{ID: id, Name: "N", Status: StatusFailure, Message: "boom"}
		return ScenarioResult{Failed: 1, Failures: []Check{c}, Checks: []Check{c}}
	}
	pass := ScenarioResult{Passed: 2}
	ext := fail("tasks-x")
	ext.NotScored = "extension"

	direct := ConformanceResult{Scenarios: map[string]ScenarioResult{
		"ping": pass, "tools-list": pass, "caching": fail("c1"), "tasks-lifecycle": ext, "only-direct": pass,
	}}
	gateway := ConformanceResult{ExitCode: 1, Scenarios: map[string]ScenarioResult{
		"ping": pass, "tools-list": fail("tools-list"), "caching": fail("c2"), "tasks-lifecycle": ext,
	}}

	if f := direct.Failures(); len(f) != 1 || f[0] != "caching: c1 (N): boom" {
		t.Errorf("direct.Failures() = %q", f)
	}
	if f := gateway.Failures(); len(f) != 2 {
		t.Errorf("gateway.Failures() = %q", f)
	}
	if f := (ConformanceResult{ExitCode: 2}).Failures(); len(f) != 1 || !strings.Contains(f[0], "code 2") {
		t.Errorf("Failures() of an unexplained exit code = %q", f)
	}
	if f := gateway.NotScoredFailures(); len(f) != 1 || f[0] != "tasks-lifecycle (extension): 1 failed" {
		t.Errorf("NotScoredFailures() = %q", f)
	}

	diff := gateway.Diff(direct)
	lines := strings.Split(strings.TrimSpace(diff), "\n")
	if len(lines) != 3 {
		t.Fatalf("Diff = %q, want 3 lines", diff)
	}
	for i, prefix := range []string{"caching: failed [c2] here, failed [c1]", "only-direct: absent here, passed", "tools-list: failed [tools-list] here, passed"} {
		if !strings.HasPrefix(lines[i], prefix) {
			t.Errorf("Diff line %d = %q, want prefix %q", i, lines[i], prefix)
		}
	}
	if d := direct.Diff(direct); d != "" {
		t.Errorf("Diff with itself = %q", d)
	}
}
