// Package policy is the policy pipeline stage: the configuration's
// policies, compiled for one route and enforced on every message of the
// sessions they match. Nearest the server in the chain, it refuses what a
// session may not use before it goes up (tools, resources and prompts by
// glob, CEL rules, tools/call arguments against the tool's inputSchema),
// removes what the session may not see from list results, and redacts or
// withholds what comes back (results, resource contents, prompt messages,
// notifications). Every decision names its policy and rule, as a Decision
// event to the chain's observers (pipeline.Event) and in what the client
// gets.
//
// Which policies apply is decided once per session, from its identity
// (core.SessionInfo: principal, tenant, groups) and route; a session no
// policy matches passes the stage untouched, and a route no policy can
// match has no policy stage at all.
package policy

import (
	"fmt"
	"log/slog"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"github.com/bmatcuk/doublestar/v4"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/core"
	"github.com/mcpgate/mcpgate/internal/pipeline"
	"github.com/mcpgate/mcpgate/internal/policy/expr"
	"github.com/mcpgate/mcpgate/internal/redact"
)

// StageName is the stage's name in pipeline.Order.
const StageName = "policy"

// CodeDenied is the JSON-RPC code of a request a policy refused that is
// not a tools/call (a tools/call gets a tool result with isError).
const CodeDenied = core.CodePolicyDenied

// MaxPolicies bounds the policies one route may apply.
const MaxPolicies = 64

// Set is one route's compiled policies.
type Set struct {
	route string
	log   *slog.Logger
	pols  []*compiled
	// effective caches what a combination of matching policies compiles
	// to, by the bit set of their indexes.
	mu        sync.Mutex
	effective map[uint64]*Effective
	chain     atomic.Pointer[pipeline.Chain]
	routeVal  ref.Val
}

type compiled struct {
	name                     string
	match                    config.PolicyMatch
	tools, resources, prompt *globs
	rules                    []rule
	validate                 bool
	redact                   []redact.Rule
	block                    []redact.Rule
}

type rule struct {
	id  string // "rules[1]"
	msg string
	r   *expr.Rule
}

// globs is one allow/deny pair.
type globs struct {
	allow, deny []string
}

// New compiles the policies that may apply on route (config.RoutePolicies).
// It returns nil when there are none: the route then has no policy stage.
// Errors name the configuration path of what failed to compile (the
// configuration's validation reports the same).
func New(route string, pols []config.Policy, log *slog.Logger) (*Set, error) {
	if len(pols) == 0 {
		return nil, nil
	}
	if len(pols) > MaxPolicies {
		return nil, fmt.Errorf("route %s: %d policies apply, at most %d", route, len(pols), MaxPolicies)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Set{route: route, log: log, effective: map[uint64]*Effective{}, routeVal: types.String(route)}
	for _, p := range pols {
		c := &compiled{name: p.Name, match: p.Match, validate: p.ValidateInput}
		c.tools, c.resources, c.prompt = newGlobs(p.Tools), newGlobs(p.Resources), newGlobs(p.Prompts)
		for j, r := range p.Rules {
			cr, err := expr.Compile(r.Deny)
			if err != nil {
				return nil, fmt.Errorf("policy %s: rules[%d].deny: %w", p.Name, j, err)
			}
			msg := r.Message
			if msg == "" {
				msg = "denied by rule rules[" + strconv.Itoa(j) + "]: " + r.Deny
			}
			c.rules = append(c.rules, rule{id: "rules[" + strconv.Itoa(j) + "]", msg: msg, r: cr})
		}
		for j, r := range p.Redact {
			id := "redact[" + strconv.Itoa(j) + "]"
			if r.Pattern != "" {
				rep := r.Replace
				if rep == "" {
					rep = config.DefaultRedaction
				}
				c.redact = append(c.redact, redact.Rule{Name: decisionName(p.Name, id), Pattern: r.Pattern, Replace: rep})
			}
			for _, d := range r.Detectors {
				rules, ok := redact.Lookup(d)
				if !ok {
					return nil, fmt.Errorf("policy %s: %s: unknown detector set %q", p.Name, id, d)
				}
				for _, dr := range rules {
					dr.Name = decisionName(p.Name, id+":"+dr.Name)
					c.redact = append(c.redact, dr)
				}
			}
		}
		for j, b := range p.Block {
			c.block = append(c.block, redact.Rule{Name: decisionName(p.Name, "block["+strconv.Itoa(j)+"]"), Pattern: b.Pattern})
		}
		if _, err := redact.Compile(c.redact); err != nil {
			return nil, fmt.Errorf("policy %s: redact: %w", p.Name, err)
		}
		if _, err := redact.Compile(c.block); err != nil {
			return nil, fmt.Errorf("policy %s: block: %w", p.Name, err)
		}
		s.pols = append(s.pols, c)
	}
	return s, nil
}

func newGlobs(l *config.PolicyList) *globs {
	if l == nil || (len(l.Allow) == 0 && len(l.Deny) == 0) {
		return nil
	}
	return &globs{allow: l.Allow, deny: l.Deny}
}

// decisionName joins a policy's name and a rule's id into a redact rule's
// name, which a decision splits again.
func decisionName(policy, rule string) string { return policy + "\x1f" + rule }

func splitName(n string) (policy, rule string) {
	policy, rule, _ = strings.Cut(n, "\x1f")
	return policy, rule
}

// check says which pattern refuses name: "" when name is allowed, else the
// rule ("deny[0]", "allow").
func (g *globs) check(name string) string {
	if g == nil {
		return ""
	}
	for i, p := range g.deny {
		if ok, _ := doublestar.Match(p, name); ok {
			return "deny[" + strconv.Itoa(i) + "]"
		}
	}
	if len(g.allow) == 0 {
		return ""
	}
	for _, p := range g.allow {
		if ok, _ := doublestar.Match(p, name); ok {
			return ""
		}
	}
	return "allow"
}

// matches reports whether the policy applies to the session.
func (c *compiled) matches(route string, info *core.SessionInfo) bool {
	m := c.match
	if len(m.Routes) > 0 && !slices.Contains(m.Routes, route) {
		return false
	}
	if len(m.Tenants) > 0 && !slices.Contains(m.Tenants, info.Tenant) {
		return false
	}
	if len(m.Principals) > 0 && !slices.Contains(m.Principals, info.Principal) {
		return false
	}
	if len(m.Groups) > 0 && !slices.ContainsFunc(m.Groups, func(g string) bool { return slices.Contains(info.Groups, g) }) {
		return false
	}
	return true
}

// Effective is what the policies matching one session compile to.
type Effective struct {
	set      *Set
	pols     []*compiled
	validate string // the first policy asking for input validation
	rules    bool
	argsUsed bool
	// argsPolicy is the first policy whose rules read args.
	argsPolicy string
	lists      [3]bool // some policy constrains tools, resources, prompts
	redactor   *redact.Redactor
	blocker    *redact.Redactor
	// names are names as CEL values (boxed), nNames how many.
	names  sync.Map
	nNames atomic.Int64
}

// For returns what applies to a session (nil when no policy matches).
func (s *Set) For(info *core.SessionInfo) *Effective {
	if s == nil || info == nil {
		return nil
	}
	var mask uint64
	for i, c := range s.pols {
		if c.matches(s.route, info) {
			mask |= 1 << i
		}
	}
	if mask == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.effective[mask]; e != nil {
		return e
	}
	e := &Effective{set: s}
	var red, blk []redact.Rule
	for m := mask; m != 0; m &= m - 1 {
		c := s.pols[bits.TrailingZeros64(m)]
		e.pols = append(e.pols, c)
		if c.validate && e.validate == "" {
			e.validate = c.name
		}
		e.rules = e.rules || len(c.rules) > 0
		for _, r := range c.rules {
			if r.r.UsesArgs && !e.argsUsed {
				e.argsUsed, e.argsPolicy = true, c.name
			}
		}
		e.lists[0] = e.lists[0] || c.tools != nil
		e.lists[1] = e.lists[1] || c.resources != nil
		e.lists[2] = e.lists[2] || c.prompt != nil
		red = append(red, c.redact...)
		blk = append(blk, c.block...)
	}
	// Both compiled in New already; these cannot fail.
	e.redactor, _ = redact.Compile(red)
	e.blocker, _ = redact.Compile(blk)
	s.effective[mask] = e
	return e
}

// kind of name a list constrains.
const (
	kindTool = iota
	kindResource
	kindPrompt
)

var kindKeys = [3]string{"tools", "resources", "prompts"}

// denied is a refusal: by which policy and rule, and why.
type denied struct {
	policy, rule, msg string
}

// allowed checks name against every policy's list of its kind.
func (e *Effective) allowed(kind int, name string) *denied {
	if !e.lists[kind] {
		return nil
	}
	for _, c := range e.pols {
		g := [3]*globs{c.tools, c.resources, c.prompt}[kind]
		if r := g.check(name); r != "" {
			what := [3]string{"tool", "resource", "prompt"}[kind]
			return &denied{policy: c.name, rule: kindKeys[kind] + "." + r, msg: what + " " + strconv.Quote(name) + " is not allowed by policy " + strconv.Quote(c.name)}
		}
	}
	return nil
}

func itoa(i int) string     { return strconv.Itoa(i) }
func quote(s string) string { return strconv.Quote(s) }
