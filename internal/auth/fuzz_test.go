package auth

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/core"
)

// FuzzAuthorization feeds Authorization header values (and query
// strings) to the header parser and to a whole authenticator (API keys,
// OAuth with a live JWKS, anonymous allowed). Properties: nothing panics;
// a parsed token is a b64token that parses back from "Bearer <token>"
// with any scheme case; a request that presents credentials is either
// the configured key's principal or refused 400/401/403 with a Bearer
// challenge and a JSON-RPC code — never anonymous, and never a valid JWT
// (the fuzzer cannot sign one).
func FuzzAuthorization(f *testing.F) {
	key, _ := NewKey()
	p := newIDP(f, rsaSigner("k1", 0))
	good := rsaSigner("k1", 0).token(f, p.claims("alice", time.Now()))
	for _, seed := range [][2]string{
		{"Bearer " + key, ""}, {"bearer  " + key, ""}, {"Basic YTpi", ""}, {"Bearer", ""}, {"", ""},
		{"Bearer a.b.c", ""}, {"Bearer " + good[:len(good)-3] + "abc", ""}, {"Bearer eyJhbGciOiJub25lIn0.e30.", ""},
		{"Bearer x", "access_token=x"}, {"Bearer ===", ""}, {"Bearer a=b", "a=1&access_token"}, {"Bearer \x00", ""},
	} {
		f.Add(seed[0], seed[1], false)
		f.Add(seed[0], seed[1], true)
	}
	cfg := oauthConfig(f, p, func(c *config.Config) {
		c.Auth.Anonymous = true
		c.Auth.APIKeys = []config.APIKey{{KeySHA256: HashKey(key), Principal: "ci-bot"}}
	})
	a, err := New(cfg, Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(a.Close)
	challenge := regexp.MustCompile(`^Bearer [a-z_]+="[^"\\]*"(, [a-z_]+="[^"\\]*")*$`)
	f.Fuzz(func(t *testing.T, value, query string, twice bool) {
		values := []string{value}
		if twice {
			values = append(values, value)
		}
		token, perr := ParseAuthorization(values)
		if perr == nil {
			if twice {
				t.Fatal("two Authorization headers parsed")
			}
			if !b64token(token) {
				t.Fatalf("token %q is not a b64token", token)
			}
			for _, scheme := range []string{"Bearer ", "BEARER ", "bearer   "} {
				if back, err := ParseAuthorization([]string{scheme + token}); err != nil || back != token {
					t.Fatalf("%q parsed back as %q, %v", scheme+token, back, err)
				}
			}
			if strings.TrimSpace(value) == "" {
				t.Fatal("an empty header gave a token")
			}
		}
		r, err := http.NewRequest(http.MethodPost, "http://gw/mcp", nil)
		if err != nil {
			t.Skip()
		}
		r.URL.RawQuery = query
		r.Header["Authorization"] = values
		id, e := a.Authenticate(r)
		if e == nil {
			switch {
			case id.Principal == "ci-bot" && token == key:
			default:
				t.Fatalf("%q (query %q) admitted as %#v", value, query, id)
			}
			return
		}
		switch e.HTTPStatus() {
		case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden:
		default:
			t.Fatalf("%q: status %d", value, e.HTTPStatus())
		}
		if e.Code != core.CodeUnauthorized && e.Code != core.CodeInvalidRequest && e.Code != core.CodeForbidden {
			t.Fatalf("%q: code %d", value, e.Code)
		}
		if h := e.Header.Get("WWW-Authenticate"); !challenge.MatchString(h) {
			t.Fatalf("%q: challenge %q", value, h)
		}
	})
}

// FuzzGlob checks glob against a regular expression built from the same
// pattern.
func FuzzGlob(f *testing.F) {
	for _, s := range [][2]string{{"deploy_*", "deploy_x"}, {"*a*", "bab"}, {"a**b", "ab"}, {"", ""}, {"*", "\xff"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, s string) {
		parts := strings.Split(pattern, "*")
		for i, p := range parts {
			parts[i] = regexp.QuoteMeta(p)
		}
		re, err := regexp.Compile(`^(?s:` + strings.Join(parts, ".*") + `)$`)
		if err != nil {
			t.Skip()
		}
		// regexp matches runes, glob bytes: compare on valid UTF-8.
		if !utf8.ValidString(pattern) || !utf8.ValidString(s) {
			t.Skip()
		}
		if got, want := glob(pattern, s), re.MatchString(s); got != want {
			t.Fatalf("glob(%q, %q) = %v; the regexp says %v", pattern, s, got, want)
		}
	})
}
