package sessionid_test

import (
	"testing"

	"github.com/mcpgate/mcpgate/internal/sessionid"
)

func BenchmarkMint(b *testing.B) {
	for _, bc := range []struct {
		name string
		m    *sessionid.Minter
	}{
		{"mac", newMinter(b, k1)},
		{"nil", nil},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = bc.m.Mint()
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	m := newMinter(b, k2, k1)
	valid := m.Mint()
	for _, bc := range []struct {
		name string
		m    *sessionid.Minter
		id   string
	}{
		{"current", m, valid},
		{"previous", m, newMinter(b, k1).Mint()},
		{"forged", m, valid[:len(valid)-2] + "AA"},
		{"unknown_key", m, valid[:23] + "k9" + valid[25:]},
		{"malformed", m, "0123456789abcdef0123456789abcdef"},
		{"nil", nil, valid},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = bc.m.Verify(bc.id)
			}
		})
	}
}

// BenchmarkVerifyParallel shows the pooled HMAC states scale across cores.
func BenchmarkVerifyParallel(b *testing.B) {
	m := newMinter(b, k1)
	id := m.Mint()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := m.Verify(id); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
