package arch

import (
	"os/exec"
	"strings"
	"testing"
)

const (
	root = "github.com/mcpgate/mcpgate"
	mod  = root + "/"
)

// rel is a package's path in the module; "." for the root package.
func rel(p string) string {
	if p == root {
		return "."
	}
	return strings.TrimPrefix(p, mod)
}

// TestImportDirection fails when a package imports one above it.
func TestImportDirection(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, mod+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	// Who may import each package (by prefix); anything else is a violation.
	// The root package (the library, "." here) assembles the gateway as
	// the binary does; the command line is a user of it.
	allowed := map[string][]string{
		"internal/gateway":  {"internal/cli", "internal/admin", "bench", "test/", "."},
		"internal/admin":    {"internal/cli", "test/", "."},
		".":                 {"internal/cli", "cmd/", "bench", "test/", "examples/"},
		"internal/frontend": {"internal/gateway", "test/"},
		"internal/cli":      {"cmd/"},
	}
	// Packages that must import nothing above them.
	below := map[string][]string{
		"internal/core":      {"internal/"},
		"internal/session":   {"internal/frontend", "internal/gateway", "internal/upstream", "internal/store"},
		"internal/upstream":  {"internal/frontend", "internal/gateway", "internal/session"},
		"internal/store":     {"internal/frontend", "internal/gateway", "internal/session", "internal/upstream"},
		"internal/limits":    {"internal/frontend", "internal/gateway", "internal/session", "internal/store"},
		"internal/sessionid": {"internal/"},
		"internal/pipeline":  {"internal/frontend", "internal/gateway", "internal/interceptors"},
		"internal/sse":       {"internal/"},
		// Per-call values travel from the frontend to the upstreams
		// through it: it sits below both.
		"internal/callctx":      {"internal/"},
		"internal/metrics":      {"internal/frontend", "internal/gateway", "internal/cli", "internal/interceptors"},
		"internal/interceptors": {"internal/frontend", "internal/gateway", "internal/session", "internal/upstream"},
		// Authentication is established before any session exists and
		// knows nothing of sessions, stores or upstreams: the gateway
		// hands its Authenticate to the frontend.
		"internal/auth": {"internal/frontend", "internal/gateway", "internal/cli", "internal/session", "internal/store", "internal/upstream", "internal/interceptors"},
		// The catalog and the redactor are leaves any layer may hold (the
		// upstream bridge, the frontend, the policy stage, an audit trail).
		"internal/catalog": {"internal/"},
		"internal/redact":  {"internal/"},
		// The policy stage decides on messages alone: it knows nothing of
		// sessions, stores, upstreams or the frontend, and its rules'
		// environment (policy/expr) is what configuration validation
		// compiles with.
		"internal/policy":      {"internal/frontend", "internal/gateway", "internal/cli", "internal/session", "internal/store", "internal/upstream", "internal/interceptors", "internal/auth"},
		"internal/policy/expr": {"internal/"},
		// The audit trail takes options of its own (the configuration
		// imports it for the names it validates, never the reverse).
		"internal/audit": {"internal/frontend", "internal/gateway", "internal/cli", "internal/config", "internal/store", "internal/upstream", "internal/interceptors"},
	}
	// Packages that must not import a package beside them: the upstream
	// packages take options of their own, which the gateway translates the
	// configuration into.
	never := map[string][]string{
		"internal/upstream": {"internal/config"},
		// Nothing inside the module builds on the library but the
		// command line, examples and tests.
		"internal/gateway":  {"."},
		"internal/frontend": {"."},
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := rel(fields[0])
		for _, imp := range fields[1:] {
			if imp != root && !strings.HasPrefix(imp, mod) {
				continue
			}
			dep := rel(imp)
			for target, who := range allowed {
				if dep == target || target != "." && strings.HasPrefix(dep, target+"/") {
					ok := false
					for _, w := range who {
						ok = ok || strings.HasPrefix(pkg, w)
					}
					if !ok {
						t.Errorf("%s imports %s (only %v may)", pkg, dep, who)
					}
				}
			}
			for low, forbidden := range never {
				if pkg != low && !strings.HasPrefix(pkg, low+"/") {
					continue
				}
				for _, f := range forbidden {
					if dep == f || strings.HasPrefix(dep, f+"/") {
						t.Errorf("%s imports %s, which it may not", pkg, dep)
					}
				}
			}
			for low, forbidden := range below {
				if pkg != low && !strings.HasPrefix(pkg, low+"/") {
					continue
				}
				for _, f := range forbidden {
					if strings.HasPrefix(dep, f) && !strings.HasPrefix(dep, low) && dep != "internal/core" {
						t.Errorf("%s imports %s, which is above it", pkg, dep)
					}
				}
			}
		}
	}
}
