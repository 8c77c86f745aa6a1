// Package sessionid mints and verifies session ids that carry a keyed MAC,
// so that any replica of a cluster can reject a forged or random id cheaply
// — with one HMAC-SHA256 and no allocation — before it spends a store round
// trip on it.
//
// The MAC proves only that a replica sharing the key minted the id. It says
// nothing about whether the session is still live: revocation (DELETE, idle
// expiry, eviction) stays the session store's job, and a verified id must
// still be looked up.
//
// # Id format
//
// An id is three dot-separated fields, all visible ASCII and all HTTP token
// characters (never needing quotes in a header), at most [MaxLen] bytes:
//
//	<random>.<key id>.<mac>
//
// where
//
//   - random is 16 bytes from crypto/rand, unpadded base64url (22 chars);
//   - key id is the id of the [Key] that made the MAC, 1–16 of [A-Za-z0-9];
//   - mac is HMAC-SHA256, keyed with the key's secret, over
//     0x01 ‖ len(key id) ‖ key id ‖ random (raw bytes, one-byte length),
//     truncated to 16 bytes, unpadded base64url (22 chars).
//
// For example (47 to 62 chars):
//
//	AAECAwQFBgcICQoLDA0ODw.k1.kA4PebwsUtUpgFSIXJjDeg
//
// The leading 0x01 is the format version: a future format changes it, so
// its MACs can never be confused with these. Base64 is decoded strictly
// (non-canonical encodings are [ErrMalformed]), so each id has exactly one
// spelling and a single changed character is never accepted.
//
// # Key rotation
//
// Every replica is configured with the same keys. To rotate, deploy the new
// key as current and the old one as previous: new ids use the new key, old
// ids still verify. Once sessions minted with the old key have ended (after
// the session TTL, say), deploy without it; its ids then fail with
// [ErrUnknownKey]. During a rolling deploy, add the new key as previous
// everywhere first and only then make it current, so that no replica sees
// an id whose key it does not know.
//
// # No key
//
// A nil *[Minter] means no MAC is configured: [Minter.Mint] returns a plain
// id of 192 random bits (32 base64url chars, as session.NewID does), and
// [Minter.Verify] accepts any id of 1–[MaxLen] visible ASCII bytes (as
// session.ValidID does), so the gateway has one code path either way.
// Switching from nil to a Minter ends the plain ids' sessions: they fail with
// [ErrMalformed], and clients must re-initialize.
//
// # Usage
//
//	m, err := sessionid.NewMinter(
//		sessionid.Key{ID: "k2", Secret: newSecret},
//		sessionid.Key{ID: "k1", Secret: oldSecret}, // still accepted
//	)
//	if err != nil { ... }                     // errors.Is(err, sessionid.ErrInvalidKey)
//
//	id := m.Mint()                            // on initialize
//
//	switch err := m.Verify(id); {             // on every request, before the store
//	case err == nil:                          // authentic: look the session up
//	case errors.Is(err, sessionid.ErrMalformed):
//		// not a session id at all: 400
//	default:
//		// ErrForged, or ErrUnknownKey (its key was dropped since): 404
//	}
//
// A Minter is immutable and safe for concurrent use.
package sessionid
