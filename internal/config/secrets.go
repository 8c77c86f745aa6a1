package config

import (
	"bytes"
	"reflect"

	"gopkg.in/yaml.v3"
)

// Redacted stands for a secret in a configuration text shown to people
// (the admin server's config_get, the history). Written back as the value
// of a secret — a rollback to a recorded version, a patch over the shown
// text — it means "the value in force now at this place".
const Redacted = "REDACTED"

// Secrets are the values of every secret in c (id keys, passwords,
// upstream headers and environment, client secrets), in no order.
func (c *Config) Secrets() []string {
	var out []string
	walkSecrets(reflect.ValueOf(c).Elem(), func(v reflect.Value) {
		if s := v.String(); s != "" && s != Redacted {
			out = append(out, s)
		}
	})
	return out
}

func walkSecrets(v reflect.Value, fn func(reflect.Value)) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			walkSecrets(v.Elem(), fn)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				walkSecrets(v.Field(i), fn)
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			walkSecrets(v.Index(i), fn)
		}
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			if it.Value().Type() == secretType {
				fn(it.Value())
				continue
			}
			walkSecrets(it.Value(), fn)
		}
	case reflect.String:
		if v.Type() == secretType {
			fn(v)
		}
	}
}

// RedactText returns text with every scalar whose value is one of
// secrets replaced by Redacted. Only whole values are replaced, so the
// structure, keys and comments stay as written (re-indented by the YAML
// encoder). A text that is not YAML is returned unchanged.
func RedactText(text []byte, secrets []string) []byte {
	if len(secrets) == 0 {
		return text
	}
	set := make(map[string]bool, len(secrets))
	for _, s := range secrets {
		set[s] = true
	}
	var root yaml.Node
	if err := yaml.Unmarshal(text, &root); err != nil {
		return text
	}
	changed := false
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.ScalarNode && set[n.Value] {
			n.Value, n.Style, n.Tag = Redacted, 0, "!!str"
			changed = true
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&root)
	if !changed {
		return text
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&root); err != nil {
		return text
	}
	return b.Bytes()
}

// LoadBytesOver is LoadBytes for a text that may hold Redacted in place
// of secrets: each such secret takes the value prev has at the same
// place (routes and other named list entries matched by name, the rest by
// position), before the configuration is validated. A Redacted secret prev
// has no value for stays Redacted, which validation refuses where the
// secret is checked and the upstream would refuse otherwise.
func LoadBytesOver(data []byte, prev *Config) (*Config, error) {
	return loadBytes(data, func(c *Config) {
		if prev != nil {
			restoreSecrets(reflect.ValueOf(c).Elem(), reflect.ValueOf(prev).Elem())
		}
	})
}

// restoreSecrets copies into next's Redacted secrets the values prev holds
// at the same place.
func restoreSecrets(next, prev reflect.Value) {
	if !prev.IsValid() || next.Type() != prev.Type() {
		return
	}
	switch next.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !next.IsNil() && !prev.IsNil() {
			restoreSecrets(next.Elem(), prev.Elem())
		}
	case reflect.Struct:
		for i := range next.NumField() {
			if next.Type().Field(i).IsExported() {
				restoreSecrets(next.Field(i), prev.Field(i))
			}
		}
	case reflect.Slice:
		for i := range next.Len() {
			restoreSecrets(next.Index(i), counterpart(next.Index(i), prev, i))
		}
	case reflect.Map:
		it := next.MapRange()
		for it.Next() {
			pv := prev.MapIndex(it.Key())
			if !pv.IsValid() {
				continue
			}
			if it.Value().Type() == secretType {
				if it.Value().String() == Redacted {
					next.SetMapIndex(it.Key(), pv)
				}
				continue
			}
			// Map values are not addressable: restore a copy, put it back.
			cp := reflect.New(it.Value().Type()).Elem()
			cp.Set(it.Value())
			restoreSecrets(cp, pv)
			next.SetMapIndex(it.Key(), cp)
		}
	case reflect.String:
		if next.Type() == secretType && next.String() == Redacted && next.CanSet() {
			next.Set(prev)
		}
	}
}

// counterpart is the element of the list prev matching el, the i-th of
// its list: the one with the same Name where elements are named, else
// the i-th.
func counterpart(el, prev reflect.Value, i int) reflect.Value {
	if el.Kind() == reflect.Struct {
		if name := el.FieldByName("Name"); name.IsValid() && name.Kind() == reflect.String && name.String() != "" {
			for j := range prev.Len() {
				if prev.Index(j).FieldByName("Name").String() == name.String() {
					return prev.Index(j)
				}
			}
			return reflect.Value{}
		}
	}
	if i < prev.Len() {
		return prev.Index(i)
	}
	return reflect.Value{}
}
