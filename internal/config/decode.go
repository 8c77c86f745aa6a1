package config

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ByteSize is a size in bytes; YAML accepts an integer or a string with a
// unit: 512KiB, 4MiB, 1GiB, 10MB, 100B.
type ByteSize int64

// ParseByteSize parses "4MiB", "100KB", "1024".
func ParseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
		{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"B", 1},
	}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("invalid size %q (want e.g. 4MiB, 512KiB, 1024)", s)
	}
	return ByteSize(n * mult), nil
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	byteSizeType = reflect.TypeFor[ByteSize]()
	secretType   = reflect.TypeFor[Secret]()
)

// envRef matches a secret written as a reference to an environment
// variable: the whole value is ${NAME}.
var envRef = regexp.MustCompile(`^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$`)

// decoder maps a YAML node tree onto Go values strictly, collecting every
// problem with its path and line instead of stopping at the first. It
// also records the line of every path it meets, so that the semantic
// checks that run later (Validate) can name lines too.
type decoder struct {
	errs []error
	// lines maps a field path (routes[0].upstream.stdio.command) to the
	// line of its key, or of its item in a list.
	lines map[string]int
	// broken lists the paths that did not decode, and the fields a
	// misspelt key was probably meant to be: the semantic checks keep
	// quiet about them.
	broken []string
}

func (d *decoder) fail(path string, n *yaml.Node, format string, args ...any) {
	if path == "" {
		path = "(root)"
	}
	d.errs = append(d.errs, &Problem{Path: path, Line: n.Line, Msg: fmt.Sprintf(format, args...)})
	d.broken = append(d.broken, path)
}

func (d *decoder) at(path string, n *yaml.Node) {
	if d.lines == nil {
		d.lines = map[string]int{}
	}
	if _, ok := d.lines[path]; !ok {
		d.lines[path] = n.Line
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (d *decoder) decode(path string, n *yaml.Node, v reflect.Value) {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		v.Set(reflect.Zero(v.Type()))
		return
	}
	switch v.Type() {
	case durationType:
		if n.Kind != yaml.ScalarNode {
			d.fail(path, n, "want a duration such as 30s or 5m")
			return
		}
		dur, err := time.ParseDuration(n.Value)
		if err != nil || dur < 0 {
			d.fail(path, n, "invalid duration %q (want e.g. 30s, 5m, 1h)", n.Value)
			return
		}
		v.SetInt(int64(dur))
		return
	case byteSizeType:
		if n.Kind != yaml.ScalarNode {
			d.fail(path, n, "want a size such as 4MiB")
			return
		}
		size, err := ParseByteSize(n.Value)
		if err != nil {
			d.fail(path, n, "%v", err)
			return
		}
		v.SetInt(int64(size))
		return
	case secretType:
		// A secret may name an environment variable instead of holding
		// the value, so that a file can be shared without its secrets.
		if n.Kind == yaml.ScalarNode {
			if m := envRef.FindStringSubmatch(n.Value); m != nil {
				val, ok := os.LookupEnv(m[1])
				if !ok || val == "" {
					d.fail(path, n, "environment variable %s is not set (the value is %s)", m[1], n.Value)
					return
				}
				v.SetString(val)
				return
			}
		}
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(path, n, v.Elem())
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.fail(path, n, "want a mapping")
			return
		}
		fields := map[string]int{}
		var names []string
		for i := range v.NumField() {
			tag, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
			if tag != "" && tag != "-" {
				fields[tag] = i
				names = append(names, tag)
			}
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			idx, ok := fields[k.Value]
			if !ok {
				hint, meant := suggest(k.Value, names)
				d.fail(join(path, k.Value), k, "unknown field%s", hint)
				if meant != "" {
					d.broken = append(d.broken, join(path, meant))
				}
				continue
			}
			if seen[k.Value] {
				d.fail(join(path, k.Value), k, "duplicate field")
				continue
			}
			seen[k.Value] = true
			d.at(join(path, k.Value), k)
			d.decode(join(path, k.Value), val, v.Field(idx))
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(path, n, "want a list")
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.at(fmt.Sprintf("%s[%d]", path, i), item)
			d.decode(fmt.Sprintf("%s[%d]", path, i), item, s.Index(i))
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.fail(path, n, "want a mapping")
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			key := reflect.New(v.Type().Key()).Elem()
			d.decode(join(path, k.Value), k, key)
			if m.MapIndex(key).IsValid() {
				d.fail(join(path, k.Value), k, "duplicate key")
				continue
			}
			d.at(join(path, k.Value), k)
			elem := reflect.New(v.Type().Elem()).Elem()
			d.decode(join(path, k.Value), val, elem)
			m.SetMapIndex(key, elem)
		}
		v.Set(m)
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int64, reflect.Float64:
		if n.Kind != yaml.ScalarNode {
			d.fail(path, n, "want a %s", kindName(v.Kind()))
			return
		}
		if err := n.Decode(v.Addr().Interface()); err != nil {
			// Named string types (Secret) decode through their underlying type.
			if v.Kind() == reflect.String && n.Tag != "!!map" {
				v.SetString(n.Value)
				return
			}
			d.fail(path, n, "want a %s, got %q", kindName(v.Kind()), n.Value)
		}
	default:
		d.fail(path, n, "unsupported type %s", v.Type())
	}
}

func kindName(k reflect.Kind) string {
	switch k {
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int64:
		return "integer"
	case reflect.Float64:
		return "number"
	}
	return "string"
}

// suggest names the closest known field for a misspelt one, and returns
// it, or lists the known fields when none is close.
func suggest(got string, names []string) (hint, meant string) {
	best, bestDist := "", 3
	for _, n := range names {
		if d := levenshtein(strings.ToLower(got), strings.ToLower(n)); d < bestDist {
			best, bestDist = n, d
		}
	}
	if best == "" {
		return "; known fields: " + strings.Join(names, ", "), ""
	}
	return fmt.Sprintf("; did you mean %q?", best), best
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// Parse decodes YAML into a Config without defaults or validation.
func Parse(data []byte) (*Config, error) {
	cfg, d, err := parse(data)
	if err != nil {
		return nil, err
	}
	if len(d.errs) > 0 {
		return nil, &Error{Problems: d.errs}
	}
	return cfg, nil
}

// parse decodes as much of data as it can: the Config holds every field
// that decoded, the decoder every problem and line. err is set only when
// data is not YAML at all.
func parse(data []byte) (*Config, *decoder, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	cfg, d := new(Config), new(decoder)
	if root.Kind == 0 {
		return cfg, d, nil
	}
	d.decode("", &root, reflect.ValueOf(cfg).Elem())
	return cfg, d, nil
}

// Problem is one thing wrong in a configuration.
type Problem struct {
	// Path names the field: routes[0].upstream.stdio.command.
	Path string
	// Line is the field's line in the file, or zero when it is not in
	// the file (a missing field, a configuration built in code).
	Line int
	Msg  string
}

func (p *Problem) Error() string {
	if p.Line > 0 {
		return fmt.Sprintf("%s: %s (line %d)", p.Path, p.Msg, p.Line)
	}
	return p.Path + ": " + p.Msg
}

// Error lists every problem found in a configuration.
type Error struct {
	Problems []error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "config: %d problem(s):", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.Error())
	}
	return b.String()
}

// Unwrap exposes the problems to errors.Is/As.
func (e *Error) Unwrap() []error { return e.Problems }

var _ error = (*Error)(nil)
