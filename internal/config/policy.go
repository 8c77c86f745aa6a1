package config

import (
	"fmt"
	"strings"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/mcpgate/mcpgate/internal/policy/expr"
	"github.com/mcpgate/mcpgate/internal/redact"
)

// Policy is one entry of the top-level policies list: what a set of
// sessions (Match) may use, and what is kept from what flows back to them.
// Every policy that matches a session applies: a tool, resource or prompt
// must pass them all, every rule of each is evaluated, and all their
// redactions and blocks apply.
type Policy struct {
	// Name names the policy in errors and decisions. Required, unique.
	Name string `yaml:"name"`
	// Match selects the sessions the policy applies to; every list given
	// must contain the session's value (AND across lists); an empty or
	// missing list matches all. Groups match when the session's principal
	// is in any of them.
	Match PolicyMatch `yaml:"match"`
	// Tools, Resources and Prompts are glob lists over tool names,
	// resource URIs (resource templates' uriTemplate) and prompt names.
	Tools     *PolicyList `yaml:"tools"`
	Resources *PolicyList `yaml:"resources"`
	Prompts   *PolicyList `yaml:"prompts"`
	// Rules are CEL expressions over the request; one that is true denies
	// it.
	Rules []PolicyRule `yaml:"rules"`
	// ValidateInput checks tools/call arguments against the tool's
	// inputSchema (JSON Schema 2020-12) before the call goes upstream.
	ValidateInput bool `yaml:"validate_input"`
	// Redact rewrites matches in results, resource contents, prompt
	// messages and notifications.
	Redact []PolicyRedact `yaml:"redact"`
	// Block withholds a result that matches any pattern entirely.
	Block []PolicyBlock `yaml:"block"`
}

// PolicyMatch selects sessions by route name, tenant, principal and group.
type PolicyMatch struct {
	Routes     []string `yaml:"routes"`
	Tenants    []string `yaml:"tenants"`
	Principals []string `yaml:"principals"`
	Groups     []string `yaml:"groups"`
}

// PolicyList is an allowlist and a denylist of globs (doublestar syntax:
// `*` any run of characters but `/`, `**` any run, `?`, `[...]`,
// `{a,b}`). A name must match some allow pattern when allow is given, and
// no deny pattern: deny wins.
type PolicyList struct {
	Allow []string `yaml:"allow"`
	Deny  []string `yaml:"deny"`
}

// PolicyRule is one CEL rule: when Deny evaluates to true the request is
// refused with Message.
type PolicyRule struct {
	Deny    string `yaml:"deny"`
	Message string `yaml:"message"`
}

// PolicyRedact is either a pattern and its replacement, or a list of
// built-in detector sets (secrets).
type PolicyRedact struct {
	Pattern string `yaml:"pattern"`
	// Replace is what a match becomes ($1, ${name} expand groups).
	// Default "[REDACTED]".
	Replace   string   `yaml:"replace"`
	Detectors []string `yaml:"detectors"`
}

// PolicyBlock is a pattern whose match withholds a whole result.
type PolicyBlock struct {
	Pattern string `yaml:"pattern"`
}

// DefaultRedaction is what a redact pattern's match becomes without
// replace.
const DefaultRedaction = "[REDACTED]"

// RoutePolicies are the policies whose match may apply on the named route
// (match.routes empty or naming it), in file order.
func (c *Config) RoutePolicies(route string) []Policy {
	var out []Policy
	for _, p := range c.Policies {
		if len(p.Match.Routes) == 0 || contains(p.Match.Routes, route) {
			out = append(out, p)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// validatePolicies checks the policies: names, the routes they name, and
// every glob, CEL rule and regular expression compiled as the policy stage
// compiles them.
func (c *Config) validatePolicies(bad func(path, format string, args ...any)) {
	routes := map[string]bool{}
	for _, r := range c.Routes {
		routes[r.Name] = true
	}
	names := map[string]int{}
	for i, p := range c.Policies {
		pp := fmt.Sprintf("policies[%d]", i)
		switch {
		case strings.TrimSpace(p.Name) == "":
			bad(pp+".name", "required: decisions and errors name the policy")
		default:
			if j, dup := names[p.Name]; dup {
				bad(pp+".name", "duplicate policy name %q (policies[%d])", p.Name, j)
			}
			names[p.Name] = i
		}
		for j, r := range p.Match.Routes {
			if !routes[r] {
				bad(fmt.Sprintf("%s.match.routes[%d]", pp, j), "no route is named %q", r)
			}
		}
		for _, l := range []struct {
			key  string
			list *PolicyList
		}{{"tools", p.Tools}, {"resources", p.Resources}, {"prompts", p.Prompts}} {
			if l.list == nil {
				continue
			}
			for k, kind := range [][]string{l.list.Allow, l.list.Deny} {
				which := [...]string{"allow", "deny"}[k]
				for j, g := range kind {
					if g == "" || !doublestar.ValidatePattern(g) {
						bad(fmt.Sprintf("%s.%s.%s[%d]", pp, l.key, which, j), "not a valid glob: %q", g)
					}
				}
			}
		}
		for j, r := range p.Rules {
			rp := fmt.Sprintf("%s.rules[%d]", pp, j)
			if strings.TrimSpace(r.Deny) == "" {
				bad(rp+".deny", "required: a CEL expression that is true for what to refuse")
				continue
			}
			if _, err := expr.Compile(r.Deny); err != nil {
				bad(rp+".deny", "%s", oneLine(err.Error()))
			}
		}
		for j, r := range p.Redact {
			rp := fmt.Sprintf("%s.redact[%d]", pp, j)
			switch {
			case r.Pattern == "" && len(r.Detectors) == 0:
				bad(rp, "set pattern (and replace), or detectors (%s)", strings.Join(redact.Detectors(), ", "))
			case r.Pattern != "" && len(r.Detectors) > 0:
				bad(rp, "set pattern or detectors, not both")
			case r.Pattern != "":
				if _, err := redact.Compile([]redact.Rule{{Pattern: r.Pattern, Replace: r.Replace}}); err != nil {
					bad(rp+".pattern", "%s", patternError(err))
				}
			}
			if r.Replace != "" && r.Pattern == "" {
				bad(rp+".replace", "set only with pattern")
			}
			for k, d := range r.Detectors {
				if _, ok := redact.Lookup(d); !ok {
					bad(fmt.Sprintf("%s.detectors[%d]", rp, k), "unknown detector set %q (known: %s)", d, strings.Join(redact.Detectors(), ", "))
				}
			}
		}
		for j, b := range p.Block {
			bp := fmt.Sprintf("%s.block[%d].pattern", pp, j)
			if b.Pattern == "" {
				bad(bp, "required")
				continue
			}
			if _, err := redact.Compile([]redact.Rule{{Pattern: b.Pattern}}); err != nil {
				bad(bp, "%s", patternError(err))
			}
		}
	}
}

// patternError is a regexp compile error without the rule prefix redact
// puts before it.
func patternError(err error) string {
	s := err.Error()
	if i := strings.Index(s, "): "); i >= 0 {
		s = s[i+3:]
	}
	return "not a valid regular expression: " + s
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	return strings.Join(strings.Fields(s), " ")
}
