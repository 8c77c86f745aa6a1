package frontend

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/core"
)

func TestListenerPolicy(t *testing.T) {
	loop := ListenerPolicy{Loopback: true}
	open := ListenerPolicy{}
	listed := ListenerPolicy{Loopback: true, AllowedHosts: []string{"mcp.internal", "gw:8443"}, AllowedOrigins: []string{"https://app.example"}}
	tests := []struct {
		name   string
		p      ListenerPolicy
		host   string
		origin string
		hostOK bool
		origOK bool
	}{
		{"loopback names", loop, "localhost:8080", "", true, true},
		{"loopback ip", loop, "127.0.0.1:8080", "http://127.0.0.1:3000", true, true},
		{"ipv6 loopback", loop, "[::1]:8080", "http://[::1]:5173", true, true},
		{"rebinding", loop, "evil.example:8080", "http://evil.example", false, false},
		{"null origin", loop, "localhost", "null", true, false},
		{"non-loopback listener any host, no origins", open, "evil.example", "http://localhost", true, false},
		{"listed host", listed, "mcp.internal:9000", "https://app.example", true, true},
		{"listed host:port", listed, "gw:8443", "https://APP.example", true, true},
		{"unlisted host", listed, "localhost", "http://localhost", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.hostAllowed(tt.host); got != tt.hostOK {
				t.Errorf("hostAllowed(%q) = %v", tt.host, got)
			}
			if got := tt.p.originAllowed(tt.origin); got != tt.origOK {
				t.Errorf("originAllowed(%q) = %v", tt.origin, got)
			}
		})
	}
}

func TestAccepts(t *testing.T) {
	tests := []struct {
		h    []string
		want string
		ok   bool
	}{
		{nil, "text/event-stream", true},
		{[]string{"application/json, text/event-stream"}, "text/event-stream", true},
		{[]string{"application/json;q=0.9", "text/event-stream"}, "application/json", true},
		{[]string{"*/*"}, "text/event-stream", true},
		{[]string{"text/*"}, "text/event-stream", true},
		{[]string{"application/json"}, "text/event-stream", false},
		{[]string{"TEXT/EVENT-STREAM"}, "text/event-stream", true},
	}
	for _, tt := range tests {
		if got := accepts(tt.h, tt.want); got != tt.ok {
			t.Errorf("accepts(%q, %q) = %v", tt.h, tt.want, got)
		}
	}
}

func TestDecodeHeaderValue(t *testing.T) {
	enc := func(s string) string { return "=?base64?" + base64.StdEncoding.EncodeToString([]byte(s)) + "?=" }
	for in, want := range map[string]string{
		"plain":                   "plain",
		"  padded  ":              "padded",
		enc("Hello, 世界"):          "Hello, 世界",
		enc("=?base64?literal?="): "=?base64?literal?=",
	} {
		if got, ok := decodeHeaderValue(in); !ok || got != want {
			t.Errorf("decodeHeaderValue(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	if _, ok := decodeHeaderValue("=?base64?SGVsbG8?="); ok {
		t.Error("bad padding accepted")
	}
}

// FuzzModernHeaders: whenever validation accepts a request, the headers an
// intermediary might route or rate-limit on say exactly what the body says.
func FuzzModernHeaders(f *testing.F) {
	f.Add(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, "2026-07-28", "tools/call", "echo")
	f.Add(`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///é"}}`, "2026-07-28", "resources/read", "=?base64?ZmlsZTovLy/DqQ==?=")
	f.Add(`{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"x"}}`, "2026-07-28", " prompts/get ", "y")
	f.Fuzz(func(t *testing.T, body, version, method, name string) {
		m, err := core.Decode([]byte(body))
		if err != nil {
			return
		}
		r, _ := http.NewRequest("POST", "http://localhost/mcp", nil)
		r.Header["Mcp-Method"] = []string{method}
		r.Header["Mcp-Name"] = []string{name}
		if e := validateModernHeaders(r, m, version); e != nil {
			if e.Code != core.CodeHeaderMismatch && e.Code != core.CodeInvalidRequest {
				t.Fatalf("unexpected code %d", e.Code)
			}
			return
		}
		if m.MetaVersion != "" && m.MetaVersion != version {
			t.Fatalf("accepted version header %q for body %q", version, m.MetaVersion)
		}
		if m.Kind == core.KindRequest && strings.TrimSpace(method) != m.Method {
			t.Fatalf("accepted Mcp-Method %q for body %q", method, m.Method)
		}
		if m.Kind == core.KindRequest && needsNameHeader(m.Method) && m.Name != "" {
			if got, _ := decodeHeaderValue(name); got != m.Name {
				t.Fatalf("accepted Mcp-Name %q (%q) for body %q", name, got, m.Name)
			}
		}
	})
}
