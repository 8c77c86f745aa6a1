package sessionid_test

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/sessionid"
)

// TestGolden pins the id format: replicas of different versions share ids
// during a rolling deploy, so a change here is a breaking change. The
// wanted ids were computed independently with Python's hmac module.
func TestGolden(t *testing.T) {
	var random [16]byte
	for i := range random {
		random[i] = byte(i)
	}
	tests := []struct {
		name string
		key  sessionid.Key
		want string
	}{
		{"k1", k1, "AAECAwQFBgcICQoLDA0ODw.k1.kA4PebwsUtUpgFSIXJjDeg"},
		{"long key id", sessionid.Key{ID: "Rotation2026Q3", Secret: []byte("0123456789abcdef0123456789abcdef")},
			"AAECAwQFBgcICQoLDA0ODw.Rotation2026Q3.3pOa79oVEF5Qtc34ksP4Uw"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := sessionid.MintWith(newMinter(t, tt.key), random)
			if got != tt.want {
				t.Errorf("MintWith = %q, want %q", got, tt.want)
			}
			if err := refVerify([]sessionid.Key{tt.key}, got); err != nil {
				t.Errorf("reference verify of %q = %v", got, err)
			}
		})
	}
}

// FuzzVerify checks that Verify never panics, agrees exactly with the
// independent reference refVerify, and accepts nothing the test did not
// mint: forging needs a 128-bit MAC the fuzzer cannot find.
func FuzzVerify(f *testing.F) {
	keys := []sessionid.Key{k2, k1}
	m := newMinter(f, k2, k1)
	minted := map[string]bool{}
	mint := func(m *sessionid.Minter, seed byte) string {
		var random [16]byte
		for i := range random {
			random[i] = seed + byte(i)*37
		}
		return sessionid.MintWith(m, random)
	}
	for seed := range byte(8) {
		id := mint(m, seed)
		minted[id] = true
		f.Add(id)
	}
	old := mint(newMinter(f, k1), 100) // made with the previous key
	minted[old] = true
	f.Add(old)
	f.Add(mint(newMinter(f, k3), 1))                                                            // unknown key
	f.Add(mint(newMinter(f, sessionid.Key{ID: "k1", Secret: secret(0xee)}), 2))                 // other secret
	f.Add(mint(newMinter(f, sessionid.Key{ID: strings.Repeat("Z", 16), Secret: secret(4)}), 3)) // longest key id
	f.Add(old[:10] + "\n" + old[11:])
	f.Add(old[:21] + nonCanonical(old[21]) + old[22:])
	f.Add(strings.Replace(old, "k1", "k2", 1))
	f.Add((*sessionid.Minter)(nil).Mint())
	f.Add("")
	f.Add("..")
	f.Add(strings.Repeat(".", 200))
	f.Add("AAAAAAAAAAAAAAAAAAAAAA.k1.AAAAAAAAAAAAAAAAAAAAAA")

	strict := base64.RawURLEncoding.Strict()
	f.Fuzz(func(t *testing.T, id string) {
		err := m.Verify(id)
		switch err {
		case nil, sessionid.ErrMalformed, sessionid.ErrUnknownKey, sessionid.ErrForged:
		default:
			t.Fatalf("Verify(%q) = %v, not a sentinel", id, err)
		}
		if want := refVerify(keys, id); err != want {
			t.Fatalf("Verify(%q) = %v, reference says %v", id, err, want)
		}
		if err == nil && !minted[id] {
			t.Fatalf("Verify(%q) = nil for an id the test never minted", id)
		}

		// Exactly one spelling: a verified id re-encodes to itself.
		if err == nil {
			parts := strings.Split(id, ".")
			random, _ := strict.DecodeString(parts[0])
			mac, _ := strict.DecodeString(parts[2])
			if again := base64.RawURLEncoding.EncodeToString(random) + "." + parts[1] + "." +
				base64.RawURLEncoding.EncodeToString(mac); again != id {
				t.Fatalf("Verify(%q) = nil, but it re-encodes as %q", id, again)
			}
		}

		// KeyID parses exactly what Verify parses.
		kid, kerr := sessionid.KeyID(id)
		if (kerr == nil) != (err != sessionid.ErrMalformed) {
			t.Fatalf("KeyID(%q) error = %v, but Verify = %v", id, kerr, err)
		}
		if kerr == nil && kid != strings.Split(id, ".")[1] {
			t.Fatalf("KeyID(%q) = %q", id, kid)
		}

		// The nil Minter accepts exactly the plain ids, a superset of the
		// MAC'd ones, so switching MAC on never admits what it did not.
		plain := len(id) >= 1 && len(id) <= sessionid.MaxLen
		for i := 0; i < len(id); i++ {
			plain = plain && id[i] >= 0x21 && id[i] <= 0x7e
		}
		if nilErr := (*sessionid.Minter)(nil).Verify(id); (nilErr == nil) != plain {
			t.Fatalf("nil Verify(%q) = %v, want accepted=%v", id, nilErr, plain)
		}
		if err != sessionid.ErrMalformed && !plain {
			t.Fatalf("Verify(%q) = %v for an id the nil Minter rejects", id, err)
		}
	})
}
