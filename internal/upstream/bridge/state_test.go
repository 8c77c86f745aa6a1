package bridge

import (
	"testing"
	"time"
)

// FuzzOpenState: a requestState is attacker-controlled input. Whatever the
// bytes, openState never panics, accepts only what sealState made under the
// same key, and a state it accepts says exactly what was sealed.
func FuzzOpenState(f *testing.F) {
	key := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1_800_000_000, 0)
	good := sealState(key, stateClaims{Session: "s", Principal: "p", Method: "tools/call", Name: "t", Pending: "1", Round: 2, Expires: now.Unix() + 60})
	f.Add(good)
	f.Add(good + "x")
	f.Add(statePrefix + "e30.")
	f.Add("")
	f.Add("mcpgate1..")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := openState(key, s, now)
		if err != nil {
			return
		}
		if again := sealState(key, c); again != s && s != good {
			// Only a sealed state verifies: re-sealing what it says must
			// give the same bytes (JSON field order is fixed).
			t.Fatalf("accepted %q, which sealState would write as %q", s, again)
		}
		if _, err := openState([]byte("another key, another gateway!!!!"), s, now); err == nil {
			t.Fatalf("state %q verifies under two keys", s)
		}
	})
}

func TestStateLapses(t *testing.T) {
	key := []byte("k")
	now := time.Unix(1_800_000_000, 0)
	s := sealState(key, stateClaims{Session: "s", Expires: now.Unix() - 1})
	if _, err := openState(key, s, now); err == nil {
		t.Fatal("a lapsed state verified")
	}
}
