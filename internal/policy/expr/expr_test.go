package expr_test

import (
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/policy/expr"
)

func TestCompile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		src      string
		usesArgs bool
		err      string
	}{
		{`tool == "query" && !args.sql.startsWith("SELECT")`, true, ""},
		{`"admins" in groups || principal == "root" || tenant == "acme" || route == "r" || method == "ping" || name == "x"`, false, ""},
		{`claims.org == "acme"`, false, ""},
		{`args.rows.exists(r, r > 10)`, true, ""},
		{`tool`, false, "a rule must be a bool"},
		{`tool +`, false, "Syntax error"},
		{`unknown_var == 1`, false, "undeclared reference to 'unknown_var'"},
		{strings.Repeat("a", 10_001), false, "at most 10000"},
	} {
		r, err := expr.Compile(tc.src)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%.40s: error %v; want %q", tc.src, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%.40s: %v", tc.src, err)
		case tc.err == "" && r.UsesArgs != tc.usesArgs:
			t.Errorf("%.40s: UsesArgs %v", tc.src, r.UsesArgs)
		}
	}
}

// FuzzCompile: any text compiles or is refused with an error, never a
// panic.
func FuzzCompile(f *testing.F) {
	f.Add(`tool == "query" && !args.sql.startsWith("SELECT")`)
	f.Add(`args.a.b.c[0].map(x, x * 2).size() > 1`)
	f.Add(`((((((((((`)
	f.Fuzz(func(t *testing.T, src string) {
		_, _ = expr.Compile(src)
	})
}
