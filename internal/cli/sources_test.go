package cli

import (
	"os"
	"path/filepath"
	"testing"
)

// TestListenDefault: without --config the gateway listens on the default
// address; with --config on the file's, unless --listen is given.
func TestListenDefault(t *testing.T) {
	file := filepath.Join(t.TempDir(), "mcpgate.yaml")
	if err := os.WriteFile(file, []byte("listeners:\n  - address: 127.0.0.1:9444\nroutes:\n  - path: /mcp\n    upstream:\n      stdio: {command: sh}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		src  sources
		want string
	}{
		{"stdio", sources{stdio: "sh"}, "127.0.0.1:8080"},
		{"stdio with --listen", sources{stdio: "sh", listen: "127.0.0.1:9000", listenSet: true}, "127.0.0.1:9000"},
		{"config", sources{configPath: file}, "127.0.0.1:9444"},
		{"config with --listen", sources{configPath: file, listen: "127.0.0.1:9001", listenSet: true}, "127.0.0.1:9001"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := tt.src.load()
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Listeners[0].Address; got != tt.want || len(cfg.Listeners) != 1 {
				t.Errorf("listeners %+v, want one on %s", cfg.Listeners, tt.want)
			}
		})
	}
}
