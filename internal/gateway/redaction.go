package gateway

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/redact"
)

// minSecretLen is the length from which a configured secret's value is
// taken out of logs wherever it appears; shorter values (which no one
// should configure) would blank out ordinary words.
const minSecretLen = 6

// outputRedaction is what the gateway's log lines and span texts are
// cleaned of: every secret value of cfg (upstream headers and
// environment, id keys, passwords, collectors' tokens), the built-in
// secrets detectors (bearer tokens, JWTs, cloud keys, ...) and the audit
// trail's redaction patterns and detectors. Redaction matches become
// audit.Redacted or the detector's marker.
func outputRedaction(cfg *config.Config) (func(string) string, error) {
	var lits []string
	for _, s := range cfg.Secrets() {
		if len(s) >= minSecretLen {
			lits = append(lits, s)
		}
	}
	// Longer first, so that a secret containing another goes whole.
	slices.SortFunc(lits, func(a, b string) int { return len(b) - len(a) })
	lits = slices.Compact(lits)
	rules, _ := redact.Lookup("secrets")
	var res []*regexp.Regexp
	if a := cfg.Audit; a != nil {
		for i, p := range a.Redact.Patterns {
			re, err := regexp.Compile(p)
			if err != nil {
				return nil, fmt.Errorf("audit.redact.patterns[%d]: %w", i, err)
			}
			res = append(res, re)
		}
		for i, name := range a.Redact.Detectors {
			if name == "secrets" {
				continue
			}
			rs, ok := redact.Lookup(name)
			if !ok {
				return nil, fmt.Errorf("audit.redact.detectors[%d]: unknown detector set %q", i, name)
			}
			rules = append(rules, rs...)
		}
	}
	red, err := redact.Compile(rules)
	if err != nil {
		return nil, err
	}
	return func(s string) string {
		for _, l := range lits {
			if strings.Contains(s, l) {
				s = strings.ReplaceAll(s, l, audit.Redacted)
			}
		}
		for _, re := range res {
			if re.MatchString(s) {
				s = re.ReplaceAllLiteralString(s, audit.Redacted)
			}
		}
		s, _ = red.String(s)
		return s
	}, nil
}
