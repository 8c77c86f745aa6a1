package policy

import (
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
)

// Arguments are read as a server would read them, or refused: before a
// rule or a schema sees tools/call arguments, checkArgs makes sure no
// object in them holds two keys that are equal ignoring case (a
// case-insensitive decoder, such as Go's encoding/json, would take one for
// the other, and a rule could be shown "sql" while the server runs "SQL"),
// and that they nest at most MaxDepth levels.

var (
	errArgsDepth     = errors.New("nested deeper than " + strconv.Itoa(MaxDepth) + " levels")
	errArgsNotObject = errors.New("not a JSON object")
)

// ambiguousKey is a refusal of arguments with two keys a reader could
// confuse.
type ambiguousKey struct{ a, b string }

func (e *ambiguousKey) Error() string {
	return "the keys " + strconv.Quote(e.a) + " and " + strconv.Quote(e.b) + " of one object differ only in letter case (or repeat), which servers read differently"
}

// checkArgs checks tools/call arguments (valid JSON, as the message
// decoder left them).
func checkArgs(raw []byte) error {
	i := skipWS(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return errArgsNotObject
	}
	_, err := checkValue(raw, i, 0)
	return err
}

// checkValue walks the value at raw[i], returning where it ends.
func checkValue(raw []byte, i, depth int) (int, error) {
	switch raw[i] {
	case '{':
		if depth >= MaxDepth {
			return 0, errArgsDepth
		}
		var keys []string
		i = skipWS(raw, i+1)
		for i < len(raw) && raw[i] != '}' {
			end := skipString(raw, i)
			k := jsonString(raw[i:end])
			for _, o := range keys {
				if len(o) == len(k) && strings.EqualFold(o, k) {
					return 0, &ambiguousKey{o, k}
				}
			}
			keys = append(keys, k)
			i = skipWS(raw, end)
			i = skipWS(raw, i+1) // ':'
			var err error
			if i, err = checkValue(raw, i, depth+1); err != nil {
				return 0, err
			}
			i = skipWS(raw, i)
			if i < len(raw) && raw[i] == ',' {
				i = skipWS(raw, i+1)
			}
		}
		return i + 1, nil
	case '[':
		if depth >= MaxDepth {
			return 0, errArgsDepth
		}
		i = skipWS(raw, i+1)
		for i < len(raw) && raw[i] != ']' {
			var err error
			if i, err = checkValue(raw, i, depth+1); err != nil {
				return 0, err
			}
			i = skipWS(raw, i)
			if i < len(raw) && raw[i] == ',' {
				i = skipWS(raw, i+1)
			}
		}
		return i + 1, nil
	}
	return skipValue(raw, i), nil
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string token at b[i].
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// skipValue returns the index after the value at b[i] (valid JSON).
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		d := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = skipString(b, i) - 1
			case '{', '[':
				d++
			case '}', ']':
				if d--; d == 0 {
					return i + 1
				}
			}
		}
		return i
	}
	for i < len(b) && !strings.ContainsRune(",}] \t\n\r", rune(b[i])) {
		i++
	}
	return i
}

// jsonString decodes a string token.
func jsonString(tok []byte) string {
	if len(tok) >= 2 && !strings.ContainsRune(string(tok[1:len(tok)-1]), '\\') {
		return string(tok[1 : len(tok)-1])
	}
	var s string
	_ = json.Unmarshal(tok, &s)
	return s
}

// jsonObject is a JSON object (checked by checkArgs) as a CEL map, read
// lazily: a rule that reads args.sql decodes that member alone. What a
// lookup cannot answer (iteration, equality, conversion) decodes the
// object in full.
type jsonObject struct {
	raw  []byte
	full traits.Mapper
}

var _ traits.Mapper = (*jsonObject)(nil)

func (o *jsonObject) materialize() traits.Mapper {
	if o.full == nil {
		var m map[string]any
		_ = json.Unmarshal(o.raw, &m)
		if m == nil {
			m = map[string]any{}
		}
		o.full = types.NewStringInterfaceMap(types.DefaultTypeAdapter, m)
	}
	return o.full
}

// member finds the value of key (the last, as decoders take it).
func (o *jsonObject) member(key string) ([]byte, bool) {
	raw := o.raw
	var found []byte
	i := skipWS(raw, 0) + 1
	for {
		i = skipWS(raw, i)
		if i >= len(raw) || raw[i] != '"' {
			return found, found != nil
		}
		end := skipString(raw, i)
		tok := raw[i:end]
		match := len(tok) == len(key)+2 && string(tok[1:len(tok)-1]) == key ||
			(len(tok) > len(key)+2 && jsonString(tok) == key)
		i = skipWS(raw, end) + 1
		i = skipWS(raw, i)
		vend := skipValue(raw, i)
		if match {
			found = raw[i:vend]
		}
		i = skipWS(raw, vend)
		if i < len(raw) && raw[i] == ',' {
			i++
		}
	}
}

// jsonValue is one JSON value as a CEL value.
func jsonValue(v []byte) ref.Val {
	switch {
	case len(v) == 0:
		return types.NullValue
	case v[0] == '{':
		return &jsonObject{raw: v}
	case v[0] == '"':
		return types.String(jsonString(v))
	case v[0] == 't':
		return types.True
	case v[0] == 'f':
		return types.False
	case v[0] == 'n':
		return types.NullValue
	case v[0] == '[':
		var a []any
		_ = json.Unmarshal(v, &a)
		return types.DefaultTypeAdapter.NativeToValue(a)
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil {
		return types.NewErr("invalid number %s", v)
	}
	return types.Double(f)
}

func (o *jsonObject) Find(key ref.Val) (ref.Val, bool) {
	k, ok := key.(types.String)
	if !ok {
		return o.materialize().Find(key)
	}
	v, ok := o.member(string(k))
	if !ok {
		return nil, false
	}
	return jsonValue(v), true
}

func (o *jsonObject) Get(key ref.Val) ref.Val {
	if v, ok := o.Find(key); ok {
		return v
	}
	return types.NewErr("no such key: %v", key)
}

func (o *jsonObject) Contains(key ref.Val) ref.Val {
	_, ok := o.Find(key)
	return types.Bool(ok)
}

func (o *jsonObject) Iterator() traits.Iterator        { return o.materialize().Iterator() }
func (o *jsonObject) Size() ref.Val                    { return o.materialize().Size() }
func (o *jsonObject) ConvertToType(t ref.Type) ref.Val { return o.materialize().ConvertToType(t) }
func (o *jsonObject) Equal(other ref.Val) ref.Val      { return o.materialize().Equal(other) }
func (o *jsonObject) Type() ref.Type                   { return types.MapType }
func (o *jsonObject) Value() any                       { return o.materialize().Value() }
func (o *jsonObject) ConvertToNative(t reflect.Type) (any, error) {
	return o.materialize().ConvertToNative(t)
}
