package config

import (
	"fmt"
	"slices"
	"time"
)

// Quota is one budget (quotas[]): limits on what the sessions it matches
// may do, counted per session, per principal or per tenant. Every quota
// that matches a session applies to it; each is enforced on its own, and
// the first that refuses answers the client.
type Quota struct {
	// Name identifies the quota in errors, logs, events, metrics and
	// store keys: 1–64 of [A-Za-z0-9_.-]. Required, unique.
	Name string `yaml:"name"`
	// Match selects the sessions the quota applies to. Every field that
	// is set must match (AND); a field matches when any of its entries
	// does. Empty: every session of every route.
	Match QuotaMatch `yaml:"match"`
	// Per is what the budget is counted under: session, principal (within
	// its tenant: principal and tenant budgets survive re-initialize and
	// span sessions and replicas) or tenant. An anonymous caller's
	// principal budget is its client address's. Default session.
	Per string `yaml:"per"`
	// Window is how long a budget lasts: 0, the session's lifetime (per:
	// session only), or a rolling window (1m, 1h, 24h; at least 1s) in
	// which usage leaves the count as it ages. Default 0.
	Window time.Duration `yaml:"window"`
	// Requests caps every request the client sends. 0: no cap.
	Requests int64 `yaml:"requests"`
	// ToolCalls caps tools/call requests. 0: no cap.
	ToolCalls int64 `yaml:"tool_calls"`
	// Tools caps the calls of single tools, by name.
	Tools map[string]int64 `yaml:"tools"`
	// ResultTokens caps the tokens of the text content flowing back to
	// the client (tool results, resource contents, prompt messages),
	// counted with Tokenizer. A result that would exceed it is withheld
	// and replaced by an error. 0: no cap (nothing is tokenized).
	ResultTokens int64 `yaml:"result_tokens"`
	// ResultBytes caps the bytes of the results flowing back (every
	// response's result member): the cheap alternative to ResultTokens.
	ResultBytes ByteSize `yaml:"result_bytes"`
	// CallTimeout bounds one request's round trip: on expiry the
	// upstream gets notifications/cancelled and the client an error
	// naming the quota. 0: the route's request_timeout only.
	CallTimeout time.Duration `yaml:"call_timeout"`
	// SessionTime bounds a session's wall-clock life since it was
	// created: past it the session ends with reason quota (404
	// afterwards). 0: no bound beyond the session's TTL.
	SessionTime time.Duration `yaml:"session_time"`
	// Concurrent caps the requests in flight at once per key. 0: no cap.
	Concurrent int64 `yaml:"concurrent"`
	// WarnAt is the soft threshold, a fraction of each limit (0.8): the
	// first time usage reaches it the client gets one notifications/message
	// (level warning) naming the quota and its usage, and a quota_warning
	// event is logged. 0: no warning.
	WarnAt float64 `yaml:"warn_at"`
	// Tokenizer counts ResultTokens: o200k_base, cl100k_base (both
	// embedded, nothing is downloaded) or bytes4 (bytes/4, rounded up).
	// Default o200k_base.
	Tokenizer string `yaml:"tokenizer"`
}

// QuotaMatch selects sessions (see Quota.Match).
type QuotaMatch struct {
	// Routes are route names.
	Routes []string `yaml:"routes"`
	// Tenants, Principals and Groups are matched against the session's
	// identity as authentication established it.
	Tenants    []string `yaml:"tenants"`
	Principals []string `yaml:"principals"`
	Groups     []string `yaml:"groups"`
}

// Quota keys (Quota.Per) and tokenizers (Quota.Tokenizer).
const (
	QuotaPerSession   = "session"
	QuotaPerPrincipal = "principal"
	QuotaPerTenant    = "tenant"

	TokenizerO200K  = "o200k_base"
	TokenizerCL100K = "cl100k_base"
	TokenizerBytes4 = "bytes4"
)

// Counted reports whether the quota counts anything in a budget
// (requests, tool calls, tools, result tokens or bytes), as opposed to
// bounding time or concurrency only.
func (q *Quota) Counted() bool {
	return q.Requests > 0 || q.ToolCalls > 0 || len(q.Tools) > 0 || q.ResultTokens > 0 || q.ResultBytes > 0
}

// MatchesRoute reports whether the quota applies to sessions of route.
func (q *Quota) MatchesRoute(route string) bool {
	return len(q.Match.Routes) == 0 || slices.Contains(q.Match.Routes, route)
}

// MatchesIdentity reports whether the quota applies to a session of this
// identity (the route is MatchesRoute's).
func (q *Quota) MatchesIdentity(tenant, principal string, groups []string) bool {
	m := q.Match
	if len(m.Tenants) > 0 && !slices.Contains(m.Tenants, tenant) {
		return false
	}
	if len(m.Principals) > 0 && !slices.Contains(m.Principals, principal) {
		return false
	}
	if len(m.Groups) > 0 && !slices.ContainsFunc(m.Groups, func(g string) bool { return slices.Contains(groups, g) }) {
		return false
	}
	return true
}

func (c *Config) quotaDefaults() {
	for i := range c.Quotas {
		q := &c.Quotas[i]
		if q.Per == "" {
			q.Per = QuotaPerSession
		}
		if q.Tokenizer == "" {
			q.Tokenizer = TokenizerO200K
		}
	}
}

// quotaName is what a quota may be called: it appears in store keys and
// metric labels.
func quotaName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-') {
			return false
		}
	}
	return true
}

func (c *Config) validateQuotas(bad func(path, format string, args ...any)) {
	names := map[string]bool{}
	routes := map[string]bool{}
	for _, r := range c.Routes {
		routes[r.Name] = true
	}
	for i := range c.Quotas {
		q := &c.Quotas[i]
		p := fmt.Sprintf("quotas[%d]", i)
		switch {
		case q.Name == "":
			bad(p+".name", "required")
		case !quotaName(q.Name):
			bad(p+".name", "want 1-64 of A-Z a-z 0-9 _ . -, got %q", q.Name)
		case names[q.Name]:
			bad(p+".name", "duplicate quota name %q", q.Name)
		}
		names[q.Name] = true
		for j, r := range q.Match.Routes {
			if !routes[r] {
				bad(fmt.Sprintf("%s.match.routes[%d]", p, j), "no route is named %q", r)
			}
		}
		for field, list := range map[string][]string{"tenants": q.Match.Tenants, "principals": q.Match.Principals, "groups": q.Match.Groups} {
			for j, v := range list {
				if v == "" {
					bad(fmt.Sprintf("%s.match.%s[%d]", p, field, j), "must not be empty")
				}
			}
		}
		switch q.Per {
		case QuotaPerSession, QuotaPerPrincipal, QuotaPerTenant:
		default:
			bad(p+".per", "want session, principal or tenant, got %q", q.Per)
		}
		switch {
		case q.Window != 0 && q.Window < time.Second:
			bad(p+".window", "want 0 (the session's lifetime) or a rolling window of at least 1s (1m, 1h, 24h), got %v", q.Window)
		case q.Window == 0 && (q.Per == QuotaPerPrincipal || q.Per == QuotaPerTenant) && q.Counted():
			bad(p+".window", "per: %s needs a rolling window (1m, 1h, 24h): 0 means the session's lifetime, which only per: session has", q.Per)
		}
		negative := false
		for field, v := range map[string]int64{"requests": q.Requests, "tool_calls": q.ToolCalls, "result_tokens": q.ResultTokens, "result_bytes": int64(q.ResultBytes), "concurrent": q.Concurrent} {
			if v < 0 {
				bad(p+"."+field, "must not be negative")
				negative = true
			}
		}
		for name, n := range q.Tools {
			switch {
			case name == "":
				bad(p+".tools", "a tool name must not be empty")
			case n <= 0:
				bad(p+".tools."+name, "want a positive number of calls, got %d", n)
			}
		}
		if q.CallTimeout < 0 || q.SessionTime < 0 {
			bad(p, "call_timeout and session_time must not be negative")
		}
		if q.CallTimeout > 0 && q.CallTimeout < time.Millisecond {
			bad(p+".call_timeout", "want at least 1ms, got %v", q.CallTimeout)
		}
		if !(q.WarnAt >= 0 && q.WarnAt < 1) {
			bad(p+".warn_at", "want a fraction of the limit in [0, 1) (0.8 warns at 80%%; 0 never), got %v", q.WarnAt)
		}
		switch q.Tokenizer {
		case TokenizerO200K, TokenizerCL100K, TokenizerBytes4:
		default:
			bad(p+".tokenizer", "want o200k_base, cl100k_base or bytes4, got %q", q.Tokenizer)
		}
		if !negative && !q.Counted() && q.CallTimeout == 0 && q.SessionTime == 0 && q.Concurrent == 0 {
			bad(p, "sets no limit (requests, tool_calls, tools, result_tokens, result_bytes, call_timeout, session_time, concurrent)")
		}
	}
}
