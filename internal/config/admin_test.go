package config

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const oneRoute = "routes:\n  - path: /mcp\n    upstream: {stdio: {command: sh}}\n"

func TestAdminListen(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"absent: off", "", ""},
		{"empty: off", "admin: {listen: \"\"}\n", ""},
		{"loopback", "admin: {listen: 127.0.0.1:9090}\n", "127.0.0.1:9090"},
		{"port alone binds loopback", "admin: {listen: \":9090\"}\n", "127.0.0.1:9090"},
		{"any port", "admin: {listen: \"127.0.0.1:0\"}\n", "127.0.0.1:0"},
		{"elsewhere when named", "admin: {listen: 0.0.0.0:9090}\n", "0.0.0.0:9090"},
		{"IPv6 loopback", "admin: {listen: \"[::1]:9090\"}\n", "[::1]:9090"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := LoadBytes([]byte(tt.in + oneRoute))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, cfg.Admin.Listen); diff != "" {
				t.Errorf("admin.listen (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAdminErrors keeps one fixture per problem with its exact message.
func TestAdminErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"not host:port", "admin: {listen: localhost}\n",
			[]string{`admin.listen: want host:port, got "localhost" (line 1)`}},
		{"port not a number", "admin: {listen: \"127.0.0.1:metrics\"}\n",
			[]string{`admin.listen: want host:port, got "127.0.0.1:metrics" (line 1)`}},
		{"port out of range", "admin: {listen: \"127.0.0.1:99999\"}\n",
			[]string{`admin.listen: want host:port, got "127.0.0.1:99999" (line 1)`}},
		{"a client listener's address", "listeners: [{address: \"127.0.0.1:8080\"}]\nadmin: {listen: \"127.0.0.1:8080\"}\n",
			[]string{"admin.listen: same address as listeners[0]: the admin listener needs its own (line 2)"}},
		{"port alone, same as a listener once bound", "admin: {listen: \":8080\"}\n",
			[]string{"admin.listen: same address as listeners[0]: the admin listener needs its own (line 1)"}},
		{"misspelt field", "admin: {listne: 127.0.0.1:9090}\n",
			[]string{`admin.listne: unknown field; did you mean "listen"? (line 1)`}},
		{"not a mapping", "admin: 127.0.0.1:9090\n",
			[]string{"admin: want a mapping (line 1)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadBytes([]byte(tt.in + oneRoute))
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("err = %v; want *Error", err)
			}
			var got []string
			for _, p := range cerr.Problems {
				got = append(got, p.Error())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}
