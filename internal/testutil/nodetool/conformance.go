package nodetool

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// ConformancePackage is the npm package of the MCP conformance suite.
const ConformancePackage = "@modelcontextprotocol/conformance"

// Check statuses written by the conformance CLI. INFO checks are trace
// entries (requests sent, responses seen) and count as neither pass nor fail.
const (
	StatusSuccess = "SUCCESS"
	StatusFailure = "FAILURE"
	StatusWarning = "WARNING"
	StatusSkipped = "SKIPPED"
	StatusInfo    = "INFO"
)

// ConformanceResult is the outcome of one run of the conformance CLI.
type ConformanceResult struct {
	// ExitCode is the CLI's exit status: non-zero when a (scored) check
	// failed.
	ExitCode int
	// Scenarios maps a scenario name (e.g. "tools-call-simple-text") to its
	// checks, as read from the checks.json the CLI wrote for it.
	Scenarios map[string]ScenarioResult
	// Output is the CLI's combined stdout and stderr.
	Output string
}

// ScenarioResult summarises one scenario's checks.json.
type ScenarioResult struct {
	Scenario string
	// Passed, Failed, Warnings and Skipped count the checks whose status is
	// SUCCESS, FAILURE, WARNING and SKIPPED. The CLI's own summary line
	// ("N passed, M failed") counts the first two.
	Passed, Failed, Warnings, Skipped int
	// Failures are the FAILURE checks, in the order the scenario wrote them.
	Failures []Check
	// Checks are all the checks, INFO entries included.
	Checks []Check
	// NotScored is the reason ("extension", "pending", "added-after-release")
	// that a --requirements run reported the scenario as run but not scored;
	// empty for scored scenarios and for runs without --requirements.
	NotScored string
}

// OK reports whether no check of the scenario failed.
func (s ScenarioResult) OK() bool { return s.Failed == 0 }

// Check is one entry of a checks.json file.
type Check struct {
	ID          string          `json:"id"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Status      string          `json:"status"`
	Message     string          `json:"errorMessage,omitempty"`
	Details     json.RawMessage `json:"details,omitempty"`
}

func (c Check) String() string {
	msg := c.Message
	if msg == "" {
		msg = c.Description
	}
	return fmt.Sprintf("%s (%s): %s", c.ID, c.Name, msg)
}

// RunConformance runs the conformance suite's server leg against the MCP
// endpoint url: `conformance server --url URL -o DIR extraArgs...`, with DIR
// a fresh temporary directory, and parses the checks.json files written
// there. Without extraArgs the CLI runs its active suite at the dated
// (session) protocol versions; pass e.g. "--requirements", "2026-07-28" or
// "--scenario", "ping" to choose others.
//
// It fails the test only when the CLI could not run or wrote no results;
// judging them is the caller's business (see Failures).
func RunConformance(ctx context.Context, t testing.TB, url string, extraArgs ...string) ConformanceResult {
	t.Helper()
	entry := conformanceEntry(t)
	dir := t.TempDir()
	args := append([]string{"server", "--url", url, "-o", dir}, extraArgs...)
	cmd := Command(ctx, t, entry, args...)
	cmd.Env = append(cmd.Env, "NO_COLOR=1")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	res := ConformanceResult{}
	err := cmd.Run()
	res.Output = out.String()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("nodetool: conformance run against %s interrupted: %v\n%s", url, ctx.Err(), res.Output)
	case errors.As(err, &exit):
		res.ExitCode = exit.ExitCode()
	case err != nil:
		t.Fatalf("nodetool: running the conformance CLI: %v\n%s", err, res.Output)
	}
	scenarios, err := ParseConformanceDir(dir)
	if err != nil {
		t.Fatalf("nodetool: reading conformance results: %v\n%s", err, res.Output)
	}
	if len(scenarios) == 0 {
		t.Fatalf("nodetool: the conformance CLI (exit code %d) wrote no results\n%s", res.ExitCode, res.Output)
	}
	for name, reason := range parseNotScored(res.Output) {
		if s, ok := scenarios[name]; ok {
			s.NotScored = reason
			scenarios[name] = s
		}
	}
	res.Scenarios = scenarios
	return res
}

// conformanceEntry returns the JavaScript file of the conformance CLI, as
// named by the "bin" field of the package's package.json.
func conformanceEntry(t testing.TB) string {
	t.Helper()
	data, err := os.ReadFile(Bin(t, ConformancePackage, "package.json"))
	if err != nil {
		t.Fatalf("nodetool: %v", err)
	}
	var pkg struct {
		Bin json.RawMessage `json:"bin"`
	}
	if err := json.Unmarshal(data, &pkg); err != nil {
		t.Fatalf("nodetool: %s package.json: %v", ConformancePackage, err)
	}
	var entry string
	if json.Unmarshal(pkg.Bin, &entry) != nil { // either "bin": "file" or "bin": {"name": "file"}
		var bins map[string]string
		if err := json.Unmarshal(pkg.Bin, &bins); err != nil || bins["conformance"] == "" {
			t.Fatalf("nodetool: %s package.json names no conformance bin: %s", ConformancePackage, pkg.Bin)
		}
		entry = bins["conformance"]
	}
	return Bin(t, ConformancePackage, entry)
}

// resultDirName matches the directories the CLI writes below -o:
// "server-<scenario>-<ISO time with : and . replaced by ->".
var resultDirName = regexp.MustCompile(`^server-(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$`)

// ParseConformanceDir reads the results the conformance CLI wrote to the
// directory given as -o: one subdirectory per scenario, named
// server-<scenario>-<timestamp>, each holding a checks.json that is a JSON
// array of checks ({id, name, description, status, timestamp, errorMessage?,
// specReferences?, details?}).
func ParseConformanceDir(dir string) (map[string]ScenarioResult, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := make(map[string]ScenarioResult)
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name(), "checks.json"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return nil, err
		}
		var checks []Check
		if err := json.Unmarshal(data, &checks); err != nil {
			return nil, fmt.Errorf("%s/checks.json: %w", e.Name(), err)
		}
		name := e.Name()
		if m := resultDirName.FindStringSubmatch(name); m != nil {
			name = m[1]
		}
		s := out[name] // a scenario run twice accumulates
		s.Scenario = name
		for _, c := range checks {
			s.Checks = append(s.Checks, c)
			switch c.Status {
			case StatusSuccess:
				s.Passed++
			case StatusFailure:
				s.Failed++
				s.Failures = append(s.Failures, c)
			case StatusWarning:
				s.Warnings++
			case StatusSkipped:
				s.Skipped++
			}
		}
		out[name] = s
	}
	return out, nil
}

// notScoredLine matches an entry of the CLI's "Not scored for <revision>:"
// list: "  ✗ tasks-lifecycle (extension)".
var notScoredLine = regexp.MustCompile(`^\s+\S+\s+(\S+)\s+\(([^)]*)\)\s*$`)

// parseNotScored returns the scenarios that a --requirements run listed as
// not scored, with the reason it gave.
func parseNotScored(output string) map[string]string {
	out := map[string]string{}
	in := false
	for line := range strings.Lines(output) {
		line = strings.TrimRight(line, "\r\n")
		if strings.HasPrefix(line, "Not scored for ") {
			in = true
			continue
		}
		if !in {
			continue
		}
		m := notScoredLine.FindStringSubmatch(line)
		if m == nil {
			in = false
			continue
		}
		out[m[1]] = m[2]
	}
	return out
}

// Names returns the scenario names, sorted.
func (r ConformanceResult) Names() []string {
	names := make([]string, 0, len(r.Scenarios))
	for n := range r.Scenarios {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Totals adds up the checks of all scenarios.
func (r ConformanceResult) Totals() (passed, failed int) {
	for _, s := range r.Scenarios {
		passed += s.Passed
		failed += s.Failed
	}
	return passed, failed
}

// Failures describes every failed check of the scored scenarios, one
// "scenario: id (name): message" line each, sorted by scenario. A non-zero
// exit code that no failed check explains is a failure too.
func (r ConformanceResult) Failures() []string {
	var out []string
	for _, name := range r.Names() {
		s := r.Scenarios[name]
		if s.NotScored != "" {
			continue
		}
		for _, c := range s.Failures {
			out = append(out, name+": "+c.String())
		}
	}
	if len(out) == 0 && r.ExitCode != 0 {
		out = append(out, fmt.Sprintf("the conformance CLI exited with code %d", r.ExitCode))
	}
	return out
}

// NotScoredFailures names the scenarios that failed but that the requirement
// set does not score, with the reason, e.g. "tasks-lifecycle (extension): 8
// failed".
func (r ConformanceResult) NotScoredFailures() []string {
	var out []string
	for _, name := range r.Names() {
		if s := r.Scenarios[name]; s.NotScored != "" && !s.OK() {
			out = append(out, fmt.Sprintf("%s (%s): %d failed", name, s.NotScored, s.Failed))
		}
	}
	return out
}

// Diff lists, one line each, the scenarios whose outcome differs between r
// and other: passed in one and failed (or absent) in the other, or failed in
// both with different failed checks. It is empty when the runs agree; use it
// to compare a run through the gateway (r) with a direct run (other).
func (r ConformanceResult) Diff(other ConformanceResult) string {
	names := r.Names()
	for _, n := range other.Names() {
		if _, ok := r.Scenarios[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var b strings.Builder
	for _, name := range names {
		a, inA := r.Scenarios[name]
		o, inO := other.Scenarios[name]
		if outcome(a, inA) == outcome(o, inO) && (a.OK() || slices.Equal(failedIDs(a), failedIDs(o))) {
			continue
		}
		fmt.Fprintf(&b, "%s: %s here, %s in the other run", name, describe(a, inA), describe(o, inO))
		if why := firstFailure(a, o); why != "" {
			fmt.Fprintf(&b, "; %s", why)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func outcome(s ScenarioResult, present bool) string {
	switch {
	case !present:
		return "absent"
	case s.OK():
		return "passed"
	default:
		return "failed"
	}
}

func describe(s ScenarioResult, present bool) string {
	o := outcome(s, present)
	if o != "failed" {
		return o
	}
	return fmt.Sprintf("failed [%s]", strings.Join(failedIDs(s), ", "))
}

func failedIDs(s ScenarioResult) []string {
	ids := make([]string, 0, len(s.Failures))
	for _, c := range s.Failures {
		ids = append(ids, c.ID)
	}
	return ids
}

// firstFailure returns the first failed check of a, else of b.
func firstFailure(a, b ScenarioResult) string {
	for _, s := range []ScenarioResult{a, b} {
		if len(s.Failures) > 0 {
			return s.Failures[0].String()
		}
	}
	return ""
}
