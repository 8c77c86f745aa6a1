package httpup

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestEncodeHeaderValue(t *testing.T) {
	tests := []struct{ in, want string }{
		{"us-west1", "us-west1"},
		{"get_weather", "get_weather"},
		{"file:///projects/a b.json", "file:///projects/a b.json"},
		{"Hello, 世界", "=?base64?SGVsbG8sIOS4lueVjA==?="},
		{" padded ", "=?base64?IHBhZGRlZCA=?="},
		{"line1\nline2", "=?base64?bGluZTEKbGluZTI=?="},
		{"=?base64?literal?=", "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?="},
		{"tab\tinside", "=?base64?dGFiCWluc2lkZQ==?="},
		{"", ""},
	}
	for _, tt := range tests {
		if got := encodeHeaderValue(tt.in); got != tt.want {
			t.Errorf("encodeHeaderValue(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzEncodeHeaderValue checks the properties a server relies on: the
// result is a safe header value, and decoding it gives the input back.
func FuzzEncodeHeaderValue(f *testing.F) {
	for _, s := range []string{"echo", "héllo", " x", "=?base64?x?=", "a\r\nb", "\x7f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := encodeHeaderValue(s)
		for i := 0; i < len(got); i++ {
			if got[i] < 0x20 || got[i] > 0x7e {
				t.Fatalf("%q: unsafe byte %#x in %q", s, got[i], got)
			}
		}
		if got != "" && (got[0] == ' ' || got[len(got)-1] == ' ') {
			t.Fatalf("%q: leading or trailing space in %q", s, got)
		}
		decoded := got
		if inner, ok := strings.CutPrefix(got, base64Prefix); ok {
			if inner, ok = strings.CutSuffix(inner, base64Suffix); ok {
				b, err := base64.StdEncoding.DecodeString(inner)
				if err != nil {
					t.Fatalf("%q: bad base64 %q", s, got)
				}
				decoded = string(b)
			}
		}
		if decoded != s {
			t.Fatalf("%q encodes to %q, which decodes to %q", s, got, decoded)
		}
	})
}
