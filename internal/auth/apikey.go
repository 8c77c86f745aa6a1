package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/core"
)

// KeyPrefix starts every key `mcpgate key new` makes, so that a key is
// recognised where it should not be (a log, a repository, a config file's
// key_sha256).
const KeyPrefix = "mcpg_"

// NewKey makes an API key: KeyPrefix and 32 random bytes, base64url.
func NewKey() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("auth: no randomness for a key: %w", err)
	}
	return KeyPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// HashKey is the key_sha256 of a key: its SHA-256 in lowercase hex.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// keyTable maps the SHA-256 of each configured key to its identity. A
// presented key is hashed first, so the look-up learns nothing from
// timing about any key: at most about a hash; the hash found is compared
// once more in constant time.
type keyTable map[[32]byte]*apiKey

type apiKey struct {
	sum [32]byte
	id  core.Identity
}

func newKeyTable(keys []config.APIKey) keyTable {
	if len(keys) == 0 {
		return nil
	}
	t := make(keyTable, len(keys))
	for _, k := range keys {
		var sum [32]byte
		if n, err := hex.Decode(sum[:], []byte(strings.ToLower(k.KeySHA256))); err != nil || n != len(sum) {
			continue // Validate refused it
		}
		t[sum] = &apiKey{sum: sum, id: core.Identity{
			Principal: k.Principal, Tenant: k.Tenant, Groups: slices.Clone(k.Groups), Scopes: slices.Clone(k.Scopes),
		}}
	}
	return t
}

// lookup is the identity of the key whose SHA-256 is sum.
func (t keyTable) lookup(sum [32]byte) (*core.Identity, bool) {
	k := t[sum]
	if k == nil || subtle.ConstantTimeCompare(k.sum[:], sum[:]) != 1 {
		return nil, false
	}
	return &k.id, true
}
