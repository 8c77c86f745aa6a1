package auth

import (
	"context"
	"slices"
	"sort"
	"strings"

	"github.com/mcpgate/mcpgate/internal/core"
)

// scopeRule is one auth.scopes entry: the messages it covers (a method
// pattern, and a name pattern when the key has one) and the scopes they
// need.
type scopeRule struct {
	method, name string
	named        bool
	scopes       []string
}

// scopeRules are a route's auth.scopes, in key order (every rule that
// matches applies, so the order changes nothing but the order of the
// scopes a challenge names).
type scopeRules []scopeRule

func newScopeRules(m map[string][]string) scopeRules {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	rules := make(scopeRules, 0, len(keys))
	for _, k := range keys {
		method, name, named := strings.Cut(k, ":")
		rules = append(rules, scopeRule{method: method, name: name, named: named, scopes: slices.Clone(m[k])})
	}
	return rules
}

// matches reports whether the rule covers a message of method with name
// (a tool or prompt name, a resource URI; "" when it has none).
func (r *scopeRule) matches(method, name string) bool {
	return glob(r.method, method) && (!r.named || glob(r.name, name))
}

// required are the scopes a message of method and name needs, each once,
// in rule order; nil when no rule covers it.
func (rs scopeRules) required(method, name string) []string {
	var out []string
	for i := range rs {
		if !rs[i].matches(method, name) {
			continue
		}
		for _, s := range rs[i].scopes {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

// glob matches s against pattern, where "*" stands for any run of
// characters (none included) and every other character for itself.
func glob(pattern, s string) bool {
	// The classic single-backtrack match: on a mismatch, let the last
	// star take one more character.
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && pattern[p] == s[i]:
			p++
			i++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// authorize is the client→server interceptor of the auth stage: a client
// request or notification passes only when the caller's credential
// grants every scope the route's rules require of it. The caller is the
// identity of the HTTP request the message came in on (core.CallerOf),
// not the session's creator: a client that obtained a token with more
// scopes after a 403 is served in the same session.
func (s *scheme) authorize(next core.Handler) core.Handler {
	return func(ctx context.Context, m *core.Message) (*core.Message, error) {
		if m.Direction != core.ClientToServer || (m.Kind != core.KindRequest && m.Kind != core.KindNotification) {
			return next(ctx, m)
		}
		need := s.rules.required(m.Method, m.Name)
		if len(need) == 0 {
			return next(ctx, m)
		}
		caller := core.CallerOf(ctx)
		var missing []string
		for _, sc := range need {
			if caller == nil || !caller.HasScope(sc) {
				missing = append(missing, sc)
			}
		}
		if len(missing) == 0 {
			return next(ctx, m)
		}
		what := m.Method
		if name := m.Name; name != "" {
			if len(name) > 128 {
				name = strings.ToValidUTF8(name[:128], "") + "…"
			}
			what += " " + name
		}
		// The challenge names what the operation needs together with what
		// every request needs, so that a client re-authorizing with it
		// keeps its access to the rest.
		scopes := slices.Clone(s.challenge.scopes)
		for _, sc := range need {
			if !slices.Contains(scopes, sc) {
				scopes = append(scopes, sc)
			}
		}
		anonymous := caller == nil || caller.IsAnonymous()
		return nil, s.challenge.insufficient(anonymous, scopes, what+" needs the scope(s) "+strings.Join(missing, " "))
	}
}
