package auth

import (
	"errors"
	"strings"
)

// MaxTokenBytes bounds a bearer token: longer is refused as malformed
// before anything is hashed or parsed (real access tokens are a few KiB).
const MaxTokenBytes = 16 << 10

// Errors of ParseAuthorization.
var (
	// ErrMultipleAuthorization: more than one Authorization header (RFC
	// 6750 section 3.1 invalid_request; a proxy could read another one).
	ErrMultipleAuthorization = errors.New("more than one Authorization header")
	// ErrNotBearer: credentials of another scheme (Basic, Digest, ...).
	ErrNotBearer = errors.New("Authorization is not a Bearer credential")
	// ErrMalformedBearer: a Bearer credential whose token is empty, too
	// long, or not a b64token (RFC 6750 section 2.1).
	ErrMalformedBearer = errors.New("malformed Bearer token")
)

// ParseAuthorization reads the bearer token of a request's Authorization
// header values (r.Header["Authorization"]): "" and no error when there
// is none. The scheme is case-insensitive ("Bearer", "bearer"), separated
// from the token by one or more spaces; the token is a b64token (RFC 6750:
// letters, digits, "-._~+/", then any "=" padding) of at most
// MaxTokenBytes.
func ParseAuthorization(values []string) (string, error) {
	switch len(values) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", ErrMultipleAuthorization
	}
	v := strings.TrimSpace(values[0])
	scheme, rest, _ := strings.Cut(v, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		if v == "" {
			return "", ErrMalformedBearer
		}
		return "", ErrNotBearer
	}
	token := strings.TrimLeft(rest, " ")
	if !b64token(token) {
		return "", ErrMalformedBearer
	}
	return token, nil
}

// b64token reports whether s is 1*( ALPHA / DIGIT / "-" / "." / "_" /
// "~" / "+" / "/" ) *"=", at most MaxTokenBytes long.
func b64token(s string) bool {
	if s == "" || len(s) > MaxTokenBytes {
		return false
	}
	i := 0
	for i < len(s) && tokenChar(s[i]) {
		i++
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

// tokenChars marks the characters of a b64token before its padding.
var tokenChars = func() (t [256]bool) {
	for c := range 256 {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', strings.IndexByte("-._~+/", byte(c)) >= 0:
			t[c] = true
		}
	}
	return t
}()

func tokenChar(c byte) bool { return tokenChars[c] }

// looksLikeJWT reports whether a token has the shape of a JWS in compact
// serialization: three dot-separated parts, a header and a payload (an
// empty signature is refused by the parser, not taken for an API key).
func looksLikeJWT(token string) bool {
	a, rest, ok := strings.Cut(token, ".")
	if !ok || a == "" {
		return false
	}
	b, c, ok := strings.Cut(rest, ".")
	return ok && b != "" && !strings.Contains(c, ".")
}
