package mcpgate_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func goCmd(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	// Everything resolves from the module cache (the main module's tests
	// have filled it) and the consumer's replace directive: no network. The
	// consumer's build adds the requirements it needs to its copy.
	mod := "-mod=readonly"
	if dir != "." {
		mod = "-mod=mod"
	}
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOPROXY=off", "GOFLAGS="+mod)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
	}
	return string(out)
}

// TestConsumerModule type-checks and vets a module outside this one that
// imports only the public package (testdata/consumer), in a copy whose
// replace directive points at this checkout and whose go.sum is this
// module's: vet adds what it requires (-mod=mod, offline), so its
// requirements follow this module's without anyone editing them. vet
// type-checks the whole program as a build would; linking it would only
// cost the suite seconds.
func TestConsumerModule(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, f := range []string{"main.go", "go.mod"} {
		b, err := os.ReadFile(filepath.Join("testdata", "consumer", f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "go.mod" {
			b = []byte(strings.Replace(string(b), "=> ../..", "=> "+root, 1))
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := os.ReadFile("go.sum")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644); err != nil {
		t.Fatal(err)
	}
	goCmd(t, dir, "vet", ".")
	list := goCmd(t, dir, "list", "-f", `{{join .Imports "\n"}}`, ".")
	for _, imp := range strings.Fields(list) {
		if strings.Contains(imp, "/internal/") {
			t.Errorf("the consumer imports %s", imp)
		}
	}
}

// TestPublicAPI: the package's surface fits on one screen and names no
// internal type, not even through an alias.
func TestPublicAPI(t *testing.T) {
	t.Parallel()
	short := goCmd(t, ".", "doc", ".")
	if n := strings.Count(short, "\n"); n > 60 {
		t.Errorf("go doc prints %d lines, want at most 60:\n%s", n, short)
	}
	all := goCmd(t, ".", "doc", "-all", ".")
	internal := regexp.MustCompile(`\b(config|core|gateway|session|frontend|inproc|upstream|store|admin|metrics|pipeline)\.[A-Z]`)
	for _, line := range strings.Split(all, "\n") {
		if strings.Contains(line, "internal/") || internal.MatchString(line) && !strings.HasPrefix(strings.TrimSpace(line), "//") {
			t.Errorf("the public API names an internal type: %s", line)
		}
	}
}

// TestReadmeExample: the README's library code is ExampleNewHandler_bounded's.
func TestReadmeExample(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(readme), "## Use as a library")
	if !ok {
		t.Fatal("README has no \"Use as a library\" section")
	}
	_, code, _ := strings.Cut(sec, "```go\n")
	code, _, _ = strings.Cut(code, "```")
	_, body, _ := strings.Cut(string(example), "func ExampleNewHandler_bounded() {\n")
	var want []string
	for _, l := range strings.Split(code, "\n") {
		if strings.TrimSpace(l) != "" {
			want = append(want, "\t"+l+"\n")
		}
	}
	if len(want) == 0 || !strings.HasPrefix(body, strings.Join(want, "")) {
		t.Fatalf("the README's code is not the start of ExampleNewHandler_bounded:\n%s", code)
	}
}
