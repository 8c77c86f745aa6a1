package storetest

import (
	"regexp"
	"testing"
)

func TestRunPattern(t *testing.T) {
	tests := []struct {
		name    string
		test    string
		matches []string // test names, level by level, that the pattern selects
		misses  []string
	}{
		{
			name:    "top level",
			test:    "TestDurable",
			matches: []string{"TestDurable"},
			misses:  []string{"TestDurableX", "XTestDurable"},
		},
		{
			name:    "subtest",
			test:    "TestDurable/Crash",
			matches: []string{"TestDurable", "Crash"},
			misses:  []string{"Crash2"},
		},
		{
			name:    "metacharacters",
			test:    "TestX/a.b+c#01",
			matches: []string{"TestX", "a.b+c#01"},
			misses:  []string{"aXb+c#01", "a.bbc#01"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := runPattern(tt.test)
			levels := splitLevels(p)
			if len(levels) != len(tt.matches) {
				t.Fatalf("runPattern(%q) = %q: %d levels; want %d", tt.test, p, len(levels), len(tt.matches))
			}
			for i, name := range tt.matches {
				if !regexp.MustCompile(levels[i]).MatchString(name) {
					t.Errorf("level %d pattern %q does not match %q", i, levels[i], name)
				}
			}
			last := regexp.MustCompile(levels[len(levels)-1])
			for _, name := range tt.misses {
				if last.MatchString(name) {
					t.Errorf("pattern %q matches %q", levels[len(levels)-1], name)
				}
			}
		})
	}
}

// splitLevels splits like the testing package does: on slashes outside
// brackets and parentheses.
func splitLevels(p string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '[', '(':
			depth++
		case ']', ')':
			depth--
		case '\\':
			i++
		case '/':
			if depth == 0 {
				out = append(out, p[start:i])
				start = i + 1
			}
		}
	}
	return append(out, p[start:])
}
