package sessionid

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"sync"
)

// Sentinel errors of Verify and KeyID. They are returned unwrapped, so that
// rejecting a bad id allocates nothing either.
var (
	// ErrMalformed: the id does not have the shape of a minted id (wrong
	// length or field sizes, a character outside the alphabet, non-canonical
	// base64). No key was consulted.
	ErrMalformed = errors.New("malformed session id")
	// ErrUnknownKey: the id is well formed but names a key id this Minter
	// is not configured with — typically a key dropped after rotation.
	ErrUnknownKey = errors.New("session id key unknown")
	// ErrForged: the id names a configured key but its MAC does not match.
	ErrForged = errors.New("forged session id")
)

// ErrInvalidKey is wrapped by every error NewMinter returns.
var ErrInvalidKey = errors.New("invalid session id key")

const (
	// MaxLen bounds every id this package mints or accepts.
	MaxLen = 128
	// MinSecretLen is the shortest Key.Secret NewMinter accepts: SHA-256's
	// output size, the least RFC 2104 recommends for an HMAC key.
	MinSecretLen = 32
	// MaxKeyIDLen is the longest Key.ID NewMinter accepts.
	MaxKeyIDLen = 16

	version   = 0x01
	randLen   = 16                              // random bytes
	macLen    = 16                              // truncated MAC bytes
	fieldLen  = 22                              // base64url chars of 16 bytes
	minIDLen  = fieldLen + 1 + 1 + 1 + fieldLen // one-char key id
	maxIDLen  = fieldLen + 1 + MaxKeyIDLen + 1 + fieldLen
	plainLen  = 24 // random bytes of a plain (nil Minter) id
	maxMACMsg = 2 + MaxKeyIDLen + randLen
)

// Key is one MAC key. All replicas of a cluster must share it.
type Key struct {
	// ID names the key inside every id it MACs, so a replica knows which
	// key to check against; it is public. 1–16 of [A-Za-z0-9], e.g. "k1".
	ID string
	// Secret is at least 32 random bytes. It never appears in logs or
	// formatted output.
	Secret []byte
}

// LogValue logs the key id and hides the secret.
func (k Key) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", k.ID), slog.String("secret", "REDACTED"))
}

// Format prints the key id and hides the secret, whatever the verb, so a
// Key in a %v, %+v or %#v never leaks.
func (k Key) Format(f fmt.State, _ rune) {
	fmt.Fprintf(f, "sessionid.Key{ID:%q, Secret:REDACTED}", k.ID)
}

// MarshalJSON writes the key id and hides the secret, so that a Key inside
// a value logged by slog's JSON handler, or a config dumped as JSON, never
// leaks. (It is not meant to round-trip: configuration decodes secrets into
// its own types and builds Keys from them.)
func (k Key) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}{k.ID, "REDACTED"})
}

// Minter mints and verifies ids. It is immutable and safe for concurrent
// use; a nil *Minter mints and accepts plain ids (see the package doc).
type Minter struct {
	current *macKey
	keys    []*macKey // current first; few, so a linear scan beats a map
}

// macKey holds a key's id and a pool of HMAC states keyed with its secret.
// Pooling keeps Mint and Verify from allocating: crypto/hmac saves the keyed
// state on the first Reset, so a reused state costs two SHA-256 blocks.
type macKey struct {
	id   string
	pool sync.Pool // of *macState
}

type macState struct {
	h   hash.Hash
	msg [maxMACMsg]byte
	sum [sha256.Size]byte
}

// NewMinter returns a Minter that mints with current and verifies ids made
// with current or any of previous. It copies the secrets. Every problem is
// reported, each wrapping ErrInvalidKey.
func NewMinter(current Key, previous ...Key) (*Minter, error) {
	all := append([]Key{current}, previous...)
	var errs []error
	seen := make(map[string]bool, len(all))
	m := &Minter{}
	for i, k := range all {
		field := "current"
		if i > 0 {
			field = fmt.Sprintf("previous[%d]", i-1)
		}
		if err := checkKeyID(k.ID); err != nil {
			errs = append(errs, fmt.Errorf("%s.id: %w", field, err))
		} else if seen[k.ID] {
			errs = append(errs, fmt.Errorf("%s.id: %w: duplicate key id %q", field, ErrInvalidKey, k.ID))
		}
		seen[k.ID] = true
		if len(k.Secret) < MinSecretLen {
			errs = append(errs, fmt.Errorf("%s.secret: %w: %d bytes, need at least %d",
				field, ErrInvalidKey, len(k.Secret), MinSecretLen))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for _, k := range all {
		m.keys = append(m.keys, newMACKey(k))
	}
	m.current = m.keys[0]
	return m, nil
}

func checkKeyID(id string) error {
	if id == "" || len(id) > MaxKeyIDLen {
		return fmt.Errorf("%w: key id %q must be 1-%d characters", ErrInvalidKey, id, MaxKeyIDLen)
	}
	for i := 0; i < len(id); i++ {
		if !isAlnum(id[i]) {
			return fmt.Errorf("%w: key id %q may only hold [A-Za-z0-9]", ErrInvalidKey, id)
		}
	}
	return nil
}

func newMACKey(k Key) *macKey {
	secret := append([]byte(nil), k.Secret...)
	mk := &macKey{id: k.ID}
	mk.pool.New = func() any { return &macState{h: hmac.New(sha256.New, secret)} }
	return mk
}

// mac writes the truncated MAC of the random bytes under mk to dst.
func (mk *macKey) mac(dst *[macLen]byte, random *[randLen]byte) {
	s := mk.pool.Get().(*macState)
	n := 0
	s.msg[n] = version
	n++
	s.msg[n] = byte(len(mk.id))
	n++
	n += copy(s.msg[n:], mk.id)
	n += copy(s.msg[n:], random[:])
	s.h.Reset()
	s.h.Write(s.msg[:n])
	copy(dst[:], s.h.Sum(s.sum[:0]))
	mk.pool.Put(s)
}

// Mint returns a new id made with the current key. On a nil Minter it
// returns a plain id: 192 random bits, base64url (32 chars).
func (m *Minter) Mint() string {
	if m == nil {
		var b [plainLen]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error
		return base64.RawURLEncoding.EncodeToString(b[:])
	}
	var random [randLen]byte
	_, _ = rand.Read(random[:])
	return m.mint(&random)
}

func (m *Minter) mint(random *[randLen]byte) string {
	var buf [maxIDLen]byte
	enc := base64.RawURLEncoding
	k := m.current
	enc.Encode(buf[:fieldLen], random[:])
	n := fieldLen
	buf[n] = '.'
	n++
	n += copy(buf[n:], k.id)
	buf[n] = '.'
	n++
	var mac [macLen]byte
	k.mac(&mac, random)
	enc.Encode(buf[n:n+fieldLen], mac[:])
	n += fieldLen
	return string(buf[:n])
}

// Verify reports whether id was minted by a Minter holding one of m's keys:
// nil, or ErrMalformed, ErrUnknownKey or ErrForged. The MAC comparison is
// constant-time, and Verify does not allocate.
//
// On a nil Minter, Verify accepts any id of 1–MaxLen visible ASCII bytes
// (0x21–0x7E) and returns ErrMalformed for anything else.
//
// A nil error means only that the id is authentic, not that its session is
// still live: look it up in the store.
func (m *Minter) Verify(id string) error {
	if m == nil {
		return verifyPlain(id)
	}
	random, keyID, gotMAC, ok := parse(id)
	if !ok {
		return ErrMalformed
	}
	// Key ids are public (every id shows one), so finding the key need not
	// be constant-time; only the MAC comparison must be.
	var k *macKey
	for _, c := range m.keys {
		if c.id == keyID {
			k = c
			break
		}
	}
	if k == nil {
		return ErrUnknownKey
	}
	var want [macLen]byte
	k.mac(&want, &random)
	if !hmac.Equal(gotMAC[:], want[:]) {
		return ErrForged
	}
	return nil
}

func verifyPlain(id string) error {
	if len(id) == 0 || len(id) > MaxLen {
		return ErrMalformed
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return ErrMalformed
		}
	}
	return nil
}

// KeyID returns the key id an id names, checking only its shape (it returns
// ErrMalformed where Verify would); it does not authenticate the id. Use it
// to count which keys live sessions use, and so when a previous key can be
// dropped.
func KeyID(id string) (string, error) {
	_, keyID, _, ok := parse(id)
	if !ok {
		return "", ErrMalformed
	}
	return keyID, nil
}

// parse splits a MAC'd id into its fields, decoding base64 strictly.
func parse(id string) (random [randLen]byte, keyID string, mac [macLen]byte, ok bool) {
	if len(id) < minIDLen || len(id) > maxIDLen ||
		id[fieldLen] != '.' || id[len(id)-fieldLen-1] != '.' {
		return random, "", mac, false
	}
	keyID = id[fieldLen+1 : len(id)-fieldLen-1]
	for i := 0; i < len(keyID); i++ {
		if !isAlnum(keyID[i]) {
			return random, "", mac, false
		}
	}
	if !decode16(&random, id[:fieldLen]) || !decode16(&mac, id[len(id)-fieldLen:]) {
		return random, "", mac, false
	}
	return random, keyID, mac, true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// decodeMap maps a base64url character to its 6-bit value, or 0xff.
var decodeMap = func() (m [256]byte) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range m {
		m[i] = 0xff
	}
	for i := 0; i < len(alphabet); i++ {
		m[alphabet[i]] = byte(i)
	}
	return m
}()

// decode16 decodes 22 chars of unpadded base64url into 16 bytes, so that
// each 16 bytes have exactly one spelling: like encoding/base64's Strict
// mode it rejects set trailing bits, and unlike it, it rejects '\r' and '\n'
// rather than skipping them. It needs no []byte copy of s, so no allocation.
func decode16(dst *[16]byte, s string) bool {
	if len(s) != fieldLen {
		return false
	}
	var bad byte
	val := func(i int) uint32 {
		v := decodeMap[s[i]]
		bad |= v & 0x80 // 0xff is the only value with the top bit set
		return uint32(v)
	}
	for g := 0; g < 5; g++ { // 5 groups: 20 chars → 15 bytes
		i, o := g*4, g*3
		w := val(i)<<18 | val(i+1)<<12 | val(i+2)<<6 | val(i+3)
		dst[o], dst[o+1], dst[o+2] = byte(w>>16), byte(w>>8), byte(w)
	}
	a, b := val(20), val(21) // 12 bits → 1 byte; the low 4 must be zero
	dst[15] = byte(a<<2 | b>>4)
	return bad == 0 && b&0x0f == 0
}
