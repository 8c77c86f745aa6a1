package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Redacted replaces every value a redaction removes.
const Redacted = "[REDACTED]"

// Detectors are the names of the built-in detector sets that
// audit.redact.detectors may name (the same sets policies use). The
// gateway supplies each set's implementation as a Scrubber
// (Options.Scrubbers); this list is the one place the names are kept, so
// configuration validation and the gateway agree on them.
var Detectors = []string{"secrets"}

// Scrubber removes secrets from one JSON payload (a message's params,
// result or error member). It returns the payload unchanged (the same
// slice) when nothing matched, else a new valid JSON encoding with each
// match replaced. It must be safe for concurrent use.
type Scrubber interface {
	Scrub(payload []byte) []byte
}

// ScrubberFunc adapts a function to a Scrubber.
type ScrubberFunc func(payload []byte) []byte

// Scrub calls f.
func (f ScrubberFunc) Scrub(payload []byte) []byte { return f(payload) }

// Patterns returns a Scrubber that replaces every match of the regular
// expressions inside the payload's JSON string values (keys and numbers
// are left alone) with Redacted. A payload in which no expression matches
// the raw bytes, and which holds no escape sequence that could hide a
// match, is returned without being decoded.
func Patterns(res ...*regexp.Regexp) Scrubber {
	if len(res) == 0 {
		return nil
	}
	return ScrubberFunc(func(p []byte) []byte {
		if bytes.IndexByte(p, '\\') < 0 {
			hit := false
			for _, re := range res {
				if re.Match(p) {
					hit = true
					break
				}
			}
			if !hit {
				return p
			}
		}
		v, err := decodeJSON(p)
		if err != nil {
			return p
		}
		changed := false
		v = walkStrings(v, func(s string) string {
			for _, re := range res {
				if re.MatchString(s) {
					s = re.ReplaceAllLiteralString(s, Redacted)
					changed = true
				}
			}
			return s
		})
		if !changed {
			return p
		}
		return encodeJSON(v, p)
	})
}

// walkStrings replaces every string value (not keys) of v by f's result.
func walkStrings(v any, f func(string) string) any {
	switch x := v.(type) {
	case string:
		return f(x)
	case map[string]any:
		for k, e := range x {
			x[k] = walkStrings(e, f)
		}
	case []any:
		for i, e := range x {
			x[i] = walkStrings(e, f)
		}
	}
	return v
}

// Path is a parsed redaction path: its member of the message (params,
// result or error) and the steps into it.
type Path struct {
	Member string
	steps  []step
	// last is the last key, which must appear in a payload for the path
	// to match anything (a cheap test before decoding).
	last string
}

type step struct {
	key   string // a member of an object; "" for an index step
	index int    // an element of an array; -1 for every element
}

// ParsePath reads a redaction path: members separated by dots, each
// optionally followed by [*] (every element of an array) or [N] (the
// element N), starting with params, result or error —
// params.arguments.password, result.content[*].text. A member name holding
// a dot, a bracket or a quote is written in brackets and double quotes:
// params.arguments["api.key"].
func ParsePath(s string) (Path, error) {
	var p Path
	rest := s
	first := true
	for {
		var key string
		quoted := strings.HasPrefix(rest, `["`)
		switch {
		case quoted:
			end := strings.Index(rest[2:], `"]`)
			if end < 0 {
				return Path{}, fmt.Errorf("path %q: unterminated [\"…\"]", s)
			}
			key, rest = rest[2:2+end], rest[2+end+2:]
		default:
			end := strings.IndexAny(rest, ".[")
			if end < 0 {
				end = len(rest)
			}
			key, rest = rest[:end], rest[end:]
		}
		if key == "" {
			return Path{}, fmt.Errorf("path %q: empty member name", s)
		}
		if !quoted && strings.ContainsAny(key, `"]`) {
			return Path{}, fmt.Errorf("path %q: unexpected %q in a member name (write [\"name\"] for names holding one)", s, strings.Trim(key, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"))
		}
		if first {
			switch key {
			case "params", "result", "error":
			default:
				return Path{}, fmt.Errorf("path %q: want a path starting with params, result or error", s)
			}
			p.Member = key
			first = false
		} else {
			p.steps = append(p.steps, step{key: key})
			p.last = key
		}
		for strings.HasPrefix(rest, "[") && !strings.HasPrefix(rest, `["`) {
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return Path{}, fmt.Errorf("path %q: unterminated [", s)
			}
			idx := rest[1:end]
			rest = rest[end+1:]
			if idx == "*" {
				p.steps = append(p.steps, step{index: -1})
				continue
			}
			n, err := strconv.Atoi(idx)
			if err != nil || n < 0 || idx != strconv.Itoa(n) {
				return Path{}, fmt.Errorf("path %q: want [*] or [N], got [%s]", s, idx)
			}
			p.steps = append(p.steps, step{index: n})
		}
		switch {
		case rest == "":
			if len(p.steps) == 0 {
				return Path{}, fmt.Errorf("path %q: name a member inside %s (a whole member is left out with payloads: false)", s, p.Member)
			}
			return p, nil
		case strings.HasPrefix(rest, `["`):
		case rest[0] == '.':
			rest = rest[1:]
		default:
			return Path{}, fmt.Errorf("path %q: unexpected %q", s, rest[:1])
		}
	}
}

// String writes the path back.
func (p Path) String() string {
	var b strings.Builder
	b.WriteString(p.Member)
	for _, s := range p.steps {
		switch {
		case s.key != "" && strings.ContainsAny(s.key, `.[]"`):
			b.WriteString(`["` + s.key + `"]`)
		case s.key != "":
			b.WriteString("." + s.key)
		case s.index < 0:
			b.WriteString("[*]")
		default:
			b.WriteString("[" + strconv.Itoa(s.index) + "]")
		}
	}
	return b.String()
}

// apply replaces what the steps reach in v; it reports whether anything
// was replaced.
func apply(v any, steps []step) (any, bool) {
	if len(steps) == 0 {
		return Redacted, true
	}
	s := steps[0]
	switch x := v.(type) {
	case map[string]any:
		if s.key == "" {
			return v, false
		}
		e, ok := x[s.key]
		if !ok {
			return v, false
		}
		n, changed := apply(e, steps[1:])
		x[s.key] = n
		return v, changed
	case []any:
		if s.key != "" {
			return v, false
		}
		changed := false
		for i := range x {
			if s.index >= 0 && i != s.index {
				continue
			}
			n, c := apply(x[i], steps[1:])
			x[i] = n
			changed = changed || c
		}
		return v, changed
	}
	return v, false
}

// redactor applies the configured paths and scrubbers to payloads.
type redactor struct {
	paths     map[string][]Path // by member
	scrubbers []Scrubber
}

func newRedactor(paths []string, scrubbers []Scrubber) (*redactor, error) {
	r := &redactor{paths: map[string][]Path{}}
	var errs []error
	for _, s := range paths {
		p, err := ParsePath(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.paths[p.Member] = append(r.paths[p.Member], p)
	}
	for _, s := range scrubbers {
		if s != nil {
			r.scrubbers = append(r.scrubbers, s)
		}
	}
	return r, errors.Join(errs...)
}

// redact returns payload (member params, result or error) with the
// configured redactions applied: the same slice when none matched.
func (r *redactor) redact(member string, payload []byte) []byte {
	if ps := r.paths[member]; len(ps) > 0 {
		var v any
		decoded, changed := false, false
		for _, p := range ps {
			// The last key must appear (quoted, or escaped somewhere) for
			// the path to reach anything.
			if !bytes.Contains(payload, []byte(`"`+p.last+`"`)) && bytes.IndexByte(payload, '\\') < 0 {
				continue
			}
			if !decoded {
				var err error
				if v, err = decodeJSON(payload); err != nil {
					break
				}
				decoded = true
			}
			var c bool
			v, c = apply(v, p.steps)
			changed = changed || c
		}
		if changed {
			payload = encodeJSON(v, payload)
		}
	}
	for _, s := range r.scrubbers {
		payload = s.Scrub(payload)
	}
	return payload
}

func decodeJSON(p []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(p))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// encodeJSON encodes v compactly without HTML escaping; on failure (which
// a decoded value cannot cause) it returns a redacted placeholder rather
// than the original, which may hold what was to be removed.
func encodeJSON(v any, _ []byte) []byte {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		return []byte(`"` + Redacted + `"`)
	}
	return bytes.TrimRight(b.Bytes(), "\n")
}
