package config

import (
	"errors"
	"strings"
	"testing"
)

// TestSessionsPerAddress: the per-address session cap is on by default,
// finite, evicts the address's own idlest session, can be switched off
// with max 0, and is validated.
func TestSessionsPerAddress(t *testing.T) {
	const route = "routes: [{path: /a, upstream: {http: {url: \"http://x\"}}}]\n"
	cfg, err := LoadBytes([]byte(route))
	if err != nil {
		t.Fatal(err)
	}
	if pa := cfg.Sessions.PerAddress; pa == nil || pa.Max != DefaultMaxPerAddress || pa.WhenFull != "evict-idlest" {
		t.Fatalf("default per_address = %+v; want {32 evict-idlest}", pa)
	}
	if DefaultMaxPerAddress <= 0 || DefaultMaxPerAddress >= DefaultMaxSessions {
		t.Fatalf("DefaultMaxPerAddress %d must be finite and below the global default %d", DefaultMaxPerAddress, DefaultMaxSessions)
	}
	cfg, err = LoadBytes([]byte("sessions: {per_address: {max: 0}}\n" + route))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Sessions.PerAddress.Max != 0 {
		t.Fatalf("max 0 gave %+v; want the cap off", cfg.Sessions.PerAddress)
	}
	cfg, err = LoadBytes([]byte("sessions: {per_address: {max: 4, when_full: reject}}\n" + route))
	if err != nil {
		t.Fatal(err)
	}
	if pa := cfg.Sessions.PerAddress; pa.Max != 4 || pa.WhenFull != "reject" {
		t.Fatalf("per_address = %+v; want {4 reject}", pa)
	}
	_, err = LoadBytes([]byte("sessions: {per_address: {max: -1, when_full: sometimes}}\n" + route))
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("invalid per_address: %v; want a *config.Error", err)
	}
	var got []string
	for _, p := range cerr.Problems {
		got = append(got, p.Error())
	}
	want := map[string]bool{
		"sessions.per_address.max: must not be negative":                                             false,
		`sessions.per_address.when_full: want reject, evict-oldest or evict-idlest, got "sometimes"`: false,
	}
	for _, g := range got {
		for w := range want {
			if strings.HasPrefix(g, w) { // a line number may follow
				want[w] = true
			}
		}
	}
	for w, ok := range want {
		if !ok {
			t.Errorf("problems %q lack %q", got, w)
		}
	}
}
