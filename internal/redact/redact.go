// Package redact finds and replaces secrets in text and in JSON: named
// detectors built in ("secrets": cloud keys, provider tokens, bearer
// tokens, private keys, JWTs) and patterns of the operator's, applied to
// the string values of a JSON document without breaking it. The policy
// stage redacts what flows back to a client with it; an audit trail can
// keep secrets out of its records with the same detectors.
//
// A Redactor is compiled once and safe for concurrent use. What finds
// nothing costs a scan for each rule's literal anchor and no allocation.
package redact

import (
	"bytes"
	"fmt"
	"math/bits"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/mcpgate/mcpgate/internal/core"
)

// Rule is one pattern and what a match becomes.
type Rule struct {
	// Name names the rule in decisions ("aws-access-key"; the pattern
	// itself for an operator's rule without one).
	Name string
	// Pattern is an RE2 regular expression (Go's regexp syntax).
	Pattern string
	// Replace is what each match becomes; $1 and ${name} expand groups.
	Replace string
	// Anchors, when set, are literals every match begins with, at most
	// Lead bytes into the match: the rule is tried only where one is.
	// Empty: the pattern's literal prefix, if it has one; a pattern with
	// neither is searched for everywhere.
	Anchors []string
	Lead    int
}

// detectors are the built-in sets, by name. Every match of a rule begins
// with one of its anchors (Lead bytes before it at most), so a rule is
// only tried where an anchor is.
var detectors = map[string][]Rule{
	"secrets": {
		{Name: "aws-access-key", Pattern: `(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}`, Replace: "[REDACTED:aws-access-key]", Anchors: []string{"AKIA", "ASIA", "ABIA", "ACCA"}},
		{Name: "aws-secret-key", Pattern: `(?:aws_secret_access_key|AWS_SECRET_ACCESS_KEY|SecretAccessKey)["']?\s*[:=]\s*["']?[A-Za-z0-9/+=]{40}`, Replace: "[REDACTED:aws-secret-key]", Anchors: []string{"aws_secret_access_key", "AWS_SECRET_ACCESS_KEY", "SecretAccessKey"}},
		{Name: "google-api-key", Pattern: `AIza[0-9A-Za-z_\-]{35}`, Replace: "[REDACTED:google-api-key]", Anchors: []string{"AIza"}},
		{Name: "github-token", Pattern: `(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})`, Replace: "[REDACTED:github-token]", Anchors: []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"}},
		{Name: "gitlab-token", Pattern: `glpat-[A-Za-z0-9_\-]{20,}`, Replace: "[REDACTED:gitlab-token]", Anchors: []string{"glpat-"}},
		{Name: "slack-token", Pattern: `xox[abeoprs]-[A-Za-z0-9-]{10,}`, Replace: "[REDACTED:slack-token]", Anchors: []string{"xox"}},
		{Name: "slack-webhook", Pattern: `(?:https?://)?hooks\.slack\.com/services/[A-Za-z0-9_/]+`, Replace: "[REDACTED:slack-webhook]", Anchors: []string{"hooks.slack.com"}, Lead: len("https://")},
		{Name: "stripe-key", Pattern: `(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}`, Replace: "[REDACTED:stripe-key]", Anchors: []string{"sk_live_", "sk_test_", "rk_live_", "rk_test_", "pk_live_", "pk_test_"}},
		{Name: "private-key", Pattern: `-----BEGIN [A-Z ]*PRIVATE KEY-----(?:[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----|[\s\S]*)`, Replace: "[REDACTED:private-key]", Anchors: []string{"-----BEGIN "}},
		{Name: "jwt", Pattern: `eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*`, Replace: "[REDACTED:jwt]", Anchors: []string{"eyJ"}},
		{Name: "bearer-token", Pattern: `(?:Bearer|bearer|BEARER)\s+[A-Za-z0-9\-._~+/]{16,}=*`, Replace: "Bearer [REDACTED:bearer-token]", Anchors: []string{"Bearer", "bearer", "BEARER"}},
	},
}

// Lookup returns the rules of the named built-in detector set.
func Lookup(name string) ([]Rule, bool) {
	r, ok := detectors[name]
	return slices.Clone(r), ok
}

// Detectors names the built-in detector sets.
func Detectors() []string {
	names := make([]string, 0, len(detectors))
	for n := range detectors {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

type rule struct {
	name     string
	re       *regexp.Regexp
	anchored *regexp.Regexp // ^(?:re), tried where an anchor is
	replace  string
	literal  bool // replace has no $ expansion
	plain    bool // replace holds nothing a JSON string escapes
	anchors  []string
	lead     int
}

// anchorAt is one anchor, found by its rarest byte at off.
type anchorAt struct {
	lit  string
	off  int
	rule int
}

// Redactor applies a list of rules, in order.
type Redactor struct {
	rules []rule
	// always has a bit for each rule searched for everywhere (no anchor,
	// or past the 64th rule).
	always uint64
	// rare are the bytes anchors are found by; byRare their anchors.
	rare   []byte
	byRare [256][]anchorAt
}

// rarity orders bytes from the rarest in text and JSON: an anchor is
// looked for by its rarest byte, which a vectorised byte search skips to.
// Prose and JSON are mostly lower case: upper case letters, then
// punctuation, then the rarer lower case letters.
const rarity = "QJZXVKWYUFGBPHMDCLTSNROAIE_-.qjzxwyfgbpvkmuhdclsntroiae"

// Compile compiles rules; an error names the rule and what is wrong with
// its pattern.
func Compile(rules []Rule) (*Redactor, error) {
	r := &Redactor{}
	for i, in := range rules {
		name := in.Name
		if name == "" {
			name = in.Pattern
		}
		re, err := regexp.Compile(in.Pattern)
		if err != nil {
			return nil, fmt.Errorf("rule %d (%s): %w", i, name, err)
		}
		anchored, err := regexp.Compile(`^(?:` + in.Pattern + `)`)
		if err != nil {
			return nil, fmt.Errorf("rule %d (%s): %w", i, name, err)
		}
		c := rule{name: name, re: re, anchored: anchored, replace: in.Replace, literal: !strings.Contains(in.Replace, "$"), lead: max(in.Lead, 0)}
		c.plain = utf8.ValidString(in.Replace)
		for i := 0; i < len(in.Replace); i++ {
			if b := in.Replace[i]; b < 0x20 || b == '"' || b == '\\' {
				c.plain = false
			}
		}
		for _, a := range in.Anchors {
			if !anchorSafe(a) {
				return nil, fmt.Errorf("rule %d (%s): anchor %q cannot be searched for in JSON text", i, name, a)
			}
			c.anchors = append(c.anchors, a)
		}
		if len(c.anchors) == 0 {
			if p, _ := re.LiteralPrefix(); anchorSafe(p) {
				c.anchors, c.lead = []string{p}, 0
			}
		}
		if len(c.anchors) == 0 || i >= 64 {
			c.anchors = nil
			if i < 64 {
				r.always |= 1 << i
			} else {
				r.always = ^uint64(0)
			}
		}
		for _, a := range c.anchors {
			off := rarest(a)
			if r.byRare[a[off]] == nil {
				r.rare = append(r.rare, a[off])
			}
			r.byRare[a[off]] = append(r.byRare[a[off]], anchorAt{lit: a, off: off, rule: i})
		}
		r.rules = append(r.rules, c)
	}
	return r, nil
}

func rarest(a string) int {
	best, rank := 0, len(rarity)+1
	for i := 0; i < len(a); i++ {
		k := strings.IndexByte(rarity, a[i])
		if k < 0 {
			k = len(rarity) / 2
		}
		if k < rank {
			best, rank = i, k
		}
	}
	return best
}

// anchorSafe: the literal appears in JSON text as itself whenever its
// string value holds it unless the text uses a \u escape (no quote,
// backslash, slash or control character, which JSON may or must escape).
func anchorSafe(a string) bool {
	for i := 0; i < len(a); i++ {
		if c := a[i]; c < 0x20 || c == '"' || c == '\\' || c == '/' || c == 0x7f {
			return false
		}
	}
	return a != ""
}

// Empty reports whether r has no rules (a nil Redactor is empty).
func (r *Redactor) Empty() bool { return r == nil || len(r.rules) == 0 }

// mask has a bit for each rule that could match text (one of its anchors
// is in it).
func (r *Redactor) mask(text string) uint64 {
	m := r.always
	for _, c := range r.rare {
		group := r.byRare[c]
		for i := 0; i < len(text); {
			j := strings.IndexByte(text[i:], c)
			if j < 0 {
				break
			}
			p := i + j
			for _, a := range group {
				if m&(1<<a.rule) != 0 {
					continue
				}
				if st := p - a.off; st >= 0 && st+len(a.lit) <= len(text) && text[st:st+len(a.lit)] == a.lit {
					m |= 1 << a.rule
				}
			}
			i = p + 1
		}
	}
	return m
}

func (r *Redactor) maskBytes(b []byte) uint64 {
	return r.mask(unsafe.String(unsafe.SliceData(b), len(b)))
}

// next finds the first anchor of c in s at or after from: the position the
// match may begin at, or -1.
func (c *rule) next(s string, from int) int {
	best := -1
	for _, a := range c.anchors {
		if j := strings.Index(s[from:], a); j >= 0 && (best < 0 || from+j < best) {
			best = from + j
		}
	}
	return best
}

// apply replaces every match of c in s; ok reports a match.
func (c *rule) apply(s string) (string, bool) {
	if c.anchors == nil {
		if !c.re.MatchString(s) {
			return s, false
		}
		if c.literal {
			return c.re.ReplaceAllLiteralString(s, c.replace), true
		}
		return c.re.ReplaceAllString(s, c.replace), true
	}
	b, ok := c.appendApplied(nil, s)
	if !ok {
		return s, false
	}
	return unsafe.String(unsafe.SliceData(b), len(b)), true // b is not used again
}

// appendApplied appends s with every match of c replaced to dst; ok
// reports a match (dst is returned as it was when there is none).
func (c *rule) appendApplied(dst []byte, s string) (_ []byte, ok bool) {
	if c.anchors == nil {
		out, ok := c.apply(s)
		if !ok {
			return dst, false
		}
		return append(dst, out...), true
	}
	last, from := 0, 0
	for from < len(s) {
		p := c.next(s, from)
		if p < 0 {
			break
		}
		from = p + 1
		for st := max(last, p-c.lead); st <= p; st++ {
			loc := c.anchored.FindStringSubmatchIndex(s[st:])
			if loc == nil || loc[1] == 0 {
				continue
			}
			if !ok {
				dst, ok = slices.Grow(dst, len(s)+len(c.replace)+16), true
			}
			dst = append(dst, s[last:st]...)
			if c.literal {
				dst = append(dst, c.replace...)
			} else {
				dst = c.anchored.ExpandString(dst, c.replace, s[st:], loc)
			}
			last = st + loc[1]
			from = max(from, last)
			break
		}
	}
	if !ok {
		return dst, false
	}
	return append(dst, s[last:]...), true
}

// matches reports whether c matches somewhere in s.
func (c *rule) matches(s string) bool {
	if c.anchors == nil {
		return c.re.MatchString(s)
	}
	for from := 0; from < len(s); {
		p := c.next(s, from)
		if p < 0 {
			return false
		}
		for st := max(0, p-c.lead); st <= p; st++ {
			if loc := c.anchored.FindStringIndex(s[st:]); loc != nil && loc[1] > 0 {
				return true
			}
		}
		from = p + 1
	}
	return false
}

// String redacts s; hit names the first rule that matched ("" for none).
func (r *Redactor) String(s string) (out string, hit string) {
	if r.Empty() {
		return s, ""
	}
	out, hit, _ = r.redact(s, r.mask(s))
	return out, hit
}

// Find reports the first rule that matches s ("" for none).
func (r *Redactor) Find(s string) string {
	if r.Empty() {
		return ""
	}
	return r.find(s, r.mask(s))
}

func (r *Redactor) find(s string, m uint64) string {
	for i := range r.rules {
		if m&(1<<min(i, 63)) != 0 && r.rules[i].matches(s) {
			return r.rules[i].name
		}
	}
	return ""
}

// JSON redacts every string value (not object keys) of the JSON document
// raw, as a client decoding it would read the string: escapes are decoded
// before matching and the result is encoded again. It returns raw itself
// when nothing matched (changed false), else a new document; hit names the
// first rule that matched. Text that is not JSON is returned as it is.
func (r *Redactor) JSON(raw []byte) (out []byte, hit string, changed bool) {
	return r.AppendJSON(nil, raw)
}

// AppendJSON is JSON appending the redacted document to dst (which it
// returns unchanged when nothing matched), so a caller can write the
// document's envelope and the document in one buffer.
func (r *Redactor) AppendJSON(dst, raw []byte) (out []byte, hit string, changed bool) {
	if r.Empty() {
		return raw, "", false
	}
	var b []byte // the output, once something may change
	last := 0    // raw[last:] is not yet copied to b
	grow := func() {
		if b == nil {
			b = dst
			if cap(b)-len(b) < len(raw)+64 {
				b = make([]byte, len(dst), len(dst)+len(raw)+64)
				copy(b, dst)
			}
		}
	}
	walkStrings(raw, func(start, end int, key bool) {
		if key {
			return
		}
		tok := raw[start:end]
		s, m, ok := r.token(tok)
		if !ok {
			return
		}
		if i := bits.TrailingZeros64(m); m&(m-1) == 0 && i < len(r.rules) && r.rules[i].plain && bytes.IndexByte(tok, '\\') < 0 {
			// One rule, on JSON-safe text, with a JSON-safe replacement:
			// written straight into the output.
			grow()
			mark := len(b)
			b = append(b, raw[last:start]...)
			b = append(b, '"')
			var applied bool
			if b, applied = r.rules[i].appendApplied(b, s); !applied {
				b = b[:mark]
				return
			}
			b = append(b, '"')
			last, changed = end, true
			if hit == "" {
				hit = r.rules[i].name
			}
			return
		}
		red, h, plain := r.redact(s, m)
		if h == "" {
			return
		}
		if hit == "" {
			hit = h
		}
		grow()
		b = append(b, raw[last:start]...)
		if plain && bytes.IndexByte(tok, '\\') < 0 {
			// The text was JSON-safe as it came, and what replaced parts
			// of it (or was taken from it by $ groups) is too.
			b = append(b, '"')
			b = append(b, red...)
			b = append(b, '"')
		} else {
			b = core.AppendJSONString(b, red)
		}
		last, changed = end, true
	})
	if !changed {
		return raw, "", false
	}
	return append(b, raw[last:]...), hit, true
}

// token reads a string token for matching: its text (a view of tok when
// it has no escapes: the caller must not keep it) and the rules that
// could match it; ok is false when none could.
func (r *Redactor) token(tok []byte) (s string, m uint64, ok bool) {
	if bytes.IndexByte(tok, '\\') < 0 {
		if m = r.maskBytes(tok); m == 0 || !utf8.Valid(tok) {
			return "", 0, false
		}
		body := tok[1 : len(tok)-1]
		return unsafe.String(unsafe.SliceData(body), len(body)), m, true
	}
	s, ok = unquote(tok)
	if !ok {
		return "", 0, false
	}
	if m = r.mask(s); m == 0 {
		return "", 0, false
	}
	return s, m, true
}

// redact applies the rules of mask m to s; plain reports that every
// replacement made is JSON-safe text.
func (r *Redactor) redact(s string, m uint64) (out string, hit string, plain bool) {
	out, plain = s, true
	for i := range r.rules {
		if m&(1<<min(i, 63)) == 0 {
			continue
		}
		var ok bool
		if out, ok = r.rules[i].apply(out); ok {
			plain = plain && r.rules[i].plain
			if hit == "" {
				hit = r.rules[i].name
			}
		}
	}
	return out, hit, plain
}

// FindJSON reports the first rule that matches a string value of raw (""
// for none), reading strings as JSON decoders do.
func (r *Redactor) FindJSON(raw []byte) string {
	if r.Empty() {
		return ""
	}
	hit := ""
	walkStrings(raw, func(start, end int, key bool) {
		if hit != "" || key {
			return
		}
		if s, m, ok := r.token(raw[start:end]); ok {
			hit = r.find(s, m)
		}
	})
	return hit
}

// walkStrings calls fn for each string token of raw (its bytes including
// the quotes are raw[start:end]); key reports an object key (a string
// followed by a colon). It reads any input without failing: on text that
// is not JSON the tokens it finds are what a lenient reader would find.
func walkStrings(raw []byte, fn func(start, end int, key bool)) {
	for i := 0; i < len(raw); {
		q := bytes.IndexByte(raw[i:], '"')
		if q < 0 {
			return
		}
		start := i + q
		end := -1
		for j := start + 1; j < len(raw); {
			k := bytes.IndexByte(raw[j:], '"')
			if k < 0 {
				return // unterminated
			}
			j += k
			// The quote is escaped when an odd number of backslashes
			// precede it.
			n := 0
			for b := j - 1; b > start && raw[b] == '\\'; b-- {
				n++
			}
			if n%2 == 0 {
				end = j + 1
				break
			}
			j++
		}
		if end < 0 {
			return
		}
		j := end
		for j < len(raw) && (raw[j] == ' ' || raw[j] == '\t' || raw[j] == '\n' || raw[j] == '\r') {
			j++
		}
		fn(start, end, j < len(raw) && raw[j] == ':')
		i = end
	}
}

// unquote decodes a JSON string token (quotes included).
func unquote(q []byte) (string, bool) {
	if len(q) < 2 || q[0] != '"' || q[len(q)-1] != '"' {
		return "", false
	}
	body := q[1 : len(q)-1]
	if bytes.IndexByte(body, '\\') < 0 {
		if !utf8.Valid(body) {
			return "", false
		}
		return string(body), true
	}
	var b strings.Builder
	b.Grow(len(body))
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		i++
		if i >= len(body) {
			return "", false
		}
		switch body[i] {
		case '"', '\\', '/':
			b.WriteByte(body[i])
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			r, n := hex4(body[i+1:])
			if n < 0 {
				return "", false
			}
			i += 4
			if r >= 0xd800 && r < 0xdc00 && i+6 < len(body) && body[i+1] == '\\' && body[i+2] == 'u' {
				if r2, n2 := hex4(body[i+3:]); n2 >= 0 && r2 >= 0xdc00 && r2 < 0xe000 {
					r = 0x10000 + (r-0xd800)<<10 + (r2 - 0xdc00)
					i += 6
				}
			}
			if r >= 0xd800 && r < 0xe000 {
				r = utf8.RuneError
			}
			b.WriteRune(r)
		default:
			return "", false
		}
	}
	return b.String(), true
}

func hex4(b []byte) (rune, int) {
	if len(b) < 4 {
		return 0, -1
	}
	var r rune
	for _, c := range b[:4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, -1
		}
	}
	return r, 4
}

// plainJSON marks the bytes a JSON string holds as they are.
