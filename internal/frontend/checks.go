package frontend

import (
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// hostAllowed guards against DNS rebinding: a loopback listener only
// answers to loopback host names unless told otherwise.
func (p *ListenerPolicy) hostAllowed(host string) bool {
	if len(p.AllowedHosts) > 0 {
		for _, h := range p.AllowedHosts {
			if strings.EqualFold(h, host) || strings.EqualFold(h, hostname(host)) {
				return true
			}
		}
		return false
	}
	if !p.Loopback {
		return true
	}
	return isLoopbackName(hostname(host))
}

// originAllowed applies the Origin rule: absent is fine (not a browser);
// present must be listed, or loopback on a loopback listener.
func (p *ListenerPolicy) originAllowed(origin string) bool {
	if origin == "" {
		return true
	}
	for _, o := range p.AllowedOrigins {
		if o == "*" || strings.EqualFold(strings.TrimSuffix(o, "/"), origin) {
			return true
		}
	}
	if len(p.AllowedOrigins) == 0 && p.Loopback {
		u, err := url.Parse(origin)
		return err == nil && (u.Scheme == "http" || u.Scheme == "https") && isLoopbackName(u.Hostname())
	}
	return false
}

func hostname(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.Trim(hostport, "[]")
}

func isLoopbackName(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// accepts reports whether an Accept header admits the media type. An
// absent header accepts anything (RFC 9110).
func accepts(header []string, want string) bool {
	if len(header) == 0 {
		return true
	}
	major, _, _ := strings.Cut(want, "/")
	for _, line := range header {
		for part := range strings.SplitSeq(line, ",") {
			mt, _, _ := strings.Cut(part, ";")
			mt = strings.ToLower(strings.TrimSpace(mt))
			if mt == want || mt == "*/*" || mt == major+"/*" {
				return true
			}
		}
	}
	return false
}

// jsonContent reports whether a Content-Type is application/json.
func jsonContent(ct string) bool {
	if strings.EqualFold(ct, "application/json") {
		return true // the common case, without parsing (no allocation)
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

// decodeHeaderValue undoes the =?base64?…?= sentinel of Mcp-Name and
// Mcp-Param-* values and trims surrounding whitespace.
func decodeHeaderValue(v string) (string, bool) {
	v = strings.TrimSpace(v)
	if strings.HasPrefix(v, "=?base64?") && strings.HasSuffix(v, "?=") && len(v) >= len("=?base64??=") {
		raw, err := b64std.DecodeString(v[len("=?base64?") : len(v)-2])
		if err != nil {
			return "", false
		}
		return string(raw), true
	}
	return v, true
}

var corsAllowHeaders = "Content-Type, Accept, Authorization, Mcp-Session-Id, MCP-Protocol-Version, Last-Event-ID, Mcp-Method, Mcp-Name, " + SessionHeader

// cors answers browsers from allowed origins.
func cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	h.Set("Access-Control-Expose-Headers", "Mcp-Session-Id, "+SessionHeader)
	if r.Method != http.MethodOptions {
		return false
	}
	allow := corsAllowHeaders
	for part := range strings.SplitSeq(r.Header.Get("Access-Control-Request-Headers"), ",") {
		if p := strings.TrimSpace(part); len(p) > 10 && strings.EqualFold(p[:10], "mcp-param-") {
			allow += ", " + p
		}
	}
	h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Headers", allow)
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
	return true
}
