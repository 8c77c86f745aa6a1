package bridge

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// stateClaims is what a requestState minted by mcpgate carries: the
// gateway session and principal it was issued to, the request it belongs
// to, the pending exchange it continues, and when it lapses.
type stateClaims struct {
	Session   string `json:"s"`
	Principal string `json:"p"`
	Method    string `json:"m"`
	Name      string `json:"n,omitempty"`
	Pending   string `json:"k"`
	// Round makes every round's state distinct.
	Round   uint64 `json:"r"`
	Expires int64  `json:"e"`
	// Upstream is the server's own requestState, echoed inside ours
	// when there is one (a modern server behind a modern client needs no
	// bridge; this is for completeness of the envelope).
	Upstream string `json:"u,omitempty"`
}

var errBadState = errors.New("requestState failed verification")

// statePrefix starts every requestState mcpgate mints, so that a retry
// carrying a server's own requestState is told apart without guessing.
const statePrefix = "mcpgate1."

// sealState encodes c and protects it with an HMAC-SHA256 under key.
func sealState(key []byte, c stateClaims) string {
	body, _ := json.Marshal(c)
	b := base64.RawURLEncoding.EncodeToString(body)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(statePrefix + b))
	return statePrefix + b + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// openState verifies s under key and that it has not lapsed at now.
func openState(key []byte, s string, now time.Time) (stateClaims, error) {
	s, ok := strings.CutPrefix(s, statePrefix)
	if !ok {
		return stateClaims{}, errBadState
	}
	b, sig, ok := strings.Cut(s, ".")
	if !ok {
		return stateClaims{}, errBadState
	}
	// Strict: a signature with other trailing bits is another string for
	// the same MAC, and only the string sealState wrote is accepted.
	got, err := base64.RawURLEncoding.Strict().DecodeString(sig)
	if err != nil {
		return stateClaims{}, errBadState
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(statePrefix + b))
	if !hmac.Equal(got, m.Sum(nil)) {
		return stateClaims{}, errBadState
	}
	body, err := base64.RawURLEncoding.DecodeString(b)
	if err != nil {
		return stateClaims{}, errBadState
	}
	var c stateClaims
	if json.Unmarshal(body, &c) != nil {
		return stateClaims{}, errBadState
	}
	if now.Unix() > c.Expires {
		return stateClaims{}, errors.New("requestState has expired")
	}
	return c, nil
}
