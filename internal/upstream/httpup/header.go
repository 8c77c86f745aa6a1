package httpup

import (
	"encoding/base64"
	"strings"

	"github.com/mcpgate/mcpgate/internal/core"
)

const (
	base64Prefix = "=?base64?"
	base64Suffix = "?="
)

// encodeHeaderValue renders a value for Mcp-Name (and Mcp-Param-*) as the
// 2026-07-28 transport requires: as is when it is plain visible ASCII and
// space without leading or trailing whitespace, else (and when it would
// read as the sentinel itself) as =?base64?{standard base64 of UTF-8}?=.
func encodeHeaderValue(s string) string {
	if !needsBase64(s) {
		return s
	}
	return base64Prefix + base64.StdEncoding.EncodeToString([]byte(s)) + base64Suffix
}

func needsBase64(s string) bool {
	if s == "" {
		return false
	}
	if s[0] == ' ' || s[len(s)-1] == ' ' {
		return true
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			return true
		}
	}
	return strings.HasPrefix(s, base64Prefix) && strings.HasSuffix(s, base64Suffix)
}

// validHeaderName reports whether s is an HTTP token (RFC 9110 field-name).
func validHeaderName(s string) bool { return core.ValidHeaderName(s) }

// validHeaderValue rejects control characters other than tab.
func validHeaderValue(s string) bool { return core.ValidHeaderValue(s) }
