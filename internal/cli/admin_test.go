package cli_test

import (
	"net"
	"strings"
	"testing"
	"time"
)

// TestAdminListen: validate builds the admin listener's configuration but
// never binds it (an address in use passes); serve binds it and fails
// fast when it cannot; --admin-listen overrides the file and is checked
// like it.
func TestAdminListen(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	inUse := taken.Addr().String()
	route := "listeners:\n  - address: 127.0.0.1:0\nroutes:\n  - path: /mcp\n    upstream:\n      stdio: {command: sh}\n"
	withAdmin := writeConfig(t, "admin:\n  listen: "+inUse+"\n"+route)
	without := writeConfig(t, route)
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     []string // in stdout (code 0) or stderr
	}{
		{"validate does not listen", []string{"validate", "--config", withAdmin}, 0,
			[]string{"configuration OK: 1 listener(s), 1 route(s)"}},
		{"validate with the flag does not listen", []string{"validate", "--config", without, "--admin-listen", inUse}, 0,
			[]string{"configuration OK"}},
		{"flag checked", []string{"validate", "--config", without, "--admin-listen", "9090"}, 1,
			[]string{`admin.listen: want host:port, got "9090"`}},
		{"flag clashing with --listen", []string{"validate", "--stdio", "sh", "--listen", "127.0.0.1:8181", "--admin-listen", ":8181"}, 1,
			[]string{"admin.listen: same address as listeners[0]"}},
		{"serve fails fast on an address in use", []string{"serve", "--config", withAdmin}, 1,
			[]string{"admin: listen " + inUse, "address already in use"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runBounded(t, 20*time.Second, tt.args...)
			if r.code != tt.wantCode {
				t.Errorf("exit code %d, want %d; stderr:\n%s", r.code, tt.wantCode, r.stderr)
			}
			out := r.stdout
			if tt.wantCode != 0 {
				out = r.stderr
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}
