package mcpgate

import (
	"reflect"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/config"
)

// yamlKeys lists every key path a struct type decodes, recursively.
func yamlKeys(t reflect.Type, prefix string, out map[string]bool) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t.PkgPath() == "time" {
		return
	}
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "-" || tag == "" || !f.IsExported() {
			continue
		}
		out[prefix+tag] = true
		yamlKeys(f.Type, prefix+tag+".", out)
	}
}

// TestOptionsMirrorConfig: the public Options decode exactly the keys of
// the configuration file.
func TestOptionsMirrorConfig(t *testing.T) {
	want, got := map[string]bool{}, map[string]bool{}
	yamlKeys(reflect.TypeFor[config.Config](), "", want)
	yamlKeys(reflect.TypeFor[Options](), "", got)
	for k := range want {
		if !got[k] {
			t.Errorf("Options lack %s", k)
		}
	}
	for k := range got {
		if !want[k] {
			t.Errorf("Options have %s, which the file does not", k)
		}
	}
}

// TestOptionsRoundTrip: a loaded configuration mirrored into Options and
// loaded again is the same configuration, secrets included.
func TestOptionsRoundTrip(t *testing.T) {
	t.Setenv("MCPGATE_TEST_KEY", "Zk3q9VbX2mP7wLr4Tn8Yc1Hd6Jf0Gs5Qa9Ue2Ko7Ri")
	text := []byte(`
server: {max_body_bytes: 2MiB, stream_after: 3s}
sessions:
  max: 100
  when_full: evict-oldest
  idle_timeout: 4h
  creation_rate: {per_address: {limit: 10, window: 1m}}
  id_keys: [{id: k1, secret: "${MCPGATE_TEST_KEY}"}]
store: {kind: embedded, data_dir: /tmp/x}
`)
	cfg, err := config.LoadEmbedded(text)
	if err != nil {
		t.Fatal(err)
	}
	o, err := optionsOf(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if o.Sessions.IDKeys[0].Secret != "Zk3q9VbX2mP7wLr4Tn8Yc1Hd6Jf0Gs5Qa9Ue2Ko7Ri" || o.Server.MaxBodyBytes != 2<<20 {
		t.Fatalf("mirrored options %+v", o.Sessions)
	}
	o.Routes, o.Listeners = nil, nil
	again, err := embeddedConfig(o)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, again) {
		t.Fatalf("round trip changed the configuration:\n%+v\n%+v", cfg, again)
	}
}

// TestZeroOptionsSafe: the zero Options bound everything the package
// documentation says they do.
func TestZeroOptionsSafe(t *testing.T) {
	cfg, err := embeddedConfig(&Options{})
	if err != nil {
		t.Fatal(err)
	}
	ss := cfg.Sessions
	if ss.Max != 10000 || ss.WhenFull != "evict-idlest" || ss.IdleTimeout <= 0 || ss.TTL <= 0 ||
		ss.CreationRate.PerAddress == nil || ss.CreationRate.PerAddress.Limit == 0 || cfg.Store.Kind != config.StoreMemory {
		t.Fatalf("zero options give %+v, store %q", ss, cfg.Store.Kind)
	}
}

// FuzzLoadOptions: any text either fails to load with an error or loads
// into Options that translate back to the same configuration.
func FuzzLoadOptions(f *testing.F) {
	f.Add([]byte("sessions: {max: 100, when_full: evict-oldest, idle_timeout: 4h}\n"))
	f.Add([]byte("store: {kind: embedded, data_dir: d}\nadmin: {listen: ':9180'}\n"))
	f.Add([]byte("sessions:\n  creation_rate: {per_address: {limit: 10, window: 1m}}\n  per_address: {max: 0}\n"))
	f.Add([]byte("routes: [{path: /x}]\n"))
	f.Add([]byte("auth: {anonymous: true, scopes: {'tools/call': [a]}}\n"))
	f.Fuzz(func(t *testing.T, text []byte) {
		cfg, err := config.LoadEmbedded(text)
		if err != nil {
			return
		}
		o, err := optionsOf(cfg)
		if err != nil {
			t.Fatalf("a loaded configuration does not mirror: %v", err)
		}
		o.Routes, o.Listeners = nil, nil
		again, err := embeddedConfig(o)
		if err != nil {
			t.Fatalf("mirrored options of a valid file refused: %v\n%s", err, text)
		}
		if !reflect.DeepEqual(cfg, again) {
			t.Fatalf("round trip changed the configuration of\n%s", text)
		}
	})
}

// TestRunOverride: a whole file (listeners, routes, auth, a sandbox)
// read as Run reads it with an override is the file with that change.
func TestRunOverride(t *testing.T) {
	t.Setenv("MCPGATE_TEST_TOKEN", "upstream-token")
	text := []byte(`
listeners: [{address: "127.0.0.1:18080"}]
admin: {listen: ":19180"}
auth:
  anonymous: true
  api_keys: [{key_sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", principal: ops, scopes: [run]}]
  scopes: {"tools/call": [run]}
routes:
  - path: /a/mcp
    upstream:
      http: {url: "http://127.0.0.1:9/mcp", headers: {Authorization: "Bearer ${MCPGATE_TEST_TOKEN}"}}
  - path: /b/mcp
    max_sessions: 5
    upstream:
      stdio: {command: go, args: [version], sandbox: {rlimits: {open_files: 64}}}
`)
	want, err := config.LoadBytes([]byte(strings.Replace(string(text), "18080", "18081", 1)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := parser(func(o *Options) { o.Listeners[0].Address = "127.0.0.1:18081" })(text, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(want, got) {
		t.Fatalf("override through the mirror:\n got %+v\nwant %+v", got, want)
	}
}
