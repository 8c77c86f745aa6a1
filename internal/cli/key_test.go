package cli_test

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/mcpgate/mcpgate/internal/config"
)

// TestKeyNew: `key new` prints a fresh key on its first line and then the
// auth.api_keys entry that admits it, which a configuration accepts as it
// is and which holds the key's SHA-256, never the key.
func TestKeyNew(t *testing.T) {
	r := run(t, "key", "new", "--principal", "ci-bot", "--tenant", "acme", "--group", "ci", "--group", "ops")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	key, entry, _ := strings.Cut(r.stdout, "\n")
	if !strings.HasPrefix(key, "mcpg_") || len(key) != len("mcpg_")+43 || strings.Contains(entry, key) {
		t.Fatalf("key line %q, entry:\n%s", key, entry)
	}
	var got []config.APIKey
	if err := yaml.Unmarshal([]byte(entry), &got); err != nil {
		t.Fatalf("entry is not YAML: %v\n%s", err, entry)
	}
	sum := sha256.Sum256([]byte(key))
	want := []config.APIKey{{KeySHA256: hex.EncodeToString(sum[:]), Principal: "ci-bot", Tenant: "acme", Groups: []string{"ci", "ops"}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("entry (-want +got):\n%s", diff)
	}
	indented := "    " + strings.ReplaceAll(strings.TrimRight(entry, "\n"), "\n", "\n    ")
	file := "auth:\n  api_keys:\n" + indented + "\nroutes:\n  - path: /mcp\n    upstream: {stdio: {command: sh}}\n"
	if _, err := config.LoadBytes([]byte(file)); err != nil {
		t.Fatalf("the printed entry in a configuration: %v\n%s", err, file)
	}

	again := run(t, "key", "new")
	k2, e2, _ := strings.Cut(again.stdout, "\n")
	if again.code != 0 || k2 == key || !strings.Contains(e2, "principal: key-") {
		t.Fatalf("second key %q (exit %d), entry:\n%s", k2, again.code, e2)
	}
}

// TestListenBeyondLoopbackNeedsAuth: a --listen that moves a file's
// listener beyond loopback is checked like the file: refused without
// auth, with the way out in the message.
func TestListenBeyondLoopbackNeedsAuth(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mcpgate.yaml")
	if err := os.WriteFile(path, []byte("routes:\n  - path: /mcp\n    upstream: {stdio: {command: sh}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := run(t, "validate", "--config", path, "--listen", "0.0.0.0:0")
	if r.code != 1 || !strings.Contains(r.stderr, "listens beyond loopback") || !strings.Contains(r.stderr, "auth: {anonymous: true}") {
		t.Fatalf("exit %d, stderr %s", r.code, r.stderr)
	}
	r = run(t, "validate", "--stdio", "sh", "--listen", "0.0.0.0:0")
	if r.code != 1 || !strings.Contains(r.stderr, "listens beyond loopback") {
		t.Fatalf("--stdio beyond loopback: exit %d, stderr %s", r.code, r.stderr)
	}
}
